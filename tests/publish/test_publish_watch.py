"""``loadwatch watch`` as a user runs it: a real process against a real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from publish_helpers import PREFIX, alert, broker_settings, put, start_publisher

from agent.model import Event

ROOT = Path(__file__).resolve().parents[2]


def run_watch(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "agent.cli", "watch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=str(ROOT))


def test_watch_prints_alerts_and_status_once_each(broker, tmp_path):
    pub, ob, c = start_publisher(broker_settings(broker.port), tmp_path / "o.db")
    try:
        assert pub.connected.wait(10)
        raised = alert("m1", 1)
        put(pub, ob, c, raised)
        # The same alert again (a QoS-1 style re-delivery: same id) and its clearing.
        ob.put(c.event(raised))
        put(pub, ob, c, alert("m1", 1, "cleared"))
        put(pub, ob, c, Event("telemetry", "m1", time.time(), "t-1",
                              data={"slot_start": 0.0, "slot_s": 900.0, "samples": 1,
                                    "bad_samples": 0, "p_mean_w": 5.0}))
        deadline = time.monotonic() + 10
        while ob.stats()["pending"] and time.monotonic() < deadline:
            time.sleep(0.02)
        proc = run_watch("--port", str(broker.port), "--prefix", "lw/v1/+/+", "--count", "2")
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        lines = out.splitlines()
        # Retained current state: the gateway's status and the meter's (cleared) alert.
        assert len(lines) == 2, out
        assert any("STATUS ONLINE s1/g1" in ln and "(retained)" in ln for ln in lines)
        assert any("ALERT CLEARED" in ln and "m1:onset:1" in ln for ln in lines)
        # Live: a duplicate id is printed once; telemetry only with --all.
        proc = run_watch("--port", str(broker.port), "--prefix", PREFIX, "--json")
        time.sleep(1.0)
        again = alert("m1", 2)
        for _ in range(3):
            ob.put(c.event(again))
        pub.wake()
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "Traceback" not in err, err
        assert out.count('"id":"m1:raised:2"') == 1, out
        assert "t-1" not in out
    finally:
        pub.stop(2)
        ob.close()


def test_watch_reads_telemetry_of_both_schemas(broker, tmp_path):
    """Schema 2 from this gateway, schema 1 as an older gateway still sends it."""
    import json

    import paho.mqtt.client as mqtt
    from publish_helpers import telemetry

    pub, ob, c = start_publisher(broker_settings(broker.port), tmp_path / "o.db")
    proc = run_watch("--port", str(broker.port), "--prefix", "lw/v1/+/+", "--all",
                     "--count", "3")
    old = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="old-gw")
    try:
        assert pub.connected.wait(10)
        time.sleep(1.5)  # watch subscribed (its first line is the retained status)
        put(pub, ob, c, telemetry("m1", 1, t=1772413300.0))
        v1 = {"schema": 1, "id": "m2:telemetry:1", "kind": "telemetry",
              "time": "2026-03-02T01:00:00.000Z", "t": 1772413200.0, "site": "s2",
              "gateway": "g2", "meter": "m2", "slot_start": 1772412300.0, "slot_s": 900.0,
              "samples": 90, "bad_samples": 0, "p_mean_w": 812.0, "energy_kwh": 0.2,
              "units": {"p_mean_w": "W"}}
        old.connect("127.0.0.1", broker.port)
        old.loop_start()
        old.publish("lw/v1/s2/g2/meter/m2/telemetry", json.dumps(v1), qos=1).wait_for_publish(5)
        out, err = proc.communicate(timeout=20)
    finally:
        old.loop_stop()
        pub.stop(2)
        ob.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    lines = [ln for ln in out.splitlines() if "TELEM" in ln]
    assert len(lines) == 2, out
    new = next(ln for ln in lines if "meter m1" in ln)
    assert new.startswith("2026-03-02T01:15:00.000Z  TELEM  s1/g1 meter m1  mean 1521 W")
    assert "energy 0.380 kWh  import 18344.720 kWh  score 12.0" in new, new
    older = next(ln for ln in lines if "meter m2" in ln)
    assert "s2/g2 meter m2  mean 812 W  energy 0.200 kWh" in older, older


def test_watch_clear_error_on_refused_connection():
    from hil.broker import free_port

    proc = run_watch("--port", str(free_port()))
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "refused the connection" in err and "Traceback" not in err


@pytest.mark.serial  # a subprocess on a 20 s budget: run alone
def test_watch_reads_password_from_a_file_not_argv(auth_broker, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("wrong\n")
    proc = run_watch("--port", str(auth_broker.port), "--username", "utility",
                     "--password-file", str(pw))
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and "wrong user name or password" in err, err
    from conftest import USERS

    pw.write_text(USERS["utility"] + "\n")
    proc = run_watch("--port", str(auth_broker.port), "--username", "utility",
                     "--password-file", str(pw), "--prefix", PREFIX)
    timer = threading.Timer(1.5, proc.send_signal, (signal.SIGINT,))
    timer.start()
    _out, err = proc.communicate(timeout=20)
    timer.join()
    assert proc.returncode == 0, err


@pytest.mark.slow  # waits for a broker to go and come back (~30 s)
def test_watch_says_when_its_broker_goes_away_and_comes_back(broker):
    """Silence from a dead broker must not look like a quiet grid (issue 13 item 15)."""
    proc = run_watch("--tcp-port", str(broker.port), "--prefix", PREFIX)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")),
                              daemon=True)
    reader.start()

    def wait_for(text: str, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in ln for ln in lines):
                return True
            time.sleep(0.05)
        return False

    try:
        time.sleep(1.5)  # subscribed
        assert not lines, lines
        broker.stop()
        assert wait_for("lost the connection to the broker 127.0.0.1:%d" % broker.port), lines
        broker.restart()
        assert wait_for("connected to 127.0.0.1:%d again" % broker.port), lines
        assert sum("lost the connection" in ln for ln in lines) == 1, lines
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        reader.join(10)
    assert proc.returncode == 0 and "Traceback" not in "".join(lines), lines


def test_cbor_telemetry_carries_its_content_type_and_watch_decodes_it(broker, tmp_path):
    """``telemetry_encoding = "cbor"`` over MQTT 5: the PUBLISH says application/cbor,
    the payload decodes to a schema-2 message, and ``watch`` prints it like JSON."""
    import json

    import cbor2
    import paho.mqtt.client as mqtt
    from conftest import schema_errors
    from publish_helpers import telemetry

    got: list[tuple[str, object, bytes]] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="v5-sub",
                      protocol=mqtt.MQTTv5)
    sub.on_message = lambda c, u, m: got.append(
        (m.topic, getattr(m.properties, "ContentType", None), bytes(m.payload)))
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe(PREFIX + "/meter/#", qos=1)
    sub.loop_start()
    pub, ob, c = start_publisher(broker_settings(broker.port, protocol="5",
                                                 telemetry_encoding="cbor"),
                                 tmp_path / "o.db")
    proc = run_watch("--port", str(broker.port), "--prefix", PREFIX, "--all", "--json",
                     "--count", "3")
    try:
        assert pub.connected.wait(10)
        time.sleep(1.5)  # watch subscribed (its first line is the retained status)
        put(pub, ob, c, telemetry("m1", 1, t=1772413300.0))
        put(pub, ob, c, alert("m1", 1))
        out, err = proc.communicate(timeout=20)
    finally:
        sub.loop_stop()
        pub.stop(2)
        ob.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    tele = [(ct, raw) for topic, ct, raw in got if topic.endswith("/telemetry")]
    alerts = [(ct, raw) for topic, ct, raw in got if topic.endswith("/alert")]
    assert len(tele) == 1 and len(alerts) == 1, got
    assert tele[0][0] == "application/cbor" and alerts[0][0] is None  # JSON: no property
    body = cbor2.loads(tele[0][1])
    assert schema_errors(PREFIX + "/meter/m1/telemetry", body) == []
    printed = [json.loads(ln) for ln in out.splitlines()]
    mine = [p for p in printed if p.get("topic", "").endswith("/telemetry")]
    assert len(mine) == 1, out
    assert {k: v for k, v in mine[0].items() if k not in ("topic", "retained")} == body
