"""An in-process agent fed readings directly, for the fault campaigns that need many days
of simulated load in a second: the real ``Agent`` (pipelines, policy, outbox, state file),
with readings handed to ``on_reading`` the way a bus source hands them over, so nothing
below the runtime is faked and nothing above it is skipped.

The households come from ``hil.loads.demo_households`` (synthetic homes, one with a 1.4 kW
S9 miner from day ``MINER_DAY``), so these tests need no data files.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.config import Plan, load_text
from agent.model import Event, Reading
from agent.runtime import Agent
from hil.loads import demo_households

DAY = 86400.0
POLL_S = 300.0
MINER_DAY = 3.0
HOUSEHOLDS = demo_households(3, seed=7, miner_index=1, miner_day=MINER_DAY)
T0 = HOUSEHOLDS.t0
MINER = HOUSEHOLDS.miner_meter
METERS = [h.meter for h in HOUSEHOLDS.meters]


def plan(state_dir: Path, outbox: Path | None = None, max_mb: float = 16.0,
         checkpoint_s: float = 3600.0) -> Plan:
    """A plan for the three demo households on a TCP bus that is never polled."""
    lines = ['site = "s"', 'gateway = "g"', "poll_s = %d" % POLL_S,
             "telemetry_every_s = 3600", "checkpoint_every_s = %d" % checkpoint_s,
             "tz_offset_hours = %r" % HOUSEHOLDS.tz_hours,
             "state_dir = %s" % json.dumps(str(state_dir)),
             "[broker]", 'host = "127.0.0.1"', "port = 1", "tls = false",
             "[outbox]", "max_mb = %r" % max_mb]
    if outbox is not None:
        lines.append("path = %s" % json.dumps(str(outbox)))
    lines += ["[[buses]]", 'name = "b"', 'kind = "tcp"', 'host = "127.0.0.1"', "port = 1"]
    for i, h in enumerate(HOUSEHOLDS.meters):
        lines += ["[[meters]]", 'id = "%s"' % h.meter, 'bus = "b"', "unit = %d" % (i + 1),
                  'profile = "%s"' % h.profile.name]
    return load_text("\n".join(lines) + "\n", str(state_dir / "faults.toml"))


def reading(meter: str, t: float, stamp: float | None = None) -> Reading:
    """The load at real time ``t``, stamped with the gateway clock's ``stamp`` (a clock
    that is wrong stamps the right load with the wrong time)."""
    h = next(h for h in HOUSEHOLDS.meters if h.meter == meter)
    p, pf = h.load.power(t)
    return Reading(meter, t if stamp is None else stamp, {"p_w": p, "pf": pf})


class Feed:
    """Drives an agent's meters through simulated time and keeps every event it emits."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self.events: list[Event] = []
        agent.add_listener(self.events.append)

    def run(self, t_from: float, t_to: float, step: float = POLL_S,
            meters: list[str] | None = None, clock_error: float = 0.0) -> float:
        """Real time ``t_from`` to ``t_to``; the gateway's clock is ``clock_error`` off."""
        t = t_from
        while t < t_to:
            for m in meters or METERS:
                self.agent.on_reading(reading(m, t, t + clock_error))
            t += step
        return t

    def alerts(self) -> list[Event]:
        return [e for e in self.events if e.is_alert]
