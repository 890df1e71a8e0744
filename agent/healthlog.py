"""Log lines for a meter's health transitions: what ``journalctl -u loadwatch`` shows.

A running agent must say when a meter stops answering and when it comes back, with the
reason and what to check, but never once per poll: a dead meter polled every 10 s for a
week would bury everything else. So a line is written when a meter's state or the cause
of its trouble *changes* (ok -> degraded -> down -> ok), and a meter that flaps is
rate-limited by a small token bucket: a few lines at once (unplug, replug), then at most
one a minute, each saying how many changes were not logged meanwhile.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from agent.meter_health import Health

log = logging.getLogger("loadwatch.health")

BURST = 4  # transitions logged at once before the rate limit applies
REFILL_S = 60.0  # one more logged transition per this many (real) seconds


class _Bucket:
    __slots__ = ("at", "suppressed", "tokens")

    def __init__(self, now: float):
        self.tokens = float(BURST)
        self.at = now
        self.suppressed = 0


class TransitionLog:
    """Feed every Health the agent sees; logs a line only when something changed."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log):
        self._mono = monotonic
        self._log = logger
        self._last: dict[str, tuple[str, str]] = {}
        self._buckets: dict[str, _Bucket] = {}

    def observe(self, h: Health) -> bool:
        """Log ``h`` if its state or cause changed; True when a line was written."""
        key = (h.state, h.cause)
        before = self._last.get(h.meter, ("ok", ""))
        if key == before:
            return False
        self._last[h.meter] = key
        now = self._mono()
        b = self._buckets.get(h.meter)
        if b is None:
            b = self._buckets[h.meter] = _Bucket(now)
        b.tokens = min(float(BURST), b.tokens + (now - b.at) / REFILL_S)
        b.at = now
        if b.tokens < 1.0:
            b.suppressed += 1
            return False
        b.tokens -= 1.0
        extra = ""
        if b.suppressed:
            extra = " (%d earlier change(s) not logged: the meter is flapping)" % b.suppressed
            b.suppressed = 0
        if h.state == "ok":
            self._log.info("meter %s: %s -> ok: answering again%s", h.meter, before[0], extra)
            return True
        self._log.warning("meter %s: %s -> %s (%s): %s; hint: %s%s", h.meter, before[0],
                          h.state, h.cause or "?", h.reason or h.last_error or "no reason given",
                          h.hint or "-", extra)
        return True
