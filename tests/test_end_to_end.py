"""The whole spine, end to end, with real parts only.

Real pymodbus TCP meters serve household load (one with a 1.4 kW ASIC switched on part
way), a real Mosquitto runs on a free loopback port, the real agent polls, scores, decides,
writes its outbox and publishes on a fast simulated clock, and a real MQTT subscriber
judges it from the outside: by what reached the broker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from agent.clock import Clock
from agent.config import load_text
from agent.runtime import Agent
from hil.broker import MosquittoBroker
from hil.demo import _agent_config
from hil.loads import demo_households
from hil.meters import SimMeterServer, SimUnit
from hil.subscriber import Recorder

# End to end (meters, agent, broker): `make test` only.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "agent" / "publish" / "schemas"
DAY = 86400.0


def _schema_for(topic: str) -> dict:
    """The JSON Schema that governs a topic, by its last level(s) (DESIGN.md 6)."""
    parts = topic.split("/")
    name = parts[-2] if parts[-1] == "reply" else parts[-1]
    return json.loads((SCHEMAS / ("%s.json" % name)).read_text())


async def _run_spine(tmp_path: Path, data_dir: Path | None, days: float, speed: float,
                     cbor: bool = False):
    households = demo_households(4, data_dir=data_dir, seed=7, miner_index=2, miner_day=2.0)
    clock = Clock(speed=speed, t0=households.t0)
    with MosquittoBroker() as broker:
        units = [SimUnit(i + 1, h.profile, h.load, clock, name=h.meter)
                 for i, h in enumerate(households.meters)]
        server = SimMeterServer(units, tcp=("127.0.0.1", 0))
        await server.start()
        recorder = None
        try:
            text = _agent_config(broker.port, server.port, units, str(tmp_path / "state"),
                                 households.tz_hours)
            if cbor:  # telemetry as CBOR, marked by its MQTT 5 content type
                assert "[broker]\n" in text, text
                text = text.replace("[broker]\n", "[broker]\nprotocol = \"5\"\n"
                                    "telemetry_encoding = \"cbor\"\n")
            plan = load_text(text, "e2e-config")
            assert plan.broker.telemetry_encoding == ("cbor" if cbor else "json")
            # An MQTT 5 subscriber: it reads each payload by its content type.
            recorder = Recorder("127.0.0.1", broker.port, plan.broker.prefix + "/#",
                                mqtt5=True)
            recorder.start()
            agent = Agent(plan, clock)
            import asyncio

            task = asyncio.create_task(agent.run())
            end = households.t0 + days * DAY
            while clock.now() < end and not task.done():
                await asyncio.sleep(0.2)
            agent.request_stop()
            await task
            await asyncio.sleep(0.5)  # the last publishes reach the subscriber
            messages = list(recorder.messages)
            duplicates = recorder.duplicates
        finally:
            if recorder is not None:
                recorder.stop()
            await server.stop()
    return households, messages, duplicates, plan


@pytest.mark.parametrize("source", ["synthetic", "sgsc"])
def test_miner_is_caught_end_to_end(source: str, tmp_path: Path, arun, request) -> None:
    data_dir = request.getfixturevalue("shared_data") if source == "sgsc" else None
    households, messages, duplicates, plan = arun(
        _run_spine(tmp_path, data_dir, days=7.0, speed=7 * DAY / 20.0), timeout=90)

    alerts = [m for m in messages if m["topic"].endswith("/alert")]
    raised = [m for m in alerts if m["payload"].get("kind") == "raised"]
    assert raised, "no alert raised; topics seen: %s" % sorted({m["topic"] for m in messages})
    # Only the meter with the miner is flagged, on its own topic, with the evidence.
    assert {m["payload"]["meter"] for m in raised} == {households.miner_meter}
    alert = raised[0]
    assert alert["topic"] == "%s/meter/%s/alert" % (plan.broker.prefix, households.miner_meter)
    payload = alert["payload"]
    assert payload["score"] >= 50
    miner_on = households.t0 + 2.0 * DAY
    # Raised after the miner came on, within the 72 h the detector promises.
    assert miner_on < payload["t"] <= miner_on + 3 * DAY, (payload["time"], miner_on)
    assert payload["evidence"]["summary"], payload
    assert payload["alert_id"].startswith(households.miner_meter + ":")
    # Every message that reached the broker obeys its published schema.
    kinds = set()
    for m in messages:
        if m["payload"] is None:
            continue
        jsonschema.validate(m["payload"], _schema_for(m["topic"]))
        kinds.add(m["topic"].rsplit("/", 1)[-1])
    # The score rides in each telemetry message (no score topic unless score_topic).
    assert {"status", "telemetry", "alert", "health"} <= kinds and "score" not in kinds, kinds
    mine = [m["payload"] for m in messages
            if m["topic"].endswith("/meter/%s/telemetry" % households.miner_meter)]
    assert any(p["ds"] == "ready" and p["sc"] >= 50 for p in mine), mine[-3:]
    assert duplicates == 0 or all(m["payload"].get("id") for m in messages)

    # The technician's status page shows what the stopped agent last saw.
    page = subprocess.run([sys.executable, "-m", "agent.cli", "status", "--state-dir",
                           str(tmp_path / "state")], capture_output=True, text=True,
                          check=False, cwd=ROOT)
    assert page.returncode == 0, page.stderr
    assert "agent stopped" in page.stdout.splitlines()[0]
    rows = {line.split()[0]: line for line in page.stdout.splitlines()[3:]
            if line.startswith("home-")}
    assert set(rows) == {h.meter for h in households.meters}
    assert "ALERT %s:" % households.miner_meter in rows[households.miner_meter]
    assert "outbox: 0 waiting" in page.stdout


def test_every_message_validates_with_cbor_telemetry(tmp_path: Path, arun) -> None:
    """``telemetry_encoding = "cbor"``: the same spine for two simulated days; telemetry
    arrives as CBOR marked ``application/cbor`` and decodes to messages that obey the
    telemetry schema, and every other message is JSON (no content type) and obeys its."""
    households, messages, duplicates, _ = arun(
        _run_spine(tmp_path, None, days=2.0, speed=7 * DAY / 20.0, cbor=True), timeout=90)
    kinds: dict[str, set] = {}
    for m in messages:
        assert m["payload"] is not None and "_raw" not in m["payload"], m
        jsonschema.validate(m["payload"], _schema_for(m["topic"]))
        kinds.setdefault(m["topic"].rsplit("/", 1)[-1], set()).add(m["content_type"])
    assert kinds.pop("telemetry") == {"application/cbor"}, kinds
    assert {"status", "health"} <= set(kinds) and all(v == {None} for v in kinds.values())
    tele = {m["payload"]["id"] for m in messages if m["topic"].endswith("/telemetry")}
    # Hourly slots of every meter: most of two days' worth arrived.
    assert len(tele) >= len(households.meters) * 24, len(tele)
    assert duplicates == 0 or all(m["payload"].get("id") for m in messages)


def _descendants(pid: int) -> set[int]:
    out: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[1]) == pid:
            child = int(entry)
            out |= {child} | _descendants(child)
    return out


def test_demo_catches_a_night_only_miner() -> None:
    """``--miner-schedule night``: the S9 runs only 22:00-07:00 local, so the 24-h floor
    never moves; the detector's night block catches it after its second night. (Seed 3
    picks homes whose winter nights are quiet enough to see it by day 5.)"""
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "demo", "--duration", "40", "--days", "6",
         "--miner-day", "2", "--meters", "6", "--seed", "3", "--miner-schedule", "night",
         "--no-table"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "running only 22:00-07:00 local" in out.stdout
    assert "the miner was caught." in out.stdout
    assert "every night since" in out.stdout


def test_demo_command_shows_the_miner_caught() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "demo", "--duration", "18", "--days", "7",
         "--miner-day", "2", "--meters", "6", "--no-table"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "the miner was caught." in out.stdout
    assert '"kind": "raised"' in out.stdout


def test_demo_ctrl_c_stops_everything() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "demo", "--duration", "60", "--no-table"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        broker_seen = False
        while time.monotonic() < deadline and not broker_seen:
            time.sleep(0.3)
            broker_seen = bool(_descendants(proc.pid))
        assert broker_seen, "the demo never started its broker"
        children = _descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    assert "stopped cleanly" in stdout
    alive = [pid for pid in children if os.path.exists("/proc/%d" % pid)
             and open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive, "orphans left after Ctrl-C: %s" % alive
