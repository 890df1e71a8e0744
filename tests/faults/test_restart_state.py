"""What a restart keeps (the partly filled telemetry slot is checkpointed with the
detector, so a gateway killed every few minutes still publishes every slot, whole), and
what health says about a meter that answers with nothing usable."""

from __future__ import annotations

import math

import harness as h
import pytest

from agent.meter_health import Health
from agent.model import Q_NAN, Reading
from agent.runtime import Agent

# Fault campaigns (tests/faults): `make test` and `make faults` only.
pytestmark = pytest.mark.slow


def test_partly_filled_telemetry_slot_survives_a_crash(tmp_path):
    state_dir = tmp_path / "s"
    agent = Agent(h.plan(state_dir))
    feed = h.Feed(agent)
    start = h.T0 + 3600.0 * 5  # an hourly slot boundary
    feed.run(start, start + 1800.0, meters=[h.MINER])  # half the slot
    agent.save_state()  # the periodic checkpoint; then the process is killed
    again = Agent(h.plan(state_dir))
    feed = h.Feed(again)
    feed.run(start + 1800.0, start + 3600.0 + 1.0, meters=[h.MINER])  # closes the slot
    slots = [e for e in feed.events if e.kind == "telemetry"]
    assert len(slots) == 1, slots
    assert slots[0].data["slot_start"] == start
    assert slots[0].data["samples"] == 3600 / h.POLL_S, slots[0].data
    assert slots[0].id == "%s:telemetry:%d" % (h.MINER, start)


def test_a_meter_answering_only_nan_is_not_healthy(tmp_path):
    """Health said "ok" while 100 % of the readings were NaN: reachable is not healthy."""
    agent = Agent(h.plan(tmp_path / "s"))
    feed = h.Feed(agent)
    t = feed.run(h.T0, h.T0 + 3600.0)
    agent.on_health(Health(h.MINER, t))  # the poller: it answers
    assert agent.health[h.MINER].state == "ok"
    for i in range(6):
        agent.on_reading(Reading(h.MINER, t + i * h.POLL_S, {"p_w": math.nan},
                                 quality=Q_NAN))
    agent.on_health(Health(h.MINER, t + 1800.0))  # still answering every poll
    health = agent.health[h.MINER]
    sent = [e for e in feed.events if e.kind == "health" and e.meter == h.MINER]
    assert health.state == "degraded" and health.cause == "bad_data", health.as_dict()
    assert sent[-1].data["state"] == "degraded" and "nan" in sent[-1].data["reason"]
    agent.on_reading(h.reading(h.MINER, t + 7 * h.POLL_S))  # good data again
    agent.on_health(Health(h.MINER, t + 3600.0))
    assert agent.health[h.MINER].state == "ok"
