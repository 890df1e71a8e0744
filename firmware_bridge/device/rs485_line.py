"""One RS-485 line on ``machine.UART``: what every bus master on the device needs, once.

Both masters (``modbus_rtu.RtuMaster``, ``dlt645_master.Dlt645Master``) talk half-duplex
over one transceiver, so they share the line discipline: the driver-enable pin is raised
only while a request is on the wire and dropped as soon as its last stop bit has left
(``UART.flush()``, or the computed frame time where a port lacks it), so the meter's reply
is not talked over; and at least 3.5 character times of silence are kept between frames
(Modbus over serial line V1.02, 2.5.1.1; DL/T 645 masters keep the same gap), with
anything stale on the line dropped first. A protocol's master adds only its framing.

Errors are ``ModbusError(kind, message, code)`` with the agent's failure kinds (timeout,
crc, exception, io), whatever the protocol, so the device reports the same quality flags
and health for every meter.
"""

import time


class ModbusError(Exception):
    def __init__(self, kind, message, code=0):
        super().__init__(message)
        self.kind = kind
        self.code = code


class Rs485Line:
    """One bus: one transaction at a time (the caller loops over meters)."""

    def __init__(self, uart, baud, bits_per_char, timeout_ms, de_pin):
        self.uart = uart
        self.de = de_pin
        self.timeout_ms = timeout_ms
        self.char_us = (bits_per_char * 1000000) // baud
        self.gap_us = (self.char_us * 7) // 2
        self._last = time.ticks_us()
        self.requests = 0
        self.errors = 0
        if self.de is not None:
            self.de.value(0)

    def quiet(self):
        """Wait out the inter-frame gap, dropping anything stale on the line."""
        while True:
            wait = self.gap_us - time.ticks_diff(time.ticks_us(), self._last)
            if wait > 0:
                time.sleep_us(wait)
            if not self.uart.read():
                return
            self._last = time.ticks_us()

    def send(self, frame):
        """Put ``frame`` on the wire with the driver enabled, then release the line."""
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

    def heard(self):
        """Note that bytes just arrived: the next frame's silence counts from now."""
        self._last = time.ticks_us()

    def fail(self, kind, message, code=0):
        """Count a failed transaction; the error to raise."""
        self.errors += 1
        return ModbusError(kind, message, code)
