"""Small parts that the polling tests of both protocols share: a frozen meter clock, a
collector for a poller's callbacks, a poller wired to one and a sweep of every meter now
(tests/ is on sys.path: ``from pollkit import ...``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from agent.modbus.poller import BusPoller
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


@contextlib.asynccontextmanager
async def polling(bus, clock) -> AsyncIterator[tuple[BusPoller, Collector]]:
    """``async with polling(bus, clock) as (poller, got):`` a BusPoller for ``bus`` whose
    polls and health go to the Collector ``got``; the poller is closed on the way out."""
    got = Collector()
    poller = BusPoller(bus, clock, got.on_poll, got.on_health)
    try:
        yield poller, got
    finally:
        poller.close()


async def sweep(poller, backoff: bool = False) -> float:
    """Poll every meter of ``poller`` once, now, whatever its schedule (with ``backoff``,
    a meter waiting out a back-off too); the wall seconds the sweep took."""
    for st in poller.meters.values():
        st.next_due = 0.0
        if backoff:
            st.retry_at = 0.0
    t0 = time.monotonic()
    await poller.run_cycle()
    return time.monotonic() - t0
