"""RS-485 link emulator: two pseudo-terminals joined by a half-duplex bus with real timing.

A Modbus master (the agent, ``loadwatch scan``, a real gateway's software) opens
``link.master_port``; simulated meters (hil/meters.py ``SimMeterServer(rtu=...)``) open
``link.device_port``. A pty delivers bytes instantly whatever its baud rate, so the
emulator sits between the two and does what the wire would:

* **pacing**: a character takes ``1 start + data bits + parity bit + stop bits`` bit times
  (10 for 8N1, 11 for 8E1) and a frame is delivered to the other side as it would arrive,
  its last byte at ``start + len * char_time``;
* **half-duplex**: one frame on the wire at a time, in either direction;
* **3.5-character silence** between frames (Modbus over serial line, V1.02 section
  2.5.1.1; fixed at 1.75 ms above 19200 baud) and a **device turnaround**: a reply
  starts no sooner than ``turnaround_ms`` (default: the 3.5-character minimum) after the
  request's last byte;
* **faults**, switched on demand or by schedule: dropped frames, corrupted CRC, a silent
  unit, exception replies made on a unit's behalf, a slow unit, and the whole bus
  vanishing (the master's port disappears, like an unplugged USB adapter) and returning
  at the same path;
* **statistics**: bytes, frames, time the wire was busy, utilisation.

API::

    link = LinkEmulator(baud=9600, parity="N", stopbits=1, turnaround_ms=None, seed=0)
    await link.start()
    link.master_port, link.device_port          # paths to open
    link.set_fault("crc", rate=0.02)            # corrupt 2% of replies' CRC
    link.set_fault("drop", rate=0.01)           # lose 1% of frames (either way)
    link.set_fault("silent", unit=5, on=True)   # requests to unit 5 never arrive
    link.set_fault("exception", unit=3, code=2, rate=1.0)  # the link answers exception 2
    link.set_fault("slow", unit=7, delay_ms=150)           # unit 7 answers 150 ms late
    link.set_fault("gone", on=True)             # master port vanishes ... on=False: back
    link.schedule(2.0, "gone", on=True)         # the same, 2 real seconds from now
    link.clear_faults()
    link.stats() -> {"bytes", "frames", "busy_s", "elapsed_s", "utilisation",
                     "dropped", "corrupted", "exceptions", "char_s"}
    link.reset_stats()
    link.char_time, link.frame_time(nbytes), link.gap_time
    await link.stop()

With ``framing="dlt645"`` the link carries DL/T 645-2007 frames instead (2400 8E1 is that
protocol's default line): frame ends come from the frame's own length byte
(agent/dlt645/codec.py ``frame_length``), a "crc" fault corrupts the checksum byte, and
the unit-addressed faults (silent, exception, slow: Modbus unit ids) do not apply; the
simulated DL/T 645 meters have their own (hil/dlt645.py).

Frame boundaries are found by parsing Modbus RTU lengths (requests of function codes
1-6 are 8 bytes, 15/16 carry a byte count; replies carry a byte count or are 5-byte
exceptions), with a 3.5-character quiet timer as the fallback for anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
import tty
from typing import Any

from agent.dlt645.codec import frame_length

MODBUS_CRC_POLY = 0xA001


def crc16(data: bytes) -> int:
    """Modbus CRC-16 (poly 0xA001, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ MODBUS_CRC_POLY if crc & 1 else crc >> 1
    return crc


def with_crc(body: bytes) -> bytes:
    c = crc16(body)
    return body + bytes((c & 0xFF, c >> 8))


def bits_per_char(bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> int:
    return 1 + bytesize + (0 if parity == "N" else 1) + stopbits


def _request_len(buf: bytes) -> int | None:
    """Length of the RTU request at the start of ``buf``, None if unknown yet."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if 1 <= fc <= 6:
        return 8
    if fc in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else None
    return -1  # unknown function: fall back to the quiet timer


def _response_len(buf: bytes) -> int | None:
    if len(buf) < 2:
        return None
    fc = buf[1]
    if fc & 0x80:
        return 5
    if fc in (1, 2, 3, 4):
        return 5 + buf[2] if len(buf) >= 3 else None
    if fc in (5, 6, 15, 16):
        return 8
    return -1


class _Side:
    """One pty pair: we hold the master fd and keep the slave open so reads never EIO."""

    def __init__(self, link_path: str):
        self.link_path = link_path
        self.master_fd = -1
        self.slave_fd = -1
        self.buf = b""
        self.quiet: asyncio.TimerHandle | None = None

    def open(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        os.set_blocking(master, False)
        self.master_fd, self.slave_fd = master, slave
        tmp = self.link_path + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.link_path)

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.link_path)
        for fd in (self.master_fd, self.slave_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master_fd = self.slave_fd = -1
        self.buf = b""

    @property
    def is_open(self) -> bool:
        return self.master_fd >= 0


class LinkEmulator:
    """A half-duplex RS-485 segment between a master pty and a device pty."""

    def __init__(self, baud: int = 9600, parity: str = "N", stopbits: int = 1,
                 bytesize: int = 8, turnaround_ms: float | None = None, seed: int = 0,
                 workdir: str | None = None, framing: str = "modbus"):
        if parity not in ("N", "E", "O"):
            raise ValueError("parity must be N, E or O")
        if framing not in ("modbus", "dlt645"):
            raise ValueError("framing must be modbus or dlt645")
        self.framing = framing
        self.baud = baud
        self.parity = parity
        self.stopbits = stopbits
        self.bytesize = bytesize
        self.bits = bits_per_char(bytesize, parity, stopbits)
        self.char_time = self.bits / float(baud)
        # Modbus serial line spec: above 19200 baud use fixed 1.75 ms / 750 us timers.
        self.gap_time = 3.5 * self.char_time if baud <= 19200 else 0.00175
        self.turnaround = (turnaround_ms / 1000.0 if turnaround_ms is not None
                           else self.gap_time)
        self._rng = random.Random(seed)
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="loadwatch-rs485-")
        self.master_port = os.path.join(self.workdir, "ttyLW-master")
        self.device_port = os.path.join(self.workdir, "ttyLW-device")
        self._master = _Side(self.master_port)
        self._device = _Side(self.device_port)
        self._queue: asyncio.Queue | None = None
        self._wire_task: asyncio.Task | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wire_free_at = 0.0
        self._last_request_end = 0.0
        self._pending_unit = 0
        self.faults: dict[str, Any] = {}
        self.clear_faults()
        self.reset_stats()

    # --------------------------------------------------------------- arithmetic

    def frame_time(self, nbytes: int) -> float:
        """Seconds a frame of ``nbytes`` occupies the wire."""
        return nbytes * self.char_time

    # --------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._device.open()
        self._open_master()
        self._loop.add_reader(self._device.master_fd, self._on_readable, self._device)
        self._wire_task = asyncio.create_task(self._wire(), name="rs485-wire")
        self.reset_stats()

    def _open_master(self) -> None:
        self._master.open()
        if self._loop is not None:
            self._loop.add_reader(self._master.master_fd, self._on_readable, self._master)

    def _close_master(self) -> None:
        if self._master.is_open and self._loop is not None:
            self._loop.remove_reader(self._master.master_fd)
        self._master.close()

    async def stop(self) -> None:
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        if self._wire_task is not None:
            self._wire_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._wire_task
            self._wire_task = None
        if self._loop is not None and self._device.is_open:
            self._loop.remove_reader(self._device.master_fd)
        self._close_master()
        self._device.close()
        if self._own_dir:
            with contextlib.suppress(OSError):
                os.rmdir(self.workdir)

    async def __aenter__(self) -> LinkEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --------------------------------------------------------------- faults

    def clear_faults(self) -> None:
        self.faults = {"crc": 0.0, "drop": 0.0, "gone": False, "silent": set(),
                       "exception": {}, "slow": {}}

    def set_fault(self, kind: str, on: bool = True, rate: float = 1.0, unit: int = 0,
                  code: int = 4, delay_ms: float = 0.0) -> None:
        """Switch a fault; see the module docstring for the kinds."""
        if kind in ("crc", "drop"):
            self.faults[kind] = float(rate) if on else 0.0
        elif kind == "silent":
            (self.faults["silent"].add if on else self.faults["silent"].discard)(unit)
        elif kind == "exception":
            if on and rate > 0:
                self.faults["exception"][unit] = (int(code), float(rate))
            else:
                self.faults["exception"].pop(unit, None)
        elif kind == "slow":
            if on and delay_ms > 0:
                self.faults["slow"][unit] = delay_ms / 1000.0
            else:
                self.faults["slow"].pop(unit, None)
        elif kind == "gone":
            self._set_gone(bool(on))
        else:
            raise ValueError("unknown fault %r (crc|drop|silent|exception|slow|gone)" % kind)

    def _set_gone(self, gone: bool) -> None:
        if gone == self.faults["gone"]:
            return
        self.faults["gone"] = gone
        if gone:
            self._close_master()
        else:
            self._open_master()

    def schedule(self, after_s: float, kind: str, **kw: Any) -> None:
        """Switch a fault ``after_s`` real seconds from now (needs start())."""
        if self._loop is None:
            raise RuntimeError("start() the link first")
        self._timers.append(self._loop.call_later(after_s, lambda: self.set_fault(kind,
                                                                                  **kw)))

    # --------------------------------------------------------------- statistics

    def reset_stats(self) -> None:
        self._stats = {"bytes": 0, "frames": 0, "busy_s": 0.0, "dropped": 0, "corrupted": 0,
                       "exceptions": 0}
        self._t_stats = self._loop.time() if self._loop is not None else 0.0

    def stats(self) -> dict:
        out: dict[str, Any] = dict(self._stats)
        now = self._loop.time() if self._loop is not None else 0.0
        out["elapsed_s"] = max(1e-9, now - self._t_stats)
        out["utilisation"] = min(1.0, out["busy_s"] / out["elapsed_s"])
        out["char_s"] = self.char_time
        return out

    # --------------------------------------------------------------- data path

    def _on_readable(self, side: _Side) -> None:
        try:
            data = os.read(side.master_fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if not data:
            return
        side.buf += data
        self._split(side)

    def _split(self, side: _Side) -> None:
        from_master = side is self._master
        while side.buf:
            if self.framing == "dlt645":
                n = frame_length(side.buf)
            else:
                n = (_request_len if from_master else _response_len)(side.buf)
            if n is None:
                break
            if n < 0 or len(side.buf) < n:
                # Unknown length or incomplete: end the frame after 3.5 quiet characters.
                if side.quiet is not None:
                    side.quiet.cancel()
                assert self._loop is not None
                side.quiet = self._loop.call_later(max(self.gap_time, 0.002), self._flush,
                                                   side)
                return
            frame, side.buf = side.buf[:n], side.buf[n:]
            self._enqueue(from_master, frame)
        if side.quiet is not None and not side.buf:
            side.quiet.cancel()
            side.quiet = None

    def _flush(self, side: _Side) -> None:
        side.quiet = None
        if side.buf:
            frame, side.buf = side.buf, b""
            self._enqueue(side is self._master, frame)

    def _enqueue(self, from_master: bool, frame: bytes) -> None:
        assert self._queue is not None and self._loop is not None
        self._queue.put_nowait((from_master, frame, self._loop.time()))

    async def _wire(self) -> None:
        assert self._queue is not None and self._loop is not None
        while True:
            from_master, frame, arrived = await self._queue.get()
            unit = frame[0] if frame and self.framing == "modbus" else 0
            not_before = arrived
            if from_master:
                if unit in self.faults["silent"]:
                    # The request still crosses the wire; nobody answers it.
                    await self._transmit(frame, None, not_before)
                    continue
                exc = self.faults["exception"].get(unit)
                if exc is not None and self._rng.random() < exc[1]:
                    end = await self._transmit(frame, None, not_before)
                    reply = with_crc(bytes((unit, (frame[1] | 0x80) & 0xFF, exc[0])))
                    self._stats["exceptions"] += 1
                    await self._transmit(reply, self._master,
                                         end + self.turnaround + self.faults["slow"].get(
                                             unit, 0.0))
                    continue
                self._pending_unit = unit
                end = await self._transmit(frame, self._device, not_before)
                self._last_request_end = end
            else:
                slow = self.faults["slow"].get(unit, 0.0)
                not_before = max(arrived, self._last_request_end + self.turnaround + slow)
                if self.faults["crc"] and self._rng.random() < self.faults["crc"]:
                    k = len(frame) - (2 if self.framing == "dlt645" and len(frame) > 1
                                      else 1)
                    frame = frame[:k] + bytes(((frame[k] ^ 0x5A) or 1,)) + frame[k + 1:]
                    self._stats["corrupted"] += 1
                await self._transmit(frame, self._master, not_before)

    async def _transmit(self, frame: bytes, dest: _Side | None, not_before: float) -> float:
        """Occupy the wire with ``frame`` and hand it to ``dest`` paced; returns its end."""
        assert self._loop is not None
        loop = self._loop
        start = max(loop.time(), not_before, self._wire_free_at + self.gap_time)
        if self.faults["drop"] and self._rng.random() < self.faults["drop"]:
            dest = None
            self._stats["dropped"] += 1
        n = len(frame)
        chunk = max(1, int(0.01 / self.char_time))  # deliver in ~10 ms slices
        sent = 0
        while sent < n:
            k = min(chunk, n - sent)
            due = start + (sent + k) * self.char_time
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if dest is not None and dest.is_open:
                with contextlib.suppress(OSError):
                    os.write(dest.master_fd, frame[sent:sent + k])
            sent += k
        end = start + n * self.char_time
        self._wire_free_at = end
        self._stats["bytes"] += n
        self._stats["frames"] += 1
        self._stats["busy_s"] += n * self.char_time
        return end
