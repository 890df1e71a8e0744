"""Meter health transitions in the log: once per change, rate-limited when flapping."""

from __future__ import annotations

import logging

from agent.healthlog import BURST, REFILL_S, TransitionLog
from agent.meter_health import Health


class FakeMono:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _down(h: Health, reason: str = "cannot open /dev/ttyUSB0: errno 2") -> Health:
    h.set_problem("down", "io", reason, "check the adapter")
    return h


def test_one_line_per_change_never_per_poll(caplog) -> None:
    mono = FakeMono()
    tl = TransitionLog(mono)
    h = Health("m1")
    with caplog.at_level(logging.INFO, logger="loadwatch.health"):
        assert not tl.observe(h)  # ok from the start: nothing to say
        for _ in range(50):  # down for 50 polls: one line
            mono.t += 10
            tl.observe(_down(h))
        h.set_problem("degraded", "retried", "1 request(s) needed a retry", "marginal link")
        tl.observe(h)
        h.set_ok()
        tl.observe(h)
        tl.observe(h)
    msgs = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [m[0] for m in msgs] == ["WARNING", "WARNING", "INFO"], msgs
    assert "m1: ok -> down (io): cannot open /dev/ttyUSB0: errno 2; hint: check the " \
           "adapter" in msgs[0][1]
    assert "down -> degraded (retried)" in msgs[1][1]
    assert "degraded -> ok" in msgs[2][1]


def test_a_flapping_meter_is_rate_limited_and_says_how_much_was_left_out(caplog) -> None:
    mono = FakeMono()
    tl = TransitionLog(mono)
    h = Health("m2")
    with caplog.at_level(logging.INFO, logger="loadwatch.health"):
        for _ in range(20):  # 40 changes within 40 s
            mono.t += 1
            tl.observe(_down(h))
            mono.t += 1
            h.set_ok()
            tl.observe(h)
        assert len(caplog.records) == BURST
        mono.t += REFILL_S
        tl.observe(_down(h))
    assert len(caplog.records) == BURST + 1
    assert "not logged: the meter is flapping" in caplog.records[-1].getMessage()
    # Another meter has its own budget.
    other = Health("m3")
    assert tl.observe(_down(other))
