"""The agent stops even when a poll in flight swallows its cancellation.

On CPython 3.10 and 3.11 ``asyncio.wait_for`` (which pymodbus awaits for every reply) loses
a cancellation that arrives together with the reply (cpython issue #86296, fixed in 3.12).
A busy bus always has a reply arriving, so now and then a cancelled poller kept polling
and ``Agent.run()`` waited for it forever (seen once as a ``loadwatch hil run village-bus``
that never ended). The race itself cannot be timed from outside, so this test makes every
poll swallow a cancel the way that ``wait_for`` does, against a real pymodbus meter and a
real broker, and requires the agent to stop anyway.
"""

from __future__ import annotations

import asyncio

from agentkit import tcp_agent_toml

from agent.clock import Clock
from agent.config import load_text
from agent.modbus.poller import BusPoller
from agent.profiles import load_profile
from agent.runtime import Agent
from hil.broker import MosquittoBroker
from hil.loads.base import Constant
from hil.meters import SimMeterServer, SimUnit


def test_agent_stops_when_a_poll_swallows_the_cancel(arun, tmp_path, monkeypatch):
    swallowed: list[str] = []
    original = BusPoller._poll_meter
    in_flight = asyncio.Event()

    async def poll_that_loses_a_cancel(self, transport, st):
        in_flight.set()
        if not swallowed:  # the race is a one-off: lose the first cancel only
            try:
                await asyncio.sleep(0.3)
            except asyncio.CancelledError:
                swallowed.append(st.plan.id)  # ... as wait_for does when the reply lands
        return await original(self, transport, st)

    monkeypatch.setattr(BusPoller, "_poll_meter", poll_that_loses_a_cancel)

    async def main() -> None:
        clock = Clock()
        server = SimMeterServer([SimUnit(1, load_profile("sdm630"), Constant(900.0, 0.95), clock)],
                                tcp=("127.0.0.1", 0))
        await server.start()
        try:
            with MosquittoBroker() as broker:
                plan = load_text(tcp_agent_toml(tmp_path / "state", server.port,
                                                broker_port=broker.port), "t.toml")
                agent = Agent(plan, clock)
                task = asyncio.create_task(agent.run())
                await asyncio.wait_for(in_flight.wait(), 20.0)
                task.cancel()  # lands in Agent.run, which cancels the poll in flight
                # Before the fix the poller went on polling and this timed out.
                await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10.0)
                assert swallowed == ["m1"], swallowed
        finally:
            await server.stop()

    arun(main(), timeout=60.0)
