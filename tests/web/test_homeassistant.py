"""Home Assistant discovery against a real broker and a running agent, checked against
HA's documented MQTT discovery fields, with every template rendered by Jinja2 (what HA
uses) on the payloads the agent really published.

Field lists: https://www.home-assistant.io/integrations/mqtt/ (discovery, device,
availability, origin), /integrations/sensor.mqtt/ and /integrations/binary_sensor.mqtt/.
"""

from __future__ import annotations

import json
import re
import threading
import time

import jinja2
import paho.mqtt.client as mqtt
import pytest

from agent.clock import Clock
from agent.publish.homeassistant import _unique_ids, ha_id
from hil.loads import demo_households
from hil.meters import SimUnit

from .rig import AgentRig

COMMON = {"availability", "availability_mode", "availability_template", "availability_topic",
          "default_entity_id", "device", "enabled_by_default", "encoding", "entity_category",
          "entity_picture", "expire_after", "force_update", "icon", "json_attributes_template",
          "json_attributes_topic", "name", "object_id", "origin", "payload_available",
          "payload_not_available", "platform", "qos", "state_topic", "unique_id",
          "value_template"}
FIELDS = {
    "sensor": COMMON | {"device_class", "last_reset_value_template", "options",
                        "suggested_display_precision", "state_class", "unit_of_measurement"},
    "binary_sensor": COMMON | {"device_class", "off_delay", "payload_off", "payload_on"},
}
DEVICE_FIELDS = {"configuration_url", "connections", "hw_version", "identifiers",
                 "manufacturer", "model", "model_id", "name", "serial_number",
                 "suggested_area", "sw_version", "via_device"}
AVAILABILITY_FIELDS = {"payload_available", "payload_not_available", "topic", "value_template"}
ORIGIN_FIELDS = {"name", "sw_version", "support_url"}
BINARY_CLASSES = {"battery", "battery_charging", "carbon_monoxide", "cold", "connectivity",
                  "door", "garage_door", "gas", "heat", "light", "lock", "moisture", "motion",
                  "moving", "occupancy", "opening", "plug", "power", "presence", "problem",
                  "running", "safety", "smoke", "sound", "tamper", "update", "vibration",
                  "window"}
SENSOR_CLASSES = {"apparent_power", "current", "energy", "frequency", "power", "power_factor",
                  "reactive_power", "voltage"}  # the documented ones a meter could use
STATE_CLASSES = {"measurement", "total", "total_increasing"}
TOPIC = re.compile(r"^ha/(sensor|binary_sensor)/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config$")
METERS = ("flat.2", "flat_2", "home-3")


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    households = demo_households(3, seed=5)

    def units(clock: Clock) -> list[SimUnit]:
        return [SimUnit(i + 1, h.profile, h.load, clock, name=METERS[i])
                for i, h in enumerate(households.meters)]

    r = AgentRig(tmp_path_factory.mktemp("ha"), units, Clock(speed=120.0), poll_s=10.0,
                 telemetry_every_s=60.0, extra='[homeassistant]\ndiscovery_prefix = "ha"')
    r.start()
    try:
        yield r
    finally:
        r.stop()


class Listener:
    def __init__(self, port: int, topics: list[str]):
        self.lock = threading.Lock()
        self.got: list[tuple[str, bytes, bool]] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ha-test-%d" % id(self))
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.on_message = self._on
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.ready.wait(10)

    def _on(self, c, u, msg) -> None:
        with self.lock:
            self.got.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def latest(self) -> dict[str, bytes]:
        with self.lock:
            return {t: p for t, p, _ in self.got}

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _render(template: str, payload: bytes) -> str:
    env = jinja2.Environment(undefined=jinja2.ChainableUndefined)
    env.filters.setdefault("tojson", json.dumps)
    return env.from_string(template).render(value_json=json.loads(payload),
                                            value=payload.decode())


def test_discovery_configs_follow_the_documented_fields(rig) -> None:
    ha = Listener(rig.broker.port, ["ha/#"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(ha.latest()) < 1 + 5 * 3:
            time.sleep(0.1)
        configs = {t: json.loads(p) for t, p in ha.latest().items()}
    finally:
        ha.close()
    # Gateway connectivity + per meter power, energy, score, alert, health.
    assert len(configs) == 1 + 5 * 3, sorted(configs)
    uids = set()
    gateway_ids = None
    meter_devices = set()
    for topic, cfg in configs.items():
        m = TOPIC.match(topic)
        assert m, topic
        component = m.group(1)
        assert set(cfg) <= FIELDS[component], (topic, set(cfg) - FIELDS[component])
        assert cfg["state_topic"].startswith(rig.agent.plan.broker.prefix + "/")
        assert set(cfg["device"]) <= DEVICE_FIELDS and set(cfg["origin"]) <= ORIGIN_FIELDS
        assert re.fullmatch(r"[a-zA-Z0-9_-]+", cfg["unique_id"]) and cfg["unique_id"] not in uids
        uids.add(cfg["unique_id"])
        classes = BINARY_CLASSES if component == "binary_sensor" else SENSOR_CLASSES
        assert cfg.get("device_class", "power") in classes
        assert cfg.get("state_class", "measurement") in STATE_CLASSES
        for a in cfg.get("availability", []):
            assert set(a) <= AVAILABILITY_FIELDS and a["topic"].endswith("/status")
        if "via_device" in cfg["device"]:
            meter_devices.add(cfg["device"]["identifiers"][0])
        else:
            gateway_ids = cfg["device"]["identifiers"]
    assert gateway_ids is not None and len(meter_devices) == 3
    via = {c["device"]["via_device"] for c in configs.values() if "via_device" in c["device"]}
    assert via == set(gateway_ids)
    energy = [c for c in configs.values() if c.get("device_class") == "energy"]
    assert len(energy) == 3 and all(c["state_class"] == "total_increasing"
                                    and c["unit_of_measurement"] == "kWh" for c in energy)
    power = [c for c in configs.values() if c.get("device_class") == "power"]
    assert all(c["state_class"] == "measurement" and c["unit_of_measurement"] == "W"
               for c in power)
    alerts = [c for c in configs.values() if c.get("device_class") == "problem"]
    assert len(alerts) == 3 and all("json_attributes_template" in c for c in alerts)


def test_templates_render_on_what_the_agent_publishes(rig) -> None:
    prefix = rig.agent.plan.broker.prefix
    ha = Listener(rig.broker.port, ["ha/#", prefix + "/#"])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = ha.latest()
            # The score rides in telemetry (no score topic unless [broker] score_topic).
            states = [t for t in got if t.endswith(("/telemetry", "/health"))]
            if len(states) >= 6 and prefix + "/status" in got:
                break
            time.sleep(0.2)
        got = ha.latest()
    finally:
        ha.close()
    configs = {t: json.loads(p) for t, p in got.items() if t.startswith("ha/")}
    rendered = 0
    for cfg in configs.values():
        state = got.get(cfg["state_topic"])
        if state is None:
            assert cfg["state_topic"].endswith("/alert"), cfg["state_topic"]  # none raised
            # An alert payload as the agent would publish it renders too.
            state = json.dumps({"state": "active", "alert_id": "x:1", "score": 80.0,
                                "evidence": {"summary": "floor +1.3 kW"}}).encode()
        value = _render(cfg["value_template"], state)
        if cfg.get("device_class") in ("power", "energy") or "score" in cfg["unique_id"]:
            assert float(value) >= 0, (cfg["unique_id"], value)
        else:
            assert value in (cfg["payload_on"], cfg["payload_off"]), (cfg["unique_id"], value)
        if "json_attributes_template" in cfg:
            assert isinstance(json.loads(_render(cfg["json_attributes_template"], state)), dict)
        for a in cfg.get("availability", []):
            assert _render(a["value_template"], got[a["topic"]]) == a["payload_available"]
        rendered += 1
    assert rendered == len(configs) == 16


def test_configs_are_sent_again_when_home_assistant_comes_online(rig) -> None:
    ha = Listener(rig.broker.port, ["ha/+/+/+/config"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(ha.got) < 16:
            time.sleep(0.1)
        assert all(retained for _, _, retained in ha.got)  # retained: HA sees them late too
        before = len(ha.got)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ha-birth")
        pub.connect("127.0.0.1", rig.broker.port)
        pub.loop_start()
        pub.publish("ha/status", b"online", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(ha.got) < before + 16:
            time.sleep(0.1)
        pub.publish("ha/status", b"offline", qos=1).wait_for_publish(5)
        time.sleep(0.5)
        pub.loop_stop()
        pub.disconnect()
        assert len(ha.got) == before + 16  # once per birth, nothing on "offline"
    finally:
        ha.close()


def test_ids_are_sanitised_and_kept_apart() -> None:
    assert ha_id("loadwatch_s.1_gw 2") == "loadwatch_s_1_gw_2"
    ids = _unique_ids(["flat.2", "flat_2", "home-3", "Flat_2"])
    assert ids["home-3"] == "home-3"
    assert len({v.lower() for v in ids.values()}) == 4
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]+", v) for v in ids.values())
