"""What a restart keeps: the partly filled telemetry slot is checkpointed with the
detector, so a gateway killed every few minutes still publishes every slot, whole."""

from __future__ import annotations

import harness as h
import pytest

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
