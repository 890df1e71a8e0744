"""Simulated DL/T 645-2007 meters, the line they share, and a transparent TCP gateway.

``SimDlt645Meter(address, profile, load, clock)`` is one meter. Its electrical picture
comes from the same physics as the Modbus simulated meters (hil/meters.py ``SimUnit``:
P and PF from the load model, Q, S, V, I, frequency and an energy counter integrated on
a fixed grid), encoded the DL/T 645 way by the shared codec (agent/dlt645/codec.py):
BCD in the profile's format, data +0x33, checksum. Like a real meter it answers only
frames carrying its own address (and the 0x13 read-address broadcast), and is silent to
everything else, so 24 of them can share one line.

``Dlt645Line(meters, serial=path)`` serves a set of meters on a serial port or a pty (the
device end of hil/rs485.py's LinkEmulator with ``framing="dlt645"``, which paces the
bytes at 2400 8E1), or ``tcp=(host, port)`` directly. When several meters answer one
frame (a 0x13 broadcast on a multi-drop line) their replies collide on the wire: the
line sends the bytes AND-ed together, which no master can decode, as on RS-485.

``TransparentGateway(serial_path, host, port)`` is what utilities put in front of an
RS-485 line: a TCP socket whose bytes *are* the line's bytes, both ways.

Faults (``meter.set_fault(kind, on=True, ...)``), each a thing a real line produces::

    silent        never answers (dead meter, wrong address on the label)
    error         answers 0xD1 with error byte ``code`` (``rate`` of reads, or one ``di``)
    unsupported   answers 0xD1 error 0x02 (no such data) for ``di``
    checksum      the reply's checksum is wrong
    wrong_address the reply carries another meter's address
    truncated     the reply is cut short
    garbage       noise bytes before and after the (good) reply
    endless       every reply says "more follows" (0xB1 / 0xB2), forever
    bad_bcd       values are 0xFF bytes (not BCD)
    slow          answers ``delay_ms`` late
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import tty
from typing import Any

from agent.decode import family
from agent.dlt645 import codec
from agent.profiles import Profile
from hil.meters import SimUnit

FAULTS = ("silent", "error", "unsupported", "checksum", "wrong_address", "truncated",
          "garbage", "endless", "bad_bcd", "slow")
NOISE = b"\x00\x55\xaa\x12\xff"


class SimDlt645Meter:
    """One simulated DL/T 645 meter: an address, a profile, a load and faults."""

    def __init__(self, address: str, profile: Profile, load: Any, clock: Any,
                 name: str = "", energy_start_kwh: float | None = None,
                 seed: int | None = None):
        if profile.protocol != "dlt645":
            raise ValueError("profile %s is not a DL/T 645 profile" % profile.name)
        self.address = codec.check_address(address)
        self.profile = profile
        self.name = name or address
        index = int(address) % 1000
        self.physics = SimUnit(1, profile, load, clock, name=self.name,
                               energy_start_kwh=(1000.0 + 37.0 * index if energy_start_kwh
                                                 is None else energy_start_kwh),
                               seed=seed if seed is not None else index)
        self.items: dict[int, tuple] = {f.di: (f,) for f in profile.quantities.values()}
        for b in profile.blocks:
            self.items[b.di] = tuple(profile.quantities[m] for m in b.members)
        self._rng = random.Random(seed if seed is not None else index)
        self.faults: dict[str, Any] = {}
        self.requests = 0
        self.clear_faults()

    # ---------------------------------------------------------------- faults

    def clear_faults(self) -> None:
        self.faults = {"silent": False, "error": (0.0, 0x01, None), "unsupported": set(),
                       "checksum": False, "wrong_address": False, "truncated": False,
                       "garbage": False, "endless": False, "bad_bcd": False, "delay_s": 0.0}

    def set_fault(self, kind: str, on: bool = True, rate: float = 1.0, code: int = 0x01,
                  delay_ms: float = 0.0, di: str | int | None = None) -> None:
        """Switch one fault (see the module docstring)."""
        if kind == "error":
            self.faults["error"] = ((float(rate) if on else 0.0), int(code),
                                    codec.di_int(di) if di is not None else None)
        elif kind == "unsupported":
            if di is None:
                raise ValueError("the unsupported fault needs di=")
            (self.faults["unsupported"].add if on else self.faults["unsupported"].discard)(
                codec.di_int(di))
        elif kind == "slow":
            self.faults["delay_s"] = max(0.0, delay_ms / 1000.0) if on else 0.0
        elif kind in ("frozen", "reset"):
            self.physics.set_fault(kind, on=on)  # same physics faults as the Modbus meters
        elif kind in FAULTS:
            self.faults[kind] = bool(on)
        else:
            raise ValueError("unknown fault %r (%s)" % (kind, "|".join(FAULTS)))

    @property
    def delay_s(self) -> float:
        return float(self.faults["delay_s"])

    # ---------------------------------------------------------------- answers

    def values(self, t: float | None = None) -> dict[str, float]:
        return self.physics.values(t)

    def item_bytes(self, di: int) -> bytes:
        """The value bytes of one DI as the meter would send them (without the DI)."""
        values = self.values()
        out = bytearray()
        for f in self.items[di]:
            if self.faults["bad_bcd"]:
                out += b"\xff" * f.size
                continue
            v = values.get(f.name, values.get(family(f.name), 0.0))
            out += codec.bcd_encode(v / f.scale, f.size, f.decimals, f.signed)
        return bytes(out)

    def answer(self, frame: codec.Frame) -> bytes | None:
        """The bytes this meter puts on the line for ``frame``; None: it stays silent."""
        if frame.is_reply:
            return None
        broadcast = frame.address == codec.BROADCAST
        if frame.function == codec.C_READ_ADDRESS:
            if not broadcast and frame.address != self.address:
                return None
        elif frame.address != self.address:
            return None  # another meter's frame: a real meter does not answer it
        self.requests += 1
        if self.faults["silent"]:
            return None
        reply = self._reply(frame)
        return self._damage(reply)

    def _reply(self, frame: codec.Frame) -> bytes:
        fn = frame.function
        if fn == codec.C_READ_ADDRESS:
            return codec.reply(self.address, fn, codec.address_bytes(self.address))
        if fn not in (codec.C_READ, codec.C_READ_FOLLOW) or len(frame.data) < 4:
            return codec.error_reply(self.address, fn, 0x01)
        di = codec.di_from_data(frame.data)
        rate, code, only = self.faults["error"]
        if rate and (only is None or only == di) and self._rng.random() < rate:
            return codec.error_reply(self.address, fn, code)
        if di in self.faults["unsupported"] or di not in self.items:
            return codec.error_reply(self.address, fn, 0x02)  # no such data
        head = frame.data[:4]
        if fn == codec.C_READ_FOLLOW:
            seq = frame.data[4] if len(frame.data) > 4 else 0
            if not self.faults["endless"]:
                return codec.error_reply(self.address, fn, 0x01)
            return codec.reply(self.address, fn, head + b"\x00" + bytes((seq,)), follows=True)
        return codec.reply(self.address, fn, head + self.item_bytes(di),
                           follows=self.faults["endless"])

    def _damage(self, reply: bytes) -> bytes:
        if self.faults["wrong_address"]:
            f = codec.decode(reply)
            other = "%012d" % ((int(self.address) + 1) % 10 ** 12)
            reply = codec.encode(other, f.control, f.data)
        if self.faults["checksum"]:
            reply = reply[:-2] + bytes(((reply[-2] + 1) & 0xFF,)) + reply[-1:]
        if self.faults["truncated"]:
            reply = reply[:-5]
        if self.faults["garbage"]:
            reply = NOISE + reply + NOISE
        return reply


def collide(replies: list[bytes]) -> bytes:
    """What a master hears when several meters answer at once on RS-485: garbage (the
    wired-AND of the bit streams, as long as the longest reply)."""
    n = max(len(r) for r in replies)
    out = bytearray(b"\xff" * n)
    for r in replies:
        for i, b in enumerate(r):
            out[i] &= b
    return bytes(out)


class Dlt645Line:
    """Meters sharing one line: a serial port / pty, or a TCP socket (no pacing)."""

    def __init__(self, meters: list[SimDlt645Meter], serial: str | None = None,
                 tcp: tuple[str, int] | None = None):
        if (serial is None) == (tcp is None):
            raise ValueError("give exactly one of serial=path or tcp=(host, port)")
        addresses = [m.address for m in meters]
        if len(set(addresses)) != len(addresses):
            raise ValueError("two meters with one address on one line")
        self.meters = list(meters)
        self.serial = serial
        self.tcp = tcp
        self.port = tcp[1] if tcp else 0
        self.frames = 0
        self._fd = -1
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buf = bytearray()
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    def meter(self, address: str) -> SimDlt645Meter:
        return next(m for m in self.meters if m.address == address)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._work(), name="dlt645-line")
        if self.serial is not None:
            fd = os.open(self.serial, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            with contextlib.suppress(Exception):
                tty.setraw(fd)
            self._fd = fd
            self._loop.add_reader(fd, self._on_serial)
            return
        assert self.tcp is not None
        self._server = await asyncio.start_server(self._client, self.tcp[0], self.tcp[1])
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._fd >= 0 and self._loop is not None:
            self._loop.remove_reader(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Dlt645Line:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- data path

    def _on_serial(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except (BlockingIOError, InterruptedError, OSError):
            return
        self._feed(data, None)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                self._feed(data, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    def _feed(self, data: bytes, writer: asyncio.StreamWriter | None) -> None:
        self._buf += data
        while True:
            try:
                frame, used = codec.scan(bytes(self._buf))
            except codec.FrameError:
                self._buf.clear()  # a garbled request: no meter answers it
                return
            del self._buf[:used]
            if frame is None:
                return
            assert self._queue is not None
            self._queue.put_nowait((frame, writer))

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            frame, writer = await self._queue.get()
            self.frames += 1
            answers = []
            delay = 0.0
            for m in self.meters:
                out = m.answer(frame)
                if out is not None:
                    answers.append(out)
                    delay = max(delay, m.delay_s)
            if not answers:
                continue
            if delay:
                await asyncio.sleep(delay)
            data = answers[0] if len(answers) == 1 else collide(answers)
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.write(data)
            elif self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.write(self._fd, data)


class TransparentGateway:
    """A TCP port whose bytes are a serial line's bytes (a "transparent" RS-485 gateway).

    One client at a time, as most such gateways: a new connection replaces the old one.
    """

    def __init__(self, serial: str, host: str = "127.0.0.1", port: int = 0):
        self.serial = serial
        self.host = host
        self.port = port
        self._server: asyncio.base_events.Server | None = None
        self._fd = -1
        self._writer: asyncio.StreamWriter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()
        self.bytes_up = 0
        self.bytes_down = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        fd = os.open(self.serial, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        with contextlib.suppress(Exception):
            tty.setraw(fd)
        self._fd = fd
        self._loop.add_reader(fd, self._on_serial)
        self._server = await asyncio.start_server(self._client, self.host, self.port,
                                                  family=socket.AF_INET)
        self.port = self._server.sockets[0].getsockname()[1]

    def _on_serial(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except (BlockingIOError, InterruptedError, OSError):
            return
        self.bytes_up += len(data)
        if self._writer is not None and data:
            with contextlib.suppress(Exception):
                self._writer.write(data)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        if self._writer is not None:
            self._writer.close()
        self._writer = writer
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                self.bytes_down += len(data)
                with contextlib.suppress(OSError):
                    os.write(self._fd, data)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._fd >= 0 and self._loop is not None:
            self._loop.remove_reader(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
