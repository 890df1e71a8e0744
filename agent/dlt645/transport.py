"""The agent's DL/T 645-2007 transport: one serial line, or one transparent TCP gateway.

Utilities reach RS-485 meters through "transparent" (raw) gateways: the TCP stream *is*
the RS-485 line, bytes in and out unchanged. So one adapter serves both: bytes go out on
a pyserial port or a TCP socket, and come back into one receive buffer that the pure
codec (agent/dlt645/codec.py) scans for a frame. ``kind`` "rtu" is a serial port,
"rtu-over-tcp" a transparent gateway (the same names as for Modbus: the line is the
same, only the protocol on it differs).

Every failure is a ``TransportError`` the protocol-neutral poller understands:

* "timeout": nothing came back (no meter with that address, or a dead one);
* "crc": bytes came back but not a good answer: bad checksum, a frame cut short,
  garbage, a non-BCD address, a reply from *another* address, a reply to another DI, or
  a meter that keeps saying "more follows" (0xB1) past ``MAX_FOLLOW_UPS`` frames;
* "exception": the meter answered 0xD1/0xD2; ``exception_code`` is the error byte and
  the message names its bits (0x02: the meter does not have this DI);
* "io": the port or gateway is not there.

Garbage *between* frames (noise, a wake-up preamble, a late answer to an earlier
request) is skipped: only the frame that answers this request counts. Frames the master
itself sent (RS-485 adapters that echo) are recognised by their direction bit and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from agent.dlt645 import codec
from agent.failures import Failure
from agent.link import Line, TransportError, check_serial_port
from agent.model import RawItem

KINDS = ("rtu", "rtu-over-tcp")
MAX_FOLLOW_UPS = codec.MAX_FOLLOW_UPS


class _Receiver(asyncio.Protocol):
    def __init__(self, owner: Dlt645Transport):
        self.owner = owner

    def data_received(self, data: bytes) -> None:
        self.owner._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost()


class Dlt645Transport(Line):
    """One DL/T 645 line; not safe for concurrent requests (the poller locks the bus)."""

    tcp_label = "transparent gateway"

    def __init__(self, kind: str, *, host: str = "", port: int | str | None = None,
                 baud: int = 2400, parity: str = "E", stopbits: int = 1, bytesize: int = 8,
                 timeout_s: float = 1.0):
        super().__init__(kind, KINDS, host=host, port=port, baud=baud, parity=parity,
                         stopbits=stopbits, bytesize=bytesize, timeout_s=timeout_s)
        self._rx = bytearray()
        self._rx_since_send = 0
        self._event: asyncio.Event | None = None
        self._serial: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tcp: asyncio.Transport | None = None

    # --------------------------------------------------------------- connection

    @property
    def connected(self) -> bool:
        return self._serial is not None or (self._tcp is not None
                                            and not self._tcp.is_closing())

    def _received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self._rx_since_send += len(data)
        self._rx.extend(data)
        if self._event is not None:
            self._event.set()

    def _lost(self) -> None:
        self._tcp = None
        if self._event is not None:
            self._event.set()

    def _on_serial(self) -> None:
        try:
            data = os.read(self._serial.fileno(), 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            if self._event is not None:
                self._event.set()
            return
        if data:
            self._received(data)

    async def connect(self) -> None:
        """Open the port or socket; raises TransportError(Failure.IO) when it is not there."""
        if self.connected:
            return
        self.close()
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        if self.kind == "rtu":
            import serial  # pyserial: a dependency of the agent already (pymodbus uses it)
            path = str(self.port)
            check_serial_port(path)
            try:
                ser = serial.Serial(path, baudrate=self.baud, bytesize=self.bytesize,
                                    parity=self.parity, stopbits=self.stopbits, timeout=0,
                                    write_timeout=self.timeout_s)
            except (OSError, ValueError, serial.SerialException) as e:
                raise TransportError(Failure.IO, "cannot open %s: %s" % (self.describe(), e)) \
                    from None
            self._serial = ser
            self._loop.add_reader(ser.fileno(), self._on_serial)
            return
        try:
            tr, _ = await asyncio.wait_for(self._loop.create_connection(
                lambda: _Receiver(self), self.host, int(self.port or 0)), self.timeout_s)
        except (OSError, asyncio.TimeoutError) as e:
            raise TransportError(Failure.IO, "cannot connect to %s: %s" % (
                self.describe(), e or "no answer")) from None
        self._tcp = tr  # type: ignore[assignment]

    def close(self) -> None:
        if self._serial is not None:
            ser, self._serial = self._serial, None
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(ser.fileno())
            with contextlib.suppress(Exception):
                ser.close()
        if self._tcp is not None:
            tcp, self._tcp = self._tcp, None
            with contextlib.suppress(Exception):
                tcp.close()
        self._rx.clear()

    def _write(self, frame: bytes) -> None:
        self.bytes_out += len(frame)
        try:
            if self._serial is not None:
                self._serial.write(frame)
            elif self._tcp is not None:
                self._tcp.write(frame)
            else:
                raise OSError("not connected")
        except Exception as e:  # pyserial raises its own types for a vanished port
            self.close()
            raise TransportError(Failure.IO, "%s: cannot send: %s" % (self.describe(), e)) \
                from None

    # --------------------------------------------------------------- one exchange

    async def exchange(self, frame: bytes, address: str, timeout_s: float) -> codec.Frame:
        """Send one request and return the meter's reply frame (any control code)."""
        if not self.connected:
            await self.connect()
        if self._event is None or self._loop is None:  # pragma: no cover - connect() set them
            raise TransportError(Failure.IO, "not connected")
        self._rx.clear()  # a late answer to an earlier request is not this one's
        self._rx_since_send = 0
        self._event.clear()
        self._write(frame)
        deadline = self._loop.time() + timeout_s
        who = "the read-address broadcast" if address == codec.BROADCAST else \
            "meter %s" % address
        while True:
            try:
                got, used = codec.scan(bytes(self._rx))
            except codec.FrameError as e:
                self._rx.clear()
                raise TransportError(Failure.CRC, "%s: %s" % (who, e)) from None
            if used:
                del self._rx[:used]
            if got is not None:
                if not got.is_reply:
                    continue  # our own request echoed by the adapter
                if address != codec.BROADCAST and got.address != address:
                    raise TransportError(Failure.CRC, "meter %s: the reply came from address %s "
                                         "(two meters with one address, or a line mix-up)"
                                         % (address, got.address))
                return got
            if not self.connected:
                raise TransportError(Failure.IO, "connection to %s lost" % self.describe())
            left = deadline - self._loop.time()
            if left <= 0:
                if self._rx_since_send:
                    raise TransportError(Failure.CRC, "%s: %d bytes arrived but no complete "
                                         "frame (truncated or garbled)"
                                         % (who, self._rx_since_send))
                raise TransportError(Failure.TIMEOUT, "%s: no answer in %.0f ms"
                                     % (who, 1000 * timeout_s))
            self._event.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._event.wait(), left)

    # --------------------------------------------------------------- reads

    async def read_item(self, address: str, di: int, timeout_s: float | None = None) -> bytes:
        """The value bytes of data item ``di`` (follow-up frames joined)."""
        t = self.timeout_s if timeout_s is None else timeout_s
        f = await self.exchange(codec.read_request(address, di), address, t)
        data = self._payload(f, address, di, codec.C_READ, 0)
        seq = 0
        while f.follows:
            seq += 1
            if seq > MAX_FOLLOW_UPS:
                raise TransportError(Failure.CRC, "meter %s: DI %s: still 'more follows' (0xB1) "
                                     "after %d follow-up frames; gave up"
                                     % (address, codec.di_text(di), MAX_FOLLOW_UPS))
            f = await self.exchange(codec.follow_request(address, di, seq), address, t)
            data += self._payload(f, address, di, codec.C_READ_FOLLOW, seq)
        return data

    @staticmethod
    def _payload(f: codec.Frame, address: str, di: int, function: int, seq: int) -> bytes:
        try:
            return codec.item_data(f, di, function)
        except codec.FrameError as e:
            if e.kind == "error":
                raise TransportError(Failure.EXCEPTION, "meter %s: %s" % (address, e),
                                     exception_code=e.code) from None
            raise TransportError(Failure.CRC, "meter %s: %s" % (address, e)) from None

    async def read_address(self, timeout_s: float | None = None) -> str:
        """0x13 broadcast: the address of the one meter on the line."""
        t = self.timeout_s if timeout_s is None else timeout_s
        f = await self.exchange(codec.read_address_request(), codec.BROADCAST, t)
        if f.function != codec.C_READ_ADDRESS or f.abnormal or len(f.data) < 6:
            raise TransportError(Failure.CRC, "no valid answer to the read-address broadcast "
                                 "(control 0x%02X, %d bytes)" % (f.control, len(f.data)))
        try:
            return codec.address_text(f.data[:6])
        except codec.FrameError as e:
            raise TransportError(Failure.CRC, "read-address answer: %s" % e) from None

    async def fetch(self, meter: Any, req: Any, timeout_s: float) -> RawItem:
        """One planned ItemRequest of ``meter`` (a MeterPlan): the poller's seam."""
        return RawItem(req.di, await self.read_item(meter.address, req.di, timeout_s))
