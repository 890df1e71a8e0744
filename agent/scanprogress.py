"""The progress line that `loadwatch scan` draws while it probes a bus, for either protocol.

A scan of 247 Modbus units or a range of DL/T 645 addresses can take minutes at 2400 baud;
a field technician wants to see that it moves and when it will end. On a terminal the line
is redrawn in place; in a log (not a tty) it is written at most once a second, plus the
first and the last, so a captured log stays short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ScanProgress:
    """``[####....] 12/247 units, unit 12, 1 found, 0:04 elapsed, ETA 1:17``."""

    def __init__(self, total: int, noun: str, stream: TextIO = sys.stderr, width: int = 30):
        self.total = total
        self.noun = noun  # what is counted: "units", "addresses"
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.last = 0.0
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def show(self, done: int, probing: str, found: int) -> None:
        """``probing`` names the one being tried now, e.g. "unit 12"."""
        now = time.monotonic()
        if not self.tty and done not in (1, self.total) and now - self.last < 1.0:
            return
        self.last = now
        fill = int(self.width * done / max(1, self.total))
        elapsed = now - self.started
        # The ones before this took `elapsed`: the rest will take about as long each.
        eta = elapsed / (done - 1) * (self.total - done + 1) if done > 1 else None
        line = "[%s%s] %3d/%d %s, %s, %d found, %s elapsed, ETA %s" % (
            "#" * fill, "." * (self.width - fill), done, self.total, self.noun, probing,
            found, clock(elapsed), clock(eta) if eta is not None else "?")
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def __enter__(self) -> ScanProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()  # however the scan ends, the next line starts on a line of its own

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def clock(seconds: float) -> str:
    """m:ss under an hour, h:mm:ss above."""
    whole = round(seconds)
    return "%d:%02d" % divmod(whole, 60) if whole < 3600 else \
        "%d:%02d:%02d" % (whole // 3600, whole % 3600 // 60, whole % 60)
