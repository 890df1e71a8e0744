"""The one source of time for the agent, the rig and the demo.

Pure stages take ``t`` as an argument; only the runtime, pollers and simulated meters ask a
clock. A clock can run faster than real time (``speed``) so that the demo and the tests can
pass days of load in a minute. Protocol timeouts are never scaled: a meter on a 9600-baud
bus takes as long to answer whatever the simulated date is, so they use ``monotonic()``.
"""

from __future__ import annotations

import asyncio
import time


class Clock:
    """Simulated-or-real UNIX time: ``now() = t0 + (monotonic - m0) * speed``.

    With ``speed=1`` and no ``t0`` it is the wall clock itself (``time.time()``), so the
    times the agent stamps on readings and events follow NTP's corrections made after it
    started, as the status and will messages do; waiting and timeouts use the monotonic
    clock (``monotonic()``, ``sleep()``), which no correction moves. ``step()`` moves the
    time the way NTP or an RTC reset moves the wall clock, for the fault campaigns.

    Two processes that share ``t0``, ``speed`` and ``wall_start`` (see ``spec()`` and
    ``from_spec()``) agree on the simulated time, which is how a rig in one process and an
    agent in another stay in step.
    """

    def __init__(
        self, speed: float = 1.0, t0: float | None = None, wall_start: float | None = None
    ):
        if not speed > 0:
            raise ValueError("clock speed must be > 0, got %r" % (speed,))
        self.speed = float(speed)
        self.wall_start = time.time() if wall_start is None else float(wall_start)
        self.t0 = self.wall_start if t0 is None else float(t0)
        # Anchor the monotonic clock to the shared wall start so that a clock rebuilt from a
        # spec in another process reads the same simulated time.
        self._m0 = time.monotonic() - (time.time() - self.wall_start)
        self._wall = speed == 1.0 and t0 is None and wall_start is None

    @property
    def simulated(self) -> bool:
        return self.speed != 1.0 or self.t0 != self.wall_start

    def now(self) -> float:
        if self._wall:
            return time.time()
        return self.t0 + (time.monotonic() - self._m0) * self.speed

    def step(self, seconds: float) -> None:
        """Step the time by ``seconds`` (negative: back), as an NTP step or an RTC reset
        steps the wall clock; a wall clock becomes a simulated one from here."""
        if self._wall:
            self._wall = False
            self.wall_start = time.time()
            self.t0 = self.wall_start
            self._m0 = time.monotonic()
        self.t0 += seconds

    def monotonic(self) -> float:
        return time.monotonic()

    def real_seconds(self, sim_seconds: float) -> float:
        return max(0.0, sim_seconds) / self.speed

    async def sleep(self, sim_seconds: float) -> None:
        await asyncio.sleep(self.real_seconds(sim_seconds))

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(self.real_seconds(t - self.now()))

    def spec(self) -> dict:
        return {"speed": self.speed, "t0": self.t0, "wall_start": self.wall_start}

    @classmethod
    def from_spec(cls, spec: dict) -> Clock:
        return cls(speed=spec["speed"], t0=spec["t0"], wall_start=spec["wall_start"])
