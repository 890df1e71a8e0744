"""A minimal Modbus RTU master on ``machine.UART`` (read holding/input registers only).

Timing follows "MODBUS over serial line" V1.02, section 2.5.1.1: frames are separated by
at least 3.5 character times of silence (fixed 1.75 ms above 19200 baud), and a reply is
complete when its length (from the byte count) has arrived. The line itself (driver-enable
pin, the silence between frames, the error type) is ``rs485_line.Rs485Line``, shared with
the DL/T 645 master.

Errors are raised as ``ModbusError(kind, message, code)`` with the agent's kinds (timeout,
crc, exception, io), so the device reports the same quality flags and health as the agent.
"""

import struct
import time

from rs485_line import ModbusError, Rs485Line

from agent.failures import Failure


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


class RtuMaster(Rs485Line):
    """One RS-485 bus of Modbus meters (the line discipline is ``Rs485Line``'s)."""

    def __init__(self, uart, baud=9600, bits_per_char=10, timeout_ms=500, de_pin=None):
        super().__init__(uart, baud, bits_per_char, timeout_ms, de_pin)
        if baud > 19200:
            self.gap_us = 1750  # the spec's fixed 3.5-character gap above 19200 baud

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
                self.heard()
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
        self.quiet()
        self.send(request(unit, fc, address, count))
        want = 5 + 2 * count
        buf, want = self._receive(want, unit, fc)
        if len(buf) < want:
            if not buf:
                raise self.fail(Failure.TIMEOUT, "unit %d: no reply in %d ms"
                                % (unit, self.timeout_ms))
            raise self.fail(Failure.TIMEOUT, "unit %d: %d of %d bytes in %d ms"
                            % (unit, len(buf), want, self.timeout_ms))
        frame = bytes(buf[:want])
        if struct.unpack("<H", frame[-2:])[0] != crc16(frame[:-2]):
            raise self.fail(Failure.CRC, "unit %d: bad CRC" % unit)
        if frame[0] != unit:
            raise self.fail(Failure.IO, "reply from unit %d, expected %d" % (frame[0], unit))
        if frame[1] == (fc | 0x80):
            raise self.fail(Failure.EXCEPTION, "unit %d: exception %d" % (unit, frame[2]),
                            frame[2])
        if frame[1] != fc or frame[2] != 2 * count:
            raise self.fail(Failure.IO, "unit %d: malformed reply" % unit)
        return list(struct.unpack(">%dH" % count, frame[3:-2]))
