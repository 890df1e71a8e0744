"""Hostile Modbus devices for the fault campaigns: they answer every read with a frame that
is well-formed on the wire (valid MBAP length, valid CRC) but wrong in a way a careless
master accepts as data.

The register values are the real ones of a simulated meter (``hil.meters.SimUnit``), so a
wrong frame that slips through decodes to a plausible reading: exactly the "fake reading
scored as load" the campaign counts. Two transports, one set of lies:

- ``HostileTcpServer``: a raw asyncio TCP server on 127.0.0.1 (Modbus TCP framing);
- ``HostileRtuDevice``: a thread behind a real pseudo-terminal (Modbus RTU framing).
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
import termios
import threading
import tty

from tcpkit import LoopbackServer

# Each mode is one way to lie; "good" is the control.
MODES = ("good", "wrong_fc", "extra_registers", "wrong_unit", "odd_byte_count",
         "byte_count_overflow", "fewer_registers", "echo", "garbage")
TCP_ONLY = ("wrong_tid",)


class SteadyLoad:
    """A household load for the simulated meter behind the lies (``hil.meters`` API)."""

    def __init__(self, p_w: float = 1500.0, pf: float = 0.95):
        self.p_w = p_w
        self.pf = pf

    def power(self, t: float) -> tuple[float, float]:
        return self.p_w, self.pf


def crc16(data: bytes) -> int:
    """Modbus RTU CRC-16 (poly 0xA001, init 0xFFFF), Modbus over serial line V1.02 6.2.2."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def lie(mode: str, unit: int, fc: int, address: int, count: int, sim,
        rng: random.Random) -> tuple[int, bytes]:
    """(unit id to answer with, PDU) for one read request, crafted by ``mode``."""
    regs = sim.registers(fc, address, count)
    if not isinstance(regs, list):  # the simulated meter has no such register
        return unit, bytes([fc | 0x80, int(regs)])
    data = b"".join(struct.pack(">H", r) for r in regs)
    reply_fc, byte_count = fc, len(data)
    if mode == "wrong_fc":  # holding for input or input for holding, same values
        reply_fc = 3 if fc == 4 else 4
    elif mode == "extra_registers":
        data += struct.pack(">HH", 0x4000, 0x0000)
        byte_count = len(data)
    elif mode == "wrong_unit":
        unit = unit % 247 + 1
    elif mode == "odd_byte_count":
        data += b"\x00"
        byte_count = len(data)
    elif mode == "byte_count_overflow":  # claims more than it carries
        byte_count = min(255, len(data) + 20)
    elif mode == "fewer_registers":
        data = data[:-2]
        byte_count = len(data)
    elif mode == "garbage":
        return unit, bytes(rng.randrange(256) for _ in range(3 + 2 * count))
    return unit, bytes([reply_fc, byte_count]) + data


class HostileTcpServer(LoopbackServer):
    """Modbus TCP on 127.0.0.1: every request answered by ``lie(self.mode, ...)``."""

    def __init__(self, sim, mode: str = "good", seed: int = 1):
        super().__init__()
        self.sim = sim
        self.mode = mode
        self.rng = random.Random(seed)
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readexactly(7)
            tid, pid, length, unit = struct.unpack(">HHHB", head)
            pdu = await reader.readexactly(length - 1)
            self.requests += 1
            fc, address, count = struct.unpack(">BHH", pdu[:5])
            if self.mode == "echo":
                writer.write(head + pdu)
            else:
                if self.mode == "wrong_tid":
                    tid = (tid + 7) & 0xFFFF
                mode = "good" if self.mode == "wrong_tid" else self.mode
                r_unit, r_pdu = lie(mode, unit, fc, address, count, self.sim, self.rng)
                writer.write(struct.pack(">HHHB", tid, pid, len(r_pdu) + 1, r_unit) + r_pdu)
            await writer.drain()


class HostileRtuDevice:
    """A device on a real pseudo-terminal: ``path`` is the slave end the master opens.

    A thread reads 8-byte read requests from the master end and writes crafted RTU frames
    (valid CRC) back. No baud pacing: the lies are in the content, not the timing."""

    def __init__(self, sim, mode: str = "good", seed: int = 1):
        self.sim = sim
        self.mode = mode
        self.rng = random.Random(seed)
        self.requests = 0
        self._master, slave = os.openpty()
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self.path = os.ttyname(slave)
        self._slave = slave  # kept open so the pty stays up between master opens
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-rtu", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self._master)
        os.close(self._slave)

    def _run(self) -> None:
        import select

        buf = b""
        while not self._stop.is_set():
            r, _, _ = select.select([self._master], [], [], 0.05)
            if not r:
                buf = b""  # a gap ends a frame (3.5 characters, loosely)
                continue
            try:
                buf += os.read(self._master, 256)
            except OSError:
                continue
            while len(buf) >= 8:
                frame, buf = buf[:8], buf[8:]
                if struct.unpack("<H", frame[6:8])[0] != crc16(frame[:6]):
                    buf = b""
                    break
                unit, fc, address, count = struct.unpack(">BBHH", frame[:6])
                self.requests += 1
                if self.mode == "echo":
                    out = frame
                else:
                    r_unit, pdu = lie(self.mode, unit, fc, address, count, self.sim, self.rng)
                    body = bytes([r_unit]) + pdu
                    out = body + struct.pack("<H", crc16(body))
                    if self.mode == "garbage":
                        out = pdu
                os.write(self._master, out)
