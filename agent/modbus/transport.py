"""The one module in agent/ that imports pymodbus.

A ``Transport`` is one connection (a serial port, a TCP socket to a meter or to an
RTU-over-TCP gateway) and knows nothing about meters: ``read(unit, fc, address, count)``
returns registers or raises ``TransportError`` with a ``kind`` the decoder turns into a
quality flag: "timeout" (no answer, or a gateway's exception 10/11 saying so),
"exception" (a Modbus exception reply, with its code), "crc" (bytes arrived but no
valid frame: noise, a bad checksum, a garbled answer), "mismatch" (a well-formed frame
that is not the answer to this request: another unit, another function code, another
transaction, a byte count that is not 2 x the registers asked; see replies.py) or "io"
(the port or host is not there).

pymodbus retries and reconnects on its own; both are switched off here (``retries=0``,
``reconnect_delay=0``) because the poller decides about retries and back-off per meter.
pymodbus also drops a TCP connection after a few unanswered requests; on an RTU-over-TCP
gateway that would punish every meter behind it for one dead unit, so that counter is
reset before each request.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from agent.failures import Failure
from agent.link import Line, TransportError, check_serial_port, serial_open_error
from agent.modbus.replies import RTU, SOCKET, wrong_reply
from agent.model import RawBlock

KINDS = ("tcp", "rtu", "rtu-over-tcp")

# pymodbus logs every unanswered request at ERROR (with frame dumps). Here a silent meter
# is an expected event that the poller counts, backs off and publishes as health, so the
# library's own logging is limited to what it cannot report through an exception.
logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)

RX_KEEP = 300  # raw reply bytes kept for the reply check (a read reply is <= 259)


def limit_one_request(client: AsyncModbusSerialClient | AsyncModbusTcpClient,
                      timeout_s: float) -> None:
    """The one place that writes pymodbus internals (its transaction manager,
    ``client.ctx``): the answer timeout of the next request, and a fresh count of the
    failed requests after which pymodbus drops the link (this module decides that, per
    meter). pymodbus offers no public setter for either; setup.cfg pins its minor version
    and tests/test_seams.py fails loudly if these attributes move."""
    ctx = client.ctx
    ctx.comm_params.timeout_connect = timeout_s
    ctx.count_until_disconnect = ctx.max_until_disconnect


class _OneLineDecodeErrors(logging.Filter):
    """pymodbus decodes inside ``data_received``; a malformed reply (a byte count longer
    than the frame) raises there, and asyncio logs "Fatal error: protocol.data_received()
    call failed." with a 20-line traceback before closing the connection. The read itself
    fails and is reported (kind "mismatch" or "crc", in the meter's health), so the log
    gets one line instead, at most once a minute (a hostile device answers every poll)."""

    EVERY_S = 60.0

    def __init__(self) -> None:
        super().__init__()
        self._last = -1e9
        self._since = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not (isinstance(exc, ModbusException) and "data_received" in str(record.msg)):
            return True
        self._since += 1
        now = time.monotonic()
        if now - self._last < self.EVERY_S:
            return False
        self._last = now
        record.msg = ("Modbus: a malformed reply closed the connection (%s); %d such "
                      "replies since the last line like this")
        record.args = (exc, self._since)
        self._since = 0
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


logging.getLogger("asyncio").addFilter(_OneLineDecodeErrors())


# Modbus exceptions a gateway sends on behalf of a meter that did not answer (Modbus
# Application Protocol v1.1b3, section 7): they mean "absent", not "present but refusing".
GATEWAY_NO_ANSWER = {10: "gateway path unavailable", 11: "gateway target did not respond"}


class Transport(Line):
    """One Modbus connection; not safe for concurrent requests (the poller locks)."""

    def __init__(self, kind: str, *, host: str = "", port: int | str | None = None,
                 baud: int = 9600, parity: str = "N", stopbits: int = 1, bytesize: int = 8,
                 timeout_s: float = 1.0):
        super().__init__(kind, KINDS, host=host, port=port, baud=baud, parity=parity,
                         stopbits=stopbits, bytesize=bytesize, timeout_s=timeout_s)
        self._rx_since_send = 0
        self._tx = b""
        self._rx = b""
        self._answered = False  # any reply on this connection yet (else it never opened)
        self._client: AsyncModbusSerialClient | AsyncModbusTcpClient | None = None

    # --------------------------------------------------------------- connection

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.bytes_out += len(data)
            self._rx_since_send = 0
            self._tx = bytes(data)
            self._rx = b""
        else:
            self.bytes_in += len(data)
            self._rx_since_send += len(data)
            self._rx = (self._rx + bytes(data))[:RX_KEEP]
        return data

    def _wrong_reply(self, unit: int, fc: int, count: int) -> str:
        """Why the bytes received since the last request are not its answer ("" if they
        are, or hold no complete frame)."""
        framer = SOCKET if self.kind == "tcp" else RTU
        return wrong_reply(framer, self._tx, self._rx, unit, fc, count)

    def _garbled(self, unit: int, fc: int, count: int, reset: bool) -> TransportError:
        """The error for a reply that arrived but was refused: a wrong one or noise."""
        why = self._wrong_reply(unit, fc, count)
        after = "; the connection was reset" if reset else ""
        if why:
            return TransportError(Failure.MISMATCH, "unit %d: wrong reply, %s%s"
                                  % (unit, why, after))
        return TransportError(Failure.CRC, "unit %d: %d bytes arrived but no valid frame (bad CRC "
                              "or noise)%s" % (unit, self._rx_since_send, after))

    def _make_client(self) -> AsyncModbusSerialClient | AsyncModbusTcpClient:
        if self.kind == "rtu":
            return AsyncModbusSerialClient(
                str(self.port), framer=FramerType.RTU, baudrate=self.baud,
                bytesize=self.bytesize, parity=self.parity, stopbits=self.stopbits,
                timeout=self.timeout_s, retries=0, reconnect_delay=0,
                trace_packet=self._trace)
        framer = FramerType.RTU if self.kind == "rtu-over-tcp" else FramerType.SOCKET
        return AsyncModbusTcpClient(
            self.host, port=int(self.port or 502), framer=framer, timeout=self.timeout_s,
            retries=0, reconnect_delay=0, trace_packet=self._trace)

    async def connect(self) -> None:
        """Open the port or socket; raises TransportError(Failure.IO) when it is not there."""
        if self.connected:
            return
        self.close()
        if self.kind == "rtu":
            check_serial_port(str(self.port))
        client = self._make_client()
        try:
            ok = await client.connect()
        except (OSError, ModbusException) as e:
            client.close()
            raise TransportError(Failure.IO, "cannot open %s: %s" % (self.describe(), e)) from None
        if not ok:
            client.close()
            raise TransportError(Failure.IO, await self._why_not_connected())
        self._client = client
        self._answered = False

    async def _why_not_connected(self) -> str:
        """The reason a connection did not open, found by trying the way pymodbus does
        (it reports only False): no such host, refused, timed out, or the serial errno."""
        if self.kind == "rtu":
            return "cannot open %s: %s" % (self.describe(), await self._diagnose())
        return "cannot connect to %s:%s: %s" % (self.host, self.port or 502,
                                                await self._diagnose())

    async def _diagnose(self) -> str:
        """Why the port or host cannot be reached right now, in a technician's words."""
        if self.kind == "rtu":
            return serial_open_error(str(self.port)) or "the port did not open"
        port = int(self.port or 502)
        loop = asyncio.get_running_loop()
        try:
            await loop.getaddrinfo(self.host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            return "no such host %r (%s): check the address" % (
                self.host, getattr(e, "strerror", None) or e)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, port),
                                               self.timeout_s)
        except ConnectionRefusedError:
            return ("connection refused (the host is up but nothing listens on port %d: "
                    "wrong port, or its Modbus TCP server is off)" % port)
        except (asyncio.TimeoutError, TimeoutError):
            return ("timed out connecting after %.1f s (wrong address, host powered off or "
                    "unplugged, or a firewall)" % self.timeout_s)
        except OSError as e:
            return "errno %s, %s" % (e.errno, e.strerror)
        writer.close()
        return "it accepts connections again (a flaky link?)"

    async def _lost(self, detail: str = "") -> TransportError:
        """A connection that had answered broke: say so, and what reconnecting meets."""
        return TransportError(Failure.IO, "connection to %s lost%s; now: %s" % (
            self.describe(), (" (%s)" % detail) if detail else "", await self._diagnose()))

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                client.close()
            except Exception:  # closing a port that vanished may raise anything
                pass

    # --------------------------------------------------------------- requests

    async def fetch(self, meter: Any, req: Any, timeout_s: float) -> RawBlock:
        """One planned request of ``meter`` (a MeterPlan) as a RawBlock: the seam the
        protocol-neutral poller calls on every transport."""
        regs = await self.read(meter.unit, req.fc, req.address, req.count, timeout_s)
        return RawBlock(req.fc, req.address, regs)

    async def read(self, unit: int, fc: int, address: int, count: int,
                   timeout_s: float | None = None) -> list[int]:
        """Read ``count`` registers with function ``fc`` (3 or 4) from ``unit``."""
        if not self.connected:
            await self.connect()
        client = self._client
        if client is None:  # pragma: no cover - connect() raised already
            raise TransportError(Failure.IO, "not connected")
        wait_s = timeout_s if timeout_s is not None else self.timeout_s
        limit_one_request(client, wait_s)
        self._rx_since_send = 0
        self._rx = b""
        try:
            if fc == 3:
                rr = await client.read_holding_registers(address, count=count, device_id=unit)
            elif fc == 4:
                rr = await client.read_input_registers(address, count=count, device_id=unit)
            else:
                raise ValueError("only function codes 3 and 4 are read, got %r" % fc)
        except ConnectionException as e:
            self.close()
            if self._rx_since_send:  # a reply pymodbus could not decode closed the link
                raise self._garbled(unit, fc, count, reset=True) from None
            if not self._answered:
                raise TransportError(Failure.IO, await self._why_not_connected()) from None
            raise await self._lost(str(e)) from None
        except ModbusIOException as e:
            if not client.connected:
                self.close()
                if self._rx_since_send:
                    raise self._garbled(unit, fc, count, reset=True) from None
                if not self._answered:
                    raise TransportError(Failure.IO, await self._why_not_connected()) from None
                raise await self._lost() from None
            if self._rx_since_send:
                raise self._garbled(unit, fc, count, reset=False) from None
            raise TransportError(Failure.TIMEOUT, "unit %d: no answer in %.0f ms" % (
                unit, 1000 * wait_s)) from e
        except (OSError, asyncio.IncompleteReadError) as e:
            self.close()
            raise await self._lost(str(e)) from None
        self._answered = True
        why = self._wrong_reply(unit, fc, count)
        if why or int(getattr(rr, "function_code", fc) or 0) & 0x7F != fc:
            # Well-formed but not this request's answer: never registers (issue 11).
            raise TransportError(Failure.MISMATCH, "unit %d: wrong reply, %s" % (
                unit, why or "function code %s" % getattr(rr, "function_code", "?")))
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0) or 0)
            if code in GATEWAY_NO_ANSWER:
                # A gateway's own reply that no meter answered: the unit is absent, as
                # after a timeout (scan does not list it, the poller backs off).
                raise TransportError(Failure.TIMEOUT, "unit %d: the gateway reports no answer "
                                     "(exception %d, %s)" % (unit, code,
                                                             GATEWAY_NO_ANSWER[code]),
                                     exception_code=code)
            raise TransportError(Failure.EXCEPTION, "unit %d answered exception %d" % (unit, code),
                                 exception_code=code)
        regs = list(rr.registers)
        if len(regs) != count:
            raise TransportError(Failure.MISMATCH, "unit %d: wrong reply, %d registers for %d "
                                 "asked" % (unit, len(regs), count))
        return regs
