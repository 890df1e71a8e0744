"""A profile that does not fit the meter is flagged, not run as "ok 0.000 kW" (issue 13
item 4): the pure check, the agent's health on a real pymodbus meter, and ``read``."""

from __future__ import annotations

import asyncio
import sys

from agentkit import tcp_agent_toml
from pollkit import sweep

from agent.clock import Clock
from agent.config import load_text
from agent.modbus.poller import BusPoller
from agent.model import Q_OK, Q_RANGE, Event
from agent.plausibility import MISMATCH_POLLS, ProfileCheck, implausible
from agent.profiles import load_profile
from agent.runtime import Agent
from hil.loads.base import Constant
from hil.meters import SimMeterServer, SimUnit


def test_implausible_names_what_contradicts_the_map() -> None:
    # An SDM120 read as an SDM630: its power lands in the L1 register, the total reads 0.
    sdm120_as_sdm630 = {"p_w": 0.0, "p_w_l1": 1234.0, "p_w_l2": 0.0, "p_w_l3": 0.0,
                        "v_v_l1": 228.0, "v_v_l2": 0.0, "v_v_l3": 0.0, "f_hz": 50.0}
    assert "phases add up to 1234 W" in implausible(sdm120_as_sdm630)
    assert "0 V" in implausible({"p_w": 900.0, "v_v": 0.0, "i_a": 4.0})
    assert "v_v reads 0 V" in implausible({"v_v": 0.0, "v_v_l1": 231.0, "p_w": 10.0})
    # Real meters: one phase wired on a three-phase meter, an idle meter, export.
    assert implausible({"p_w": 800.0, "p_w_l1": 800.0, "p_w_l2": 0.0, "p_w_l3": 0.0,
                        "v_v_l1": 230.0, "v_v_l2": 0.0, "v_v_l3": 0.0}) == ""
    assert implausible({"p_w": 0.0, "v_v": 0.0, "i_a": 0.0}) == ""
    assert implausible({"p_w": -1500.0, "p_w_l1": -2000.0, "p_w_l2": 500.0}) == ""


def test_profile_check_waits_for_several_polls() -> None:
    check = ProfileCheck()
    for _ in range(MISMATCH_POLLS - 1):
        assert check.update({"p_w": 10.0}, Q_RANGE) == ""
    assert "out of range" in check.update({"p_w": 10.0}, Q_RANGE)
    assert check.update({"p_w": 10.0}, Q_OK) == ""  # one good reading clears it
    # Energy that rises while the power reads 0 W: the power is in another register.
    check = ProfileCheck(polls=1)
    assert check.update({"p_w": 0.0, "e_import_kwh": 100.0}, Q_OK) == ""
    assert "rose by 0.004 kWh" in check.update({"p_w": 0.0, "e_import_kwh": 100.004}, Q_OK)
    idle = ProfileCheck(polls=1)  # an idle meter: 0 W and a still counter
    for _ in range(3):
        assert idle.update({"p_w": 0.0, "e_import_kwh": 100.0}, Q_OK) == ""


def test_agent_health_and_read_say_profile_mismatch(arun, tmp_path) -> None:
    async def main() -> None:
        clock = Clock()
        sdm120 = load_profile("sdm120")
        server = SimMeterServer([SimUnit(1, sdm120, Constant(1234.0, 0.93), clock),
                                 SimUnit(2, sdm120, Constant(1234.0, 0.93), clock)],
                                tcp=("127.0.0.1", 0))
        await server.start()
        try:
            # Two SDM120s: unit 1 configured as an SDM630 (the wrong map), unit 2 rightly.
            plan = load_text(tcp_agent_toml(tmp_path, server.port,
                                            (("wrong", 1, "sdm630"), ("right", 2, "sdm120")),
                                            timeout_ms=500), "t.toml")
            agent = Agent(plan, clock)
            events: list[Event] = []
            agent.add_listener(events.append)
            poller = BusPoller(plan.buses[0], clock, agent.on_poll, agent.on_health)
            try:
                for _ in range(MISMATCH_POLLS + 1):
                    await sweep(poller)
            finally:
                poller.close()
            wrong, right = agent.health["wrong"], agent.health["right"]
            assert (wrong.state, wrong.cause) == ("degraded", "profile_mismatch")
            assert "0 V while the frequency reads 50" in wrong.reason, wrong.reason
            assert "loadwatch scan" in wrong.hint
            assert right.state == "ok" and right.cause == ""
            published = [e.data for e in events if e.kind == "health" and e.meter == "wrong"]
            assert published[-1]["cause"] == "profile_mismatch"
            assert published[-1]["reason"] == wrong.reason
            # `read` says so too, and does not exit 0.
            p = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent.cli", "read", "--host", "127.0.0.1",
                "--tcp-port", str(server.port), "--unit", "1", "--profile", "sdm630",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(p.communicate(), 60)
            assert p.returncode == 1, out.decode() + err.decode()
            assert "problem: profile mismatch: p_w reads 0 W" in out.decode()
        finally:
            await server.stop()

    arun(main())
