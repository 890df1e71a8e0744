"""Small parts that the polling tests of both protocols share: a frozen meter clock and a
collector for a poller's callbacks (tests/ is on sys.path: ``from pollkit import ...``)."""

from __future__ import annotations

from agent.model import RawPoll


class FixedClock:
    """Meters frozen at one instant, so served values can be compared exactly."""

    def __init__(self, t: float):
        self.t = self.t0 = t

    def now(self) -> float:
        return self.t


class Collector:
    """What a BusPoller hands on: every raw poll, and the latest health per meter."""

    def __init__(self) -> None:
        self.polls: list[RawPoll] = []
        self.health: dict[str, object] = {}

    def on_poll(self, raw: RawPoll) -> None:
        self.polls.append(raw)

    def on_health(self, h) -> None:
        self.health[h.meter] = h
