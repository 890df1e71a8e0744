"""Home Assistant MQTT discovery (opt-in ``[homeassistant]``): retained config messages
that make every meter appear in Home Assistant by itself, reading the topics we already
publish. Pure: the plan in, ``Message`` values out; the runtime queues them in the outbox
at start and again whenever Home Assistant announces itself (its birth message
``<discovery_prefix>/status`` = ``online``, sent when HA restarts).

Per meter (one HA device each, ``via_device`` the gateway's device): power (W, from
telemetry), energy (kWh, the absolute import counter; only for meters that read one),
score, alert (binary_sensor ``problem``, evidence summary as attributes) and health
(binary_sensor ``connectivity``). The gateway's device has one connectivity entity on the
status topic, which is also every entity's availability. Topic and field names follow
https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery; ``node_id`` and
``object_id`` may only hold ``[a-zA-Z0-9_-]``, so ids are sanitised (and made unique).
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Callable

from agent.publish.codec import Codec, Message, encode

if TYPE_CHECKING:
    from agent.config import MeterPlan, Plan

_NOT_ALLOWED = re.compile(r"[^a-zA-Z0-9_-]")


def ha_id(text: str) -> str:
    """``text`` in Home Assistant's allowed id characters (``[a-zA-Z0-9_-]``)."""
    return _NOT_ALLOWED.sub("_", text) or "_"


def _unique_ids(names: list[str]) -> dict[str, str]:
    """Sanitised ids, with a short hash where two names would sanitise alike (``a.b`` and
    ``a_b``), so no meter's entities overwrite another's."""
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for n in names:
        seen[ha_id(n).lower()] = seen.get(ha_id(n).lower(), 0) + 1
    for n in names:
        s = ha_id(n)
        if seen[s.lower()] > 1:
            s = "%s_%s" % (s, hashlib.sha1(n.encode()).hexdigest()[:6])
        out[n] = s
    return out


class Discovery:
    """The discovery messages of one gateway."""

    def __init__(self, plan: Plan, codec: Codec, discovery_prefix: str, version: str):
        self.plan = plan
        self.codec = codec
        self.prefix = discovery_prefix
        self.version = version
        self.node = ha_id("loadwatch_%s_%s" % (plan.site, plan.gateway))
        self.meter_ids = _unique_ids([m.id for m in plan.meters])

    @property
    def birth_topic(self) -> str:
        return "%s/status" % self.prefix

    def watch(self, queue: Callable[[list[Message]], None]) -> dict:
        """The publisher's ``watch`` entry: every config again when Home Assistant
        announces itself (its documented birth message, sent when it starts), so the
        entities come back even after a broker lost its retained messages."""
        def on_birth(payload: bytes) -> None:
            if payload.strip() == b"online":
                queue(self.messages())

        return {self.birth_topic: on_birth}

    def _availability(self) -> list[dict]:
        return [{"topic": self.codec.status_topic, "value_template": "{{ value_json.state }}",
                 "payload_available": "online", "payload_not_available": "offline"}]

    def _gateway_device(self) -> dict:
        return {"identifiers": [self.node],
                "name": "loadwatch %s/%s" % (self.plan.site, self.plan.gateway),
                "manufacturer": "loadwatch", "model": "gateway agent",
                "sw_version": self.version}

    def _meter_device(self, m: MeterPlan) -> dict:
        return {"identifiers": ["%s_%s" % (self.node, self.meter_ids[m.id])],
                "name": "meter %s" % m.id, "manufacturer": m.profile.name,
                "model": m.profile.title or m.profile.name,
                "via_device": self.node}

    def _config(self, component: str, object_id: str, body: dict) -> Message:
        topic = "%s/%s/%s/%s/config" % (self.prefix, component, self.node, object_id)
        body = dict(body, unique_id="%s_%s" % (self.node, object_id),
                    origin={"name": "loadwatch", "sw_version": self.version})
        if "availability" not in body:
            body["availability"] = self._availability()
        elif not body["availability"]:
            del body["availability"]  # the gateway's own entity: always available
        return Message(topic, encode(body), 1, True, "discovery", "",
                       "discovery:%s:%s" % (component, object_id))

    def messages(self) -> list[Message]:
        """Every config message, gateway first."""
        out = [self._config("binary_sensor", "gateway_online", {
            "name": "Online", "device_class": "connectivity",
            "state_topic": self.codec.status_topic,
            "value_template": "{{ 'ON' if value_json.state == 'online' else 'OFF' }}",
            "payload_on": "ON", "payload_off": "OFF",
            "json_attributes_topic": self.codec.status_topic,
            "json_attributes_template": "{{ {'reason': value_json.reason | default(''), "
                                        "'version': value_json.version | default('')} "
                                        "| tojson }}",
            "device": self._gateway_device(), "availability": [],
        })]
        for m in self.plan.meters:
            out.extend(self._meter(m))
        return out

    def _meter(self, m: MeterPlan) -> list[Message]:
        mid = self.meter_ids[m.id]
        dev = self._meter_device(m)
        telemetry = self.codec.meter_topic(m.id, "telemetry")
        # Telemetry schema 2: the power is q.p (its mean first when a list: total, then
        # phases), the import counter e.ei, the score sc (telemetry carries it always).
        published = self.plan.telemetry_quantities(m.meter_class)
        msgs = [
            self._config("sensor", "%s_score" % mid, {
                "name": "Mining score", "state_class": "measurement",
                "unit_of_measurement": "points", "icon": "mdi:pickaxe",
                "state_topic": telemetry,
                "value_template": "{{ value_json.sc | round(1) }}", "device": dev}),
            self._config("binary_sensor", "%s_alert" % mid, {
                "name": "Mining alert", "device_class": "problem",
                "state_topic": self.codec.meter_topic(m.id, "alert"),
                "value_template": "{{ 'ON' if value_json.state == 'active' else 'OFF' }}",
                "payload_on": "ON", "payload_off": "OFF",
                "json_attributes_topic": self.codec.meter_topic(m.id, "alert"),
                "json_attributes_template": "{{ {'summary': value_json.evidence.summary "
                                            "| default(''), 'alert_id': value_json.alert_id, "
                                            "'score': value_json.score} | tojson }}",
                "device": dev}),
            self._config("binary_sensor", "%s_health" % mid, {
                "name": "Meter reachable", "device_class": "connectivity",
                "entity_category": "diagnostic",
                "state_topic": self.codec.meter_topic(m.id, "health"),
                "value_template": "{{ 'ON' if value_json.state in ['ok', 'degraded'] "
                                  "else 'OFF' }}",
                "payload_on": "ON", "payload_off": "OFF",
                "json_attributes_topic": self.codec.meter_topic(m.id, "health"),
                "json_attributes_template": "{{ {'state': value_json.state, 'last_error': "
                                            "value_json.last_error} | tojson }}",
                "device": dev}),
        ]
        if "e_import_kwh" in m.quantities and (published is None
                                               or "e_import_kwh" in published):
            msgs.insert(0, self._config("sensor", "%s_energy" % mid, {
                "name": "Energy", "device_class": "energy", "state_class": "total_increasing",
                "unit_of_measurement": "kWh", "state_topic": telemetry,
                "value_template": "{{ value_json.e.ei }}", "device": dev}))
        if published is None or "p_w" in published:
            msgs.insert(0, self._config("sensor", "%s_power" % mid, {
                "name": "Power", "device_class": "power", "state_class": "measurement",
                "unit_of_measurement": "W", "state_topic": telemetry,
                "value_template": "{{ value_json.q.p[0] if value_json.q.p is sequence "
                                  "else value_json.q.p }}", "device": dev}))
        return msgs
