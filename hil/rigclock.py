"""The rig's clock governor: a fast simulated clock that slows down when the agent's polls
fall behind, instead of letting simulated time run away from the buses.

Why the clock is fast but not virtual: the agent's contract is ``Clock(speed, t0)`` and real
protocol timeouts, so a run at x50,000 really does poll a TCP server every few ms and an
RS-485 bus at its real baud rate. When the rig cannot keep up, simulated time still flows
and polls simply land further apart; the report prints the effective poll interval so a
too-ambitious ``--speed`` is visible rather than silently changing the test.
"""

from __future__ import annotations

import time

from agent.clock import Clock


class RigClock(Clock):
    """A ``Clock`` whose speed the rig may lower (and restore) while it runs.

    On a loaded machine (CI: 2 cores, many jobs) the agent can fall behind a very fast
    clock; polls then land hours apart in simulated time and the detector sees a different
    signal than the scenario means. The runner's governor watches the poll gaps and slows
    the clock instead, so a scenario tests the same thing on a busy or an idle machine and
    only takes longer. Re-anchoring keeps ``now()`` continuous and monotonic.
    """

    def __init__(self, speed: float, t0: float):
        super().__init__(speed=speed, t0=t0)
        self.target = self.speed
        self._t_anchor = self.t0
        self._m_anchor = time.monotonic()
        self.slowdowns = 0
        self.state_dir = ""

    def now(self) -> float:
        return self._t_anchor + (time.monotonic() - self._m_anchor) * self.speed

    def set_speed(self, speed: float) -> None:
        t = self.now()
        self._t_anchor = t
        self._m_anchor = time.monotonic()
        if speed < self.speed:
            self.slowdowns += 1
        self.speed = float(speed)


def govern(clock: RigClock, lag_s: float | None, poll_s: float) -> None:
    """Slow the clock when a meter has missed a whole poll; recover gradually.

    A poll that starts late is rescheduled to the next point of its grid (the poller skips
    what it missed), so gaps up to 2 intervals are a late poll, not yet a lost one; only
    beyond that is the detector's sampling really thinned.
    """
    if lag_s is None:
        return
    if lag_s > 2.2 * poll_s:
        clock.set_speed(max(clock.target / 50.0, clock.speed * 0.7))
    elif lag_s < 1.2 * poll_s and clock.speed < clock.target:
        clock.set_speed(min(clock.target, clock.speed * 1.05))
