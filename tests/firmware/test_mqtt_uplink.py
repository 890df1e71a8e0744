"""The MCU gateway publishing by MQTT (umqtt.simple) to a real Mosquitto, with a reboot.

Simulated meter (pymodbus RTU) -- RS-485 emulator -- MCU (micropython, built .mpy
firmware) -- real Mosquitto -- a subscriber. Midway (after warm-up, before the alert)
the MCU is killed with SIGKILL, like a power cut, and started again: it must come back
with its learned detector state from flash, so the alert still comes days before a fresh
detector could even finish warming up.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import jsonschema
import pytest

from agent.model import Event
from agent.publish import load_schema
from agent.publish.codec import Codec
from hil.broker import MosquittoBroker
from hil.subscriber import Recorder

from .harness import DAY, T0, device_config, device_on_a_miner_bus

# End to end: the MCU app on MicroPython, HIL meters and a broker: `make test` only.
pytestmark = pytest.mark.slow

SPEED = 36000.0
END_DAYS = 5.0
KILL_AT_DAYS = 3.0
PREFIX = "loadwatch/v1/rig/mcu-1"


def test_mcu_over_mqtt_survives_a_power_cut_and_raises_the_alert(tmp_path, micropython_bin,
                                                                  arun):
    with MosquittoBroker() as broker:
        broker.start()
        recorder = Recorder(broker.host, broker.port, PREFIX + "/#")
        recorder.start()
        try:
            log, restart_t = arun(_scenario(tmp_path, micropython_bin, broker.port), 90.0)
            end = time.monotonic() + 5.0
            while time.monotonic() < end and not recorder.alerts():
                time.sleep(0.05)
            messages = list(recorder.messages)
        finally:
            recorder.stop()
    by_kind: dict[str, list[dict]] = {}
    for m in messages:  # compact telemetry (schema 2) names its kind by its topic only
        kind = m["payload"].get("kind") or m["topic"].rsplit("/", 1)[-1]
        by_kind.setdefault(kind, []).append(m)
    # The second boot restored the detector (ready, not warming) from flash.
    assert "restored meter m1 (ready=True" in log, log
    assert log.count("loadwatch device") == 2, log
    raised = by_kind.get("raised", [])
    assert len(raised) == 1, log
    alert = raised[0]
    assert alert["topic"] == PREFIX + "/meter/m1/alert"
    t_raised = alert["payload"]["t"]
    # A fresh detector needs 2 days of warm-up after the restart, plus the 6 h hold.
    assert restart_t < t_raised < restart_t + 2 * DAY, (restart_t, t_raised)
    # Every payload follows the agent's JSON Schemas ...
    # (no score topic: the score rides in telemetry unless [mqtt] score_topic = true)
    assert "score" not in by_kind, sorted(by_kind)
    for kind in ("raised", "telemetry", "health", "status"):
        assert by_kind.get(kind), (kind, sorted(by_kind))
        schema = load_schema("alert" if kind == "raised" else kind)
        for m in by_kind[kind]:
            jsonschema.validate(m["payload"], schema)
    # ... and is exactly what the agent's codec makes of the same event (as JSON).
    codec = Codec(PREFIX, "rig", "mcu-1")
    p = alert["payload"]
    ev = Event("raised", "m1", p["t"], p["id"], score=p["score"], evidence=p["evidence"],
               alert_id=p["alert_id"], data={"schedule": p["schedule"]})
    want = codec.event(ev)
    assert want.topic == alert["topic"]
    assert json.loads(want.payload) == p
    # Telemetry: the device's quantities (p_w, pf, the import counter) with their slot
    # stats and the score; the same code as the agent's (tests/pipeline/checks.py runs
    # the compact form on both runtimes).
    tel = by_kind["telemetry"][-1]["payload"]
    assert tel["schema"] == 2 and tel["id"] == "m1:telemetry:%d" % tel["ts"]
    assert set(tel["q"]) == {"p", "pf"} and len(tel["q"]["p"]) == 3, tel
    assert tel["e"]["ei"] > 0 and tel["ds"] == "ready" and tel["n"] > 0, tel
    boots = [m["payload"].get("boots") for m in by_kind["status"]
             if m["payload"]["state"] == "online"]
    assert boots == [1, 2]


async def _scenario(tmp_path, micropython_bin, broker_port: int):
    cfg = device_config(tmp_path, "mqtt", str(tmp_path / "rs485"), mqtt_port=broker_port)
    clock, rig, device = await device_on_a_miner_bus(tmp_path, micropython_bin, cfg,
                                                     T0 + END_DAYS * DAY, SPEED)
    try:
        await device.start()
        while clock.now() < T0 + KILL_AT_DAYS * DAY:
            if device.proc.returncode is not None:
                raise AssertionError("device stopped early:\n" + device.log())
            await asyncio.sleep(0.02)
        await device.kill()  # SIGKILL: no shutdown, no last save
        await asyncio.sleep(0.2)
        restart_t = clock.now()
        await device.run_to_end(60.0)
    finally:
        await device.kill()
        await rig.stop()
    return device.log(), restart_t


def test_alert_raised_during_a_broker_outage_survives_in_the_flash_queue(
        tmp_path, micropython_bin, arun):
    """Broker down; the MCU raises the alert (queued on flash); the MCU loses power before
    the broker is back; after both return, the queued alert is delivered, once, with the
    id it was raised under, and the restored policy does not raise it again."""
    broker = MosquittoBroker()
    broker.start()
    recorder = Recorder(broker.host, broker.port, PREFIX + "/#")
    recorder.start()
    try:
        log, outage = arun(_outage(tmp_path, micropython_bin, broker), 90.0)
        end = time.monotonic() + 5.0
        while time.monotonic() < end and not recorder.alerts():
            time.sleep(0.05)
        messages = list(recorder.messages)
    finally:
        recorder.stop()
        broker.close()
    raised = [m["payload"] for m in messages if m["payload"].get("kind") == "raised"]
    assert len(raised) == 1, log
    assert outage[0] < raised[0]["t"] < outage[1], (outage, raised[0]["t"], log)
    assert "restored meter m1 (ready=True, alert=%s)" % raised[0]["alert_id"] in log, log
    assert log.count("alert raised") == 1, log
    assert "mqtt: " in log  # the outage was seen and retried, bounded


async def _outage(tmp_path, micropython_bin, broker: MosquittoBroker):
    cfg = device_config(tmp_path, "mqtt", str(tmp_path / "rs485"), mqtt_port=broker.port)
    # One raised event and no updates: the retained alert topic then holds exactly it.
    cfg["meters"][0]["policy"]["update_every_s"] = 100 * DAY
    clock, rig, device = await device_on_a_miner_bus(tmp_path, micropython_bin, cfg,
                                                     T0 + 4.8 * DAY, SPEED)
    loop = asyncio.get_running_loop()
    try:
        await device.start()
        # (The broker goes down soon after the miner's onset at 2.2 days: the detector
        # raises within about a day of it.)
        while clock.now() < T0 + 2.4 * DAY:
            await asyncio.sleep(0.02)
        await loop.run_in_executor(None, broker.stop)
        down_t = clock.now()
        state = tmp_path / "flash" / "state.json"
        # The app prints "alert raised <alert id> ..." and then saves the policy's state:
        # cut the power only once that state is on flash too, or the cut lands between the
        # two and the reboot decides the alert afresh (same id, a later time).
        while not _alert_saved(device.log(), state):
            if device.proc.returncode is not None or clock.now() > T0 + 4.7 * DAY:
                raise AssertionError("no alert during the outage:\n" + device.log())
            await asyncio.sleep(0.02)
        await device.kill()  # power cut with the alert only in the flash queue
        await loop.run_in_executor(None, broker.start)
        up_t = clock.now()
        await device.run_to_end(60.0)
    finally:
        await device.kill()
        await rig.stop()
    return device.log(), (down_t, up_t)


def _alert_saved(log: str, state: Path) -> bool:
    """The alert is raised and the saved state (written atomically) holds its id."""
    line = next((ln for ln in log.splitlines() if ln.startswith("alert raised ")), "")
    if not line:
        return False
    try:
        return line.split()[2] in state.read_text()
    except OSError:
        return False
