"""``machine`` for the MicroPython unix port: just enough hardware to run the device app
on a Linux box in tests and on the bench (never copied to a board).

* ``UART(id, baudrate, ..., port=PATH)``: a serial device or pseudo-terminal opened in raw
  mode. Reads never block longer than asked: the unix port's ``FileIO.read(n)`` waits for
  all ``n`` bytes, so bytes are taken one at a time while ``poll`` says more are there.
  The line speed is set with termios (so a USB RS-485 adapter works too); a pty ignores
  it, and the device app does its own inter-frame timing from the configured rate.
* ``Pin``: remembers its value (the RS-485 driver-enable line) and counts transitions, so
  a test can check the direction pin was raised for every request.
* ``WDT``: checks the feed interval at each feed and exits with status 3 (a real
  watchdog would reset the board) when the app went longer than ``timeout`` between
  feeds; it cannot interrupt a hung loop (no timers on this port).
* ``reset()``: exits with status 4, the harness decides whether to restart.
"""

import select
import sys
import termios
import time

_UARTS = {}


class UART:
    INV_TX = 1
    INV_RX = 2

    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, tx=None, rx=None,
                 timeout=0, timeout_char=0, port=None, **kw):
        if port is None:
            port = _UARTS.get(id)
        if not port:
            raise OSError("UART(%r) has no serial port: the unix build needs port = "
                          "\"/dev/ttyUSB0\" (a serial device or pty path) in [rs485] and "
                          "[link] of the firmware config" % (id,))
        _UARTS[id] = port
        self.port = port
        self.baudrate = baudrate
        self.timeout = timeout
        self._f = open(port, "r+b")
        fd = self._f.fileno()
        termios.setraw(fd)
        # A real USB-serial adapter needs its line speed (8N1 from setraw); harmless on a
        # pty. Parity other than none is not applied by this shim.
        speed = getattr(termios, "B%d" % baudrate, None)
        if speed is not None:
            attrs = termios.tcgetattr(fd)
            attrs[4] = speed
            attrs[5] = speed
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self._poll = select.poll()
        self._poll.register(self._f, select.POLLIN)
        self._one = bytearray(1)

    def _ready(self, ms):
        for _obj, ev in self._poll.poll(ms):
            if ev & select.POLLIN:
                return True
            if ev & (select.POLLHUP | select.POLLERR):
                # The other end of the pty is closed: nothing will arrive; do not spin.
                time.sleep_ms(min(ms, 5) if ms > 0 else 0)
                return False
        return False

    def any(self):
        return 1 if self._ready(0) else 0

    def read(self, n=-1):
        """Up to ``n`` bytes (all available when n < 0); waits ``timeout`` ms for the
        first byte; None when nothing came (as on the boards)."""
        out = bytearray()
        wait = self.timeout
        while n < 0 or len(out) < n:
            if not self._ready(wait):
                break
            try:
                got = self._f.readinto(self._one)
            except OSError:
                break
            if not got:
                break
            out.append(self._one[0])
            wait = 0
        return bytes(out) if out else None

    def write(self, buf):
        # Unbuffered FileIO: the bytes are in the pty when write returns (and fsync,
        # which flush() would do, is EINVAL on a tty).
        return self._f.write(buf)

    def flush(self):
        pass

    def txdone(self):
        return True

    def deinit(self):
        try:
            self._f.close()
        except OSError:
            pass


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 2
    PULL_DOWN = 3

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self._v = 0 if value is None else value
        self.rises = 0

    def value(self, v=None):
        if v is None:
            return self._v
        if v and not self._v:
            self.rises += 1
        self._v = 1 if v else 0
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self._last = time.ticks_ms()

    def feed(self):
        now = time.ticks_ms()
        if time.ticks_diff(now, self._last) > self.timeout:
            print("machine shim: watchdog not fed for %d ms (limit %d): reset"
                  % (time.ticks_diff(now, self._last), self.timeout))
            sys.exit(3)
        self._last = now


def reset():
    sys.exit(4)


def soft_reset():
    sys.exit(4)


def freq(*args):
    return 0


def unique_id():
    return b"unix"
