"""A minimal DL/T 645-2007 master on ``machine.UART``: read data (0x11) with follow-ups.

Frames are built and judged by the agent's own pure codec (agent/dlt645/codec.py,
bundled into the firmware), so a reply means the same on the MCU as on the gateway.
Only the reply handling is here: bytes before a frame (wake-up FE bytes, noise) are
skipped, and our own echoed request is ignored; the line itself (driver-enable pin, a
3.5-character silence between frames, the error type) is ``rs485_line.Rs485Line``, shared
with the Modbus master.

Errors are ``ModbusError(kind, message, code)`` with the agent's kinds (timeout, crc,
exception, io), so the device reports the same quality flags and health for DL/T 645
meters as for Modbus ones.
"""

import time

from rs485_line import Rs485Line

from agent.dlt645 import codec
from agent.failures import Failure


class Dlt645Master(Rs485Line):
    """One RS-485 line of DL/T 645 meters (the line discipline is ``Rs485Line``'s)."""

    def __init__(self, uart, baud=2400, bits_per_char=11, timeout_ms=1000, de_pin=None):
        super().__init__(uart, baud, bits_per_char, timeout_ms, de_pin)

    def _exchange(self, frame, address):
        self.quiet()
        self.send(frame)
        buf = b""
        got_bytes = 0
        start = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), start) < self.timeout_ms:
            chunk = self.uart.read(64)
            if not chunk:
                time.sleep_ms(1)
                continue
            got_bytes += len(chunk)
            buf += chunk
            self.heard()
            while True:
                try:
                    f, used = codec.scan(buf)
                except codec.FrameError as e:
                    raise self.fail(Failure.CRC, "meter %s: %s" % (address, e)) from None
                buf = buf[used:]
                if f is None:
                    break
                if not f.is_reply:
                    continue  # our own request, echoed by the transceiver
                if f.address != address:
                    raise self.fail(Failure.CRC, "meter %s: the reply came from address %s"
                                     % (address, f.address))
                return f
        if got_bytes:
            raise self.fail(Failure.CRC, "meter %s: %d bytes arrived but no complete frame"
                             % (address, got_bytes))
        raise self.fail(Failure.TIMEOUT, "meter %s: no reply in %d ms"
                         % (address, self.timeout_ms))

    def _data(self, f, address, di, function):
        try:
            return codec.item_data(f, di, function)
        except codec.FrameError as e:
            if e.kind == "error":
                raise self.fail(Failure.EXCEPTION, "meter %s: %s" % (address, e), e.code) from None
            raise self.fail(Failure.CRC, "meter %s: %s" % (address, e)) from None

    def read_item(self, address, di):
        """The value bytes of data item ``di`` of meter ``address`` (12 digits)."""
        self.requests += 1
        f = self._exchange(codec.read_request(address, di), address)
        data = self._data(f, address, di, codec.C_READ)
        seq = 0
        while f.follows:
            seq += 1
            if seq > codec.MAX_FOLLOW_UPS:
                raise self.fail(Failure.CRC, "meter %s: DI %s: still 'more follows' after %d "
                                 "follow-up frames" % (address, codec.di_text(di),
                                                       codec.MAX_FOLLOW_UPS))
            f = self._exchange(codec.follow_request(address, di, seq), address)
            data += self._data(f, address, di, codec.C_READ_FOLLOW)
        return data
