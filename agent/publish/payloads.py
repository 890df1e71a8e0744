"""Events -> MQTT messages: the payloads and topics of DESIGN.md section 6, shared by the
agent and the MCU gateway (firmware_bridge/build.py ships this module), so a subscriber
cannot tell an MCU gateway from a Linux one. agent/publish/codec.py adds what only the
agent needs (topic checks, commands and their replies) and documents the contract.

MicroPython-safe: no typing, datetime or re (the annotations are never evaluated there);
ISO times come from civil-date arithmetic because ``time.gmtime`` has a 2000 epoch on some
ports. MicroPython's dict order is not insertion order, so the device's payloads are
equal as JSON, not byte for byte. Pure: no clock, no I/O.
"""

import json

from agent.model import ALERT_KINDS, Event
from agent.signature import civil_date

SCHEMA_VERSION = 1
_INF = float("inf")
try:
    json.dumps(1.0, allow_nan=False)
    _STRICT_JSON = True
except TypeError:  # MicroPython: no allow_nan, so always clean first
    _STRICT_JSON = False

SCORE_UNITS = {"score": "points (0-100)", "contributions": "points (0-100, summing to score)"}
TELEMETRY_UNITS = {
    "p_mean_w": "W", "p_min_w": "W", "p_max_w": "W", "pf_mean": "1 (absolute power factor)",
    "energy_kwh": "kWh", "e_import_kwh": "kWh (meter's import counter)", "slot_s": "s",
    "score": "points (0-100)",
}
HEALTH_UNITS = {"backoff_s": "s"}


class Message:
    """One MQTT publication, ready for the outbox and the wire."""

    __slots__ = ("id", "kind", "meter", "payload", "qos", "retain", "topic")

    def __init__(self, topic: str, payload: bytes, qos: int, retain: bool, kind: str,
                 meter: str, id: str):
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.kind = kind
        self.meter = meter
        self.id = id

    def __repr__(self) -> str:
        return "Message(%r, %s, qos=%d, retain=%s, id=%r, %d bytes)" % (
            self.topic, self.kind, self.qos, self.retain, self.id, len(self.payload))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __hash__(self) -> int:
        return hash((self.topic, self.id))


def iso_utc(t: "float | None") -> "str | None":
    """UNIX seconds -> ``2026-03-02T01:15:00.000Z`` (None stays None); rounded to the
    microsecond, then milliseconds truncated, as ``datetime.isoformat`` does."""
    if t is None:
        return None
    us = int(t * 1000000.0 + (0.5 if t >= 0 else -0.5))
    secs = us // 1000000
    ms = (us % 1000000) // 1000
    days = secs // 86400
    rem = secs - days * 86400
    return "%sT%02d:%02d:%02d.%03dZ" % (civil_date(days), rem // 3600, (rem // 60) % 60,
                                         rem % 60, ms)


def clean(value: object) -> object:
    """JSON has no NaN or infinity: a non-finite float becomes null (and says so by being
    null), tuples become lists, unknown objects their ``str``. Never raises."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return None if (value != value or value == _INF or value == -_INF) else value
    if isinstance(value, dict):
        return {str(k): clean(value[k]) for k in value}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return str(value)


def encode(payload: dict) -> bytes:
    if _STRICT_JSON:
        try:  # the common case: already plain JSON, no walk over the tree needed
            return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        except (ValueError, TypeError):  # NaN/inf or an odd type somewhere: clean first
            pass
    return json.dumps(clean(payload), separators=(",", ":")).encode()


class EventCodec:
    """Turns events into messages for one gateway.

    ``telemetry_qos`` / ``score_qos`` follow ``[broker]`` settings; everything else has the
    fixed QoS/retain of the contract.
    """

    def __init__(self, prefix: str, site: str, gateway: str, telemetry_qos: int = 0,
                 score_qos: int = 0):
        self.prefix = prefix
        self.site = site
        self.gateway = gateway
        self.telemetry_qos = telemetry_qos
        self.score_qos = score_qos

    # ----------------------------------------------------------------- topics

    def topic(self, *parts: str) -> str:
        return "/".join((self.prefix,) + parts)

    def meter_topic(self, meter: str, leaf: str) -> str:
        return self.topic("meter", meter, leaf)

    @property
    def status_topic(self) -> str:
        return self.topic("status")

    # ----------------------------------------------------------------- payloads

    def _base(self, kind: str, id: str, t: float, meter: str | None = None) -> dict:
        out = {"schema": SCHEMA_VERSION, "id": id, "kind": kind, "time": iso_utc(t), "t": t,
               "site": self.site, "gateway": self.gateway}
        if meter is not None:
            out["meter"] = meter
        return out

    def event(self, ev: Event) -> Message:
        """One policy/pipeline event -> its message (raises ValueError on an unknown kind)."""
        body = self._base(ev.kind, ev.id, ev.t, ev.meter)
        data = ev.data or {}
        if ev.kind in ALERT_KINDS:
            contributions = data.get("contributions")
            if contributions is None:
                contributions = (ev.evidence or {}).get("contributions", {})
            body.update({
                "alert_id": ev.alert_id,
                "state": "cleared" if ev.kind == "cleared" else "active",
                "score": ev.score,
                "contributions": contributions,
                "evidence": ev.evidence or {},
                "units": SCORE_UNITS,
            })
            for k in data:
                if k not in body:
                    body[k] = data[k]
            return Message(self.meter_topic(ev.meter, "alert"), encode(body), 1, True,
                           ev.kind, ev.meter, ev.id)
        if ev.kind == "telemetry":
            body.update(data)
            if "slot_start" in data:
                body["slot_start_time"] = iso_utc(data["slot_start"])
            body["units"] = TELEMETRY_UNITS
            return Message(self.meter_topic(ev.meter, "telemetry"), encode(body),
                           self.telemetry_qos, False, ev.kind, ev.meter, ev.id)
        if ev.kind == "score":
            body.update({"score": ev.score,
                         "state": data.get("state", "warming"),
                         "contributions": data.get("contributions", {}),
                         "evidence": ev.evidence or {},
                         "units": SCORE_UNITS})
            return Message(self.meter_topic(ev.meter, "score"), encode(body), self.score_qos,
                           False, ev.kind, ev.meter, ev.id)
        if ev.kind == "health":
            body.update(data)
            body["last_success_time"] = iso_utc(data.get("last_success") or None)
            body["units"] = HEALTH_UNITS
            return Message(self.meter_topic(ev.meter, "health"), encode(body), 1, True,
                           ev.kind, ev.meter, ev.id)
        if ev.kind == "status":
            return self.status(data.get("state", "online"), ev.t, ev.id, data)
        raise ValueError("event kind %r has no topic" % ev.kind)

    def status(self, state: str, t: float, id: str, extra: dict | None = None,
               reason: str = "") -> Message:
        """Birth (``online``), orderly stop or will (``offline``); always retained QoS 1."""
        body = self._base("status", id, t)
        body["state"] = state
        if reason:
            body["reason"] = reason
        extra = extra or {}
        for k in extra:
            if k not in body:
                body[k] = extra[k]
        return Message(self.status_topic, encode(body), 1, True, "status", "", id)

    def will(self, t: float, id: str) -> Message:
        """What the broker publishes for us if the connection dies without a goodbye."""
        return self.status("offline", t, id, reason="connection lost")
