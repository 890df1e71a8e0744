"""Is this reading's time good enough to learn from and decide on? One guard per meter.

A gateway's clock can be wrong in two ways that the detector cannot tell from load: an RTC
that lost its battery boots in 2003 (or 1970) until NTP answers, and a clock stepped back
more than a day (NTP correcting a clock that ran ahead, a technician's mistake). Fed such
times, the detector re-synchronises (it forgets its day ring: score 0 for about 28 h, so
the policy would clear a miner's alert on missing evidence) and the policy would date a
new alert's id in 2003. So (issue 11, item 3):

- on the wall clock, a time before ``CLOCK_FLOOR`` (2020-01-01, before any Loadwatch ran)
  is never trusted (a simulated clock, as in the demo or a rig replaying 2013's traces,
  has no floor);
- a time behind what the meter already learned (``last_t``) is held: nothing learned,
  nothing decided, the alert stays as it is, the meter's state is ``unknown``. A clock
  that comes back (NTP after boot) resumes where it left off, no resync at all;
- a clock that stays behind for ``ACCEPT_AFTER_S`` of its own time is accepted as the new
  truth (a clock that had run ahead): the detector re-synchronises, and for ``RESYNC_S``
  afterwards the policy is not fed (no raise, and above all no clear) while the detector
  rebuilds its days. An open alert is held through all of it;
- a jump forward of more than ``GAP_S`` (NTP correcting a clock that ran behind, or days
  without a reading) is a resync too: the detector's last days are empty, and a score of 0
  for lack of data is no evidence that a miner stopped.

Pure: time comes in as an argument; ``state()``/``from_state()`` go into state.json.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("loadwatch.clock")

CLOCK_FLOOR = 1577836800.0  # 2020-01-01T00:00:00Z
ACCEPT_AFTER_S = 6 * 3600.0
RESYNC_S = 2 * 86400.0
GAP_S = 86400.0

LEARN = "learn"  # trust it
HOLD = "hold"  # learn nothing, decide nothing
ACCEPTED = "accepted"  # the clock stepped back for good: start afresh in time from here


def _iso(t: float) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    except (OverflowError, ValueError, OSError):
        return repr(t)


class ClockGuard:
    """The time check of one meter; see the module docstring."""

    def __init__(self, meter: str, floor: float = CLOCK_FLOOR):
        self.meter = meter
        self.floor = floor
        self.last_t = float("-inf")  # latest trusted reading time
        self.held_since: float | None = None  # first held time of this episode
        self.resync_until = float("-inf")  # the policy is not fed before this time

    def check(self, t: float) -> str:
        if t < self.floor:
            if self.held_since is None:
                self.held_since = t
                log.error("meter %s: the clock says %s, before %s: it is not set; holding "
                          "the meter's score and alert until it is", self.meter, _iso(t),
                          _iso(self.floor))
            return HOLD
        if t >= self.last_t:
            if self.held_since is not None:
                log.warning("meter %s: the clock is back at %s; continuing where it left "
                            "off", self.meter, _iso(t))
                self.held_since = None
            if t - self.last_t > GAP_S and self.last_t > float("-inf"):
                log.warning("meter %s: %.1f days without a reading (or the clock jumped "
                            "forward); the alert is held (not raised, not cleared) until %s "
                            "while the detector re-learns its days", self.meter,
                            (t - self.last_t) / 86400.0, _iso(t + RESYNC_S))
                self.resync_until = t + RESYNC_S
            self.last_t = t
            return LEARN
        if self.held_since is None or self.held_since < self.floor:
            self.held_since = t
            log.error("meter %s: the clock went back %.0f s (to %s) behind what it already "
                      "learned; holding its score and alert (state unknown)", self.meter,
                      self.last_t - t, _iso(t))
            return HOLD
        if t - self.held_since < ACCEPT_AFTER_S:
            return HOLD
        log.warning("meter %s: the clock has stayed %.0f s behind for %.0f s: taking it as "
                    "the right time; the detector re-learns its days, and the alert is held "
                    "(not raised, not cleared) until %s", self.meter, self.last_t - t,
                    t - self.held_since, _iso(t + RESYNC_S))
        self.held_since = None
        self.last_t = t
        self.resync_until = t + RESYNC_S
        return ACCEPTED

    def deciding(self, t: float) -> bool:
        """May the policy decide at ``t`` (not during a resync)?"""
        return t >= self.resync_until

    @property
    def holding(self) -> bool:
        return self.held_since is not None

    def state(self) -> dict:
        return {"last_t": self.last_t if self.last_t > float("-inf") else None,
                "resync_until": self.resync_until if self.resync_until > float("-inf")
                else None}

    @classmethod
    def from_state(cls, meter: str, state: dict, floor: float = CLOCK_FLOOR) -> ClockGuard:
        g = cls(meter, floor)
        if state.get("last_t") is not None:
            g.last_t = float(state["last_t"])
        if state.get("resync_until") is not None:
            g.resync_until = float(state["resync_until"])
        return g
