"""A minimal Modbus RTU master on ``machine.UART`` (read holding/input registers only).

Timing follows "MODBUS over serial line" V1.02, section 2.5.1.1: frames are separated by
at least 3.5 character times of silence (fixed 1.75 ms above 19200 baud), and a reply is
complete when its length (from the byte count) has arrived. The RS-485 transceiver's
driver-enable pin is raised only while the request is on the wire, then dropped at once
so the meter's reply is not talked over; ``UART.flush()`` (or, where a port lacks it, the
computed frame time) tells when the last stop bit has left.

Errors are raised as ``ModbusError(kind, code)`` with the agent's kinds (timeout, crc,
exception, io), so the device reports the same quality flags and health as the agent.
"""

import struct
import time

from agent.failures import Failure


class ModbusError(Exception):
    def __init__(self, kind, message, code=0):
        super().__init__(message)
        self.kind = kind
        self.code = code


def crc16(data):
    """Modbus CRC-16 (poly 0xA001 reflected, init 0xFFFF), sent low byte first."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xA001
            else:
                crc >>= 1
    return crc


def request(unit, fc, address, count):
    body = struct.pack(">BBHH", unit, fc, address, count)
    return body + struct.pack("<H", crc16(body))


class RtuMaster:
    """One RS-485 bus: one transaction at a time (the caller loops over meters)."""

    def __init__(self, uart, baud=9600, bits_per_char=10, timeout_ms=500, de_pin=None):
        self.uart = uart
        self.de = de_pin
        self.timeout_ms = timeout_ms
        self.char_us = (bits_per_char * 1000000) // baud
        # 3.5 characters of silence between frames; fixed 1750 us above 19200 baud.
        self.gap_us = 1750 if baud > 19200 else (self.char_us * 7) // 2
        self._last = time.ticks_us()
        self.requests = 0
        self.errors = 0
        if self.de is not None:
            self.de.value(0)

    def _quiet(self):
        """Wait out the inter-frame gap, dropping anything stale on the line."""
        while True:
            wait = self.gap_us - time.ticks_diff(time.ticks_us(), self._last)
            if wait > 0:
                time.sleep_us(wait)
            stale = self.uart.read()
            if not stale:
                return
            self._last = time.ticks_us()

    def _send(self, frame):
        if self.de is not None:
            self.de.value(1)
        self.uart.write(frame)
        flush = getattr(self.uart, "flush", None)
        if flush is not None:
            flush()
        else:
            time.sleep_us(len(frame) * self.char_us)
        if self.de is not None:
            self.de.value(0)
        self._last = time.ticks_us()

    def _receive(self, want, unit, fc):
        """Read until ``want`` bytes, an exception reply, or the timeout."""
        buf = bytearray()
        start = time.ticks_ms()
        while len(buf) < want:
            left = self.timeout_ms - time.ticks_diff(time.ticks_ms(), start)
            if left <= 0:
                break
            chunk = self.uart.read(want - len(buf))
            if chunk:
                buf.extend(chunk)
                self._last = time.ticks_us()
                if len(buf) >= 5 and buf[1] == (fc | 0x80):
                    want = 5
            else:
                time.sleep_ms(1)
        return buf, want

    def read_registers(self, unit, fc, address, count):
        """Registers ``address .. address+count-1`` of ``unit`` with fc 3 or 4."""
        if fc not in (3, 4) or not 1 <= count <= 125:
            raise ModbusError(Failure.IO, "unsupported request fc=%d count=%d" % (fc, count))
        self.requests += 1
        self._quiet()
        self._send(request(unit, fc, address, count))
        want = 5 + 2 * count
        buf, want = self._receive(want, unit, fc)
        if len(buf) < want:
            self.errors += 1
            if not buf:
                raise ModbusError(Failure.TIMEOUT, "unit %d: no reply in %d ms"
                                  % (unit, self.timeout_ms))
            raise ModbusError(Failure.TIMEOUT, "unit %d: %d of %d bytes in %d ms"
                              % (unit, len(buf), want, self.timeout_ms))
        frame = bytes(buf[:want])
        if struct.unpack("<H", frame[-2:])[0] != crc16(frame[:-2]):
            self.errors += 1
            raise ModbusError(Failure.CRC, "unit %d: bad CRC" % unit)
        if frame[0] != unit:
            self.errors += 1
            raise ModbusError(Failure.IO, "reply from unit %d, expected %d" % (frame[0], unit))
        if frame[1] == (fc | 0x80):
            self.errors += 1
            raise ModbusError(Failure.EXCEPTION, "unit %d: exception %d" % (unit, frame[2]),
                              frame[2])
        if frame[1] != fc or frame[2] != 2 * count:
            self.errors += 1
            raise ModbusError(Failure.IO, "unit %d: malformed reply" % unit)
        return list(struct.unpack(">%dH" % count, frame[3:-2]))
