"""The MCU gateway on the serial uplink, end to end, under the real MicroPython unix port.

Simulated meter (pymodbus RTU) -- RS-485 emulator -- MCU (micropython, the built .mpy
firmware) -- pty relay (corrupts one frame) -- the agent (`Agent` with a bridge bus, as
`loadwatch run` builds it) -- real Mosquitto -- a subscriber.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from agent.clock import Clock
from agent.config import load_text
from agent.model import Q_TIMEOUT, Event, Reading
from agent.policy import Policy
from agent.runtime import Agent
from agent.signature import Detector
from hil.broker import MosquittoBroker
from hil.subscriber import Recorder

from .harness import (
    DAY,
    T0,
    MeterRig,
    PtyRelay,
    device_config,
    device_on_a_miner_bus,
    miner_load,
    run_bridged,
)

# End to end: the MCU app on MicroPython, HIL meters, the agent and a broker: `make test` only.
pytestmark = pytest.mark.slow

AGENT_TOML = """
site = "rig"
gateway = "host-1"
state_dir = "{state_dir}"
telemetry_every_s = 3600
checkpoint_every_s = 86400
[broker]
host = "127.0.0.1"
port = {port}
[[buses]]
name = "mcu"
kind = "bridge"
port = "{link}"
baud = 115200
[[meters]]
id = "m1"
bus = "mcu"
"""
SPEED = 36000.0  # 5 simulated days in 12 s
END_DAYS = 5.0


def test_mcu_over_serial_bridge_raises_the_agents_alert(tmp_path, micropython_bin, arun):
    with MosquittoBroker() as broker:
        broker.start()
        recorder = Recorder(broker.host, broker.port, "loadwatch/v1/rig/host-1/#")
        recorder.start()
        try:
            result = arun(_scenario(tmp_path, micropython_bin, broker.port), 90.0)
            end = time.monotonic() + 10.0
            while time.monotonic() < end and not recorder.alerts():
                time.sleep(0.1)
            alerts = recorder.alerts()
        finally:
            recorder.stop()
    device_log, mcu_events, pipeline_events, readings, source_stats, relay, started = result
    # The MCU caught the miner; the agent published the MCU's alert and decided none of
    # its own for a bridged meter (one alert, one decider).
    raised = [e for e in mcu_events if e.kind == "raised"]
    assert raised, device_log
    onset = T0 + 2.2 * DAY
    assert raised[0].t > onset
    assert pipeline_events == []
    # ... and so does a fresh CPython Detector + Policy fed those readings directly.
    det, pol, ref = Detector({"tz_offset_s": 0.0}), Policy("m1", {}), []
    for r in readings:
        if r.scorable and "p_w" in r.values:
            det.update(r.t, r.values["p_w"], r.values.get("pf"))
            ref += pol.update(det.verdict(r.t))
    assert [(e.kind, e.id) for e in ref] == [(e.kind, e.id) for e in mcu_events]
    # Every reading arrived once, in order, although one frame was corrupted on the way:
    # the host NAKed it and the MCU sent it again.
    times = [r.t for r in readings]
    assert times == sorted(set(times))
    # Polled across the whole span (a loaded machine may stretch the 10-min cadence).
    assert times[0] < started + 3600 and times[-1] > T0 + END_DAYS * DAY - 3600
    assert max(b - a for a, b in zip(times, times[1:])) < 6 * 3600
    assert relay.corrupted == 1
    assert source_stats["corrupt"] >= 1 and source_stats["naks"] >= 1
    stopped = [ln for ln in device_log.splitlines() if ln.startswith("stopped:")]
    assert stopped, device_log
    up = json.loads(stopped[-1].split("uplink=", 1)[1].split(" bus=")[0])
    assert up["naks"] >= 1 and up["retransmits"] >= 1
    polls = int(stopped[-1].split("polls=")[1].split()[0])
    assert polls == len(readings)
    # The RS-485 driver was enabled once per request (and released for every reply).
    bus = json.loads(stopped[-1].split(" bus=", 1)[1])
    assert bus["de_rises"] == bus["requests"] >= polls
    # The broker got the alert once (the second copy has the same id: dropped).
    assert [a["payload"]["alert_id"] for a in alerts if a["payload"]["kind"] == "raised"] \
        == [raised[0].alert_id]


async def _scenario(tmp_path, micropython_bin, broker_port: int):
    relay = await PtyRelay(tmp_path).start()
    cfg = device_config(tmp_path, "serial", str(tmp_path / "rs485"), relay.device_port)
    clock, rig, device = await device_on_a_miner_bus(tmp_path, micropython_bin, cfg,
                                                     T0 + END_DAYS * DAY, SPEED)
    relay.corrupt_frame = 5
    plan = load_text(AGENT_TOML.format(state_dir=tmp_path / "agent", port=broker_port,
                                       link=relay.host_port), "serial-bridge test")
    agent = Agent(plan, clock=clock)
    mcu_events: list[Event] = []
    pipeline_events: list[Event] = []
    readings: list[Reading] = []
    forward_event, forward_reading = agent.on_event, agent.on_reading

    def on_event(ev: Event) -> None:
        mcu_events.append(ev)
        forward_event(ev)

    def on_reading(r: Reading) -> None:
        readings.append(r)
        forward_reading(r)

    agent.on_event = on_event
    agent.on_reading = on_reading
    agent.add_listener(lambda ev: pipeline_events.append(ev)
                       if ev.is_alert and ev not in mcu_events else None)
    agent_task = asyncio.create_task(agent.run())
    # The simulated clock runs from before the rig and the agent are set up; on a loaded
    # machine that set-up alone is simulated hours. Coverage is judged from here.
    started = clock.now()
    try:
        await device.run_to_end(60.0)
        await asyncio.sleep(0.3)  # the last acked frame is delivered before its ack
    finally:
        await device.kill()
        agent.request_stop()
        await agent_task
        await relay.stop()
        await rig.stop()
    source = agent._pollers["mcu"]
    return (device.log(), mcu_events, pipeline_events, readings, dict(source.stats), relay,
            started)


def test_real_clock_from_the_host_and_a_dead_meter_does_not_stall_the_other(
        tmp_path, micropython_bin, arun):
    """Real-time mode, as on a board: the MCU takes calendar time from the host's ack of
    its hello; unit 2 never answers (no such meter on the bus): it is reported down with
    timeouts and backs off, while unit 1 keeps its poll rate."""
    readings: list[Reading] = []
    health = []

    async def scenario():
        relay = await PtyRelay(tmp_path).start()
        cfg = device_config(tmp_path, "serial", str(tmp_path / "rs485"), relay.device_port,
                            poll_s=0.25)
        cfg["rs485"].update(timeout_ms=60, retries=0, backoff_max_s=2.0)
        dead = dict(cfg["meters"][0], id="m2", unit=2)
        cfg["meters"].append(dead)
        cfg["stop_at"] = T0 + 4.0
        fw = tmp_path / "fw"
        from firmware_bridge.build import build

        build("unix", device_config=cfg, out=fw)
        clock = Clock(speed=1.0, t0=T0)  # the host's calendar: 2026-01-01
        rig = await MeterRig(miner_load(), clock).start()
        os.symlink(rig.port, tmp_path / "rs485")
        bus = load_text(AGENT_TOML.format(state_dir=tmp_path / "agent", port=1883,
                                          link=relay.host_port)
                        + '[[meters]]\nid = "m2"\nbus = "mcu"\n', "t").buses[0]
        try:
            return await run_bridged(micropython_bin, fw, bus, clock, readings.append,
                                     health.append, tmp_path / "device.log", 30.0)
        finally:
            await relay.stop()
            await rig.stop()

    log = arun(scenario(), 60.0)
    m1 = [r for r in readings if r.meter == "m1"]
    m2 = [r for r in readings if r.meter == "m2"]
    assert "clock set to 17672256" in log, log
    assert m1 and all(T0 <= r.t < T0 + 4.5 for r in m1), [r.t for r in m1[:3]]
    assert all(r.scorable and r.values["p_w"] > 100 for r in m1)
    # unit 1 polled about every 0.25 s for ~4 s despite unit 2's timeouts and back-off
    assert len(m1) >= 10, log
    assert m2 and all(r.quality & Q_TIMEOUT for r in m2)
    assert len(m2) < len(m1)
    downs = [h for h in health if h.meter == "m2"]
    assert downs and downs[-1].state in ("degraded", "down")
    assert downs[-1].errors.get("timeout", 0) >= 1
