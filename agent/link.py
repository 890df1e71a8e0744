"""What every protocol's transport raises: one failure type for the bus scheduler.

The poller (agent/modbus/poller.py) is protocol-neutral (DESIGN.md 10): it retries,
backs off and reports health from ``TransportError.kind`` alone, whether the request was
Modbus (agent/modbus/transport.py) or DL/T 645 (agent/dlt645/transport.py).
"""

from __future__ import annotations

import errno
import os

from agent.failures import Failure


class TransportError(Exception):
    """A failed request. ``kind`` is a ``Failure`` (agent/failures.py; RawPoll.error_kind):
    "exception" is an error answer from a live meter (a Modbus exception, a DL/T 645
    0xD1 reply) with its code in ``exception_code``; "crc" is bytes that were not a good
    answer (bad checksum, truncated, garbled, another meter's reply); "mismatch" is a
    well-formed Modbus frame that answers another request (agent/modbus/replies.py)."""

    def __init__(self, kind: str, message: str, exception_code: int = 0):
        if kind not in Failure.ALL:
            raise ValueError("%r is not a failure kind (agent/failures.py)" % (kind,))
        super().__init__(message)
        self.kind = kind
        self.exception_code = exception_code


class Line:
    """Where a bus is and how characters are framed on it: what a Modbus and a DL/T 645
    transport share (the wire is the same; only the protocol on it differs)."""

    # How a non-serial line is described after host:port (a protocol may say more).
    tcp_label = ""

    def __init__(self, kind: str, kinds: tuple[str, ...], *, host: str = "",
                 port: int | str | None = None, baud: int = 9600, parity: str = "N",
                 stopbits: int = 1, bytesize: int = 8, timeout_s: float = 1.0):
        if kind not in kinds:
            raise ValueError("a %s line is one of %s, got %r"
                             % (type(self).__name__, kinds, kind))
        self.kind = kind
        self.host = host
        self.port = port
        self.baud = baud
        self.parity = parity
        self.stopbits = stopbits
        self.bytesize = bytesize
        self.timeout_s = timeout_s
        self.bytes_out = 0
        self.bytes_in = 0

    def describe(self) -> str:
        if self.kind == "rtu":
            return "%s at %d baud %d%s%d" % (self.port, self.baud, self.bytesize, self.parity,
                                            self.stopbits)
        return "%s:%s (%s)" % (self.host, self.port, self.tcp_label or self.kind)


def check_serial_port(path: str) -> None:
    """Name the usual serial mistakes before a library turns them into 'cannot connect'."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.access(parent, os.X_OK):
        raise TransportError(Failure.IO, "no permission to open %s (cannot enter %s)"
                             % (path, parent))
    if not os.path.exists(path):
        raise TransportError(Failure.IO, "serial port %s does not exist (adapter unplugged? "
                             "see ls /dev/ttyUSB* /dev/serial/by-id/)" % path)
    if not os.access(path, os.R_OK | os.W_OK):
        raise TransportError(Failure.IO, "no permission to open %s (add the user to the "
                             "'dialout' group, or run as a user that may)" % path)


def serial_open_error(path: str) -> str:
    """Why ``path`` cannot be opened as a serial port ("" when it can), with the errno:
    a library only says that it could not connect, which leaves a technician guessing
    between an unplugged adapter, a busy port, a permission and a file that is no tty."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as e:
        hint = {errno.ENOENT: " (adapter unplugged? see ls /dev/ttyUSB* /dev/serial/by-id/)",
                errno.EACCES: " (add the user to the 'dialout' group)",
                errno.EBUSY: " (another program has it open: see fuser %s)" % path,
                errno.ENXIO: " (the device behind it is gone: adapter unplugged?)",
                errno.EIO: " (the adapter stopped answering: replug it)"}.get(e.errno, "")
        return "errno %d, %s%s" % (e.errno, e.strerror, hint)
    try:
        import termios

        termios.tcgetattr(fd)
    except termios.error as e:
        code = e.args[0] if e.args else errno.ENOTTY
        return "%s is not a serial port (errno %d, %s)" % (path, code, os.strerror(code))
    finally:
        os.close(fd)
    return ""
