"""Events -> MQTT messages: the topic and payload contract of DESIGN.md section 6 (pure).

Every payload is a JSON object with ``"schema": 1``, a unique ``id`` (subscribers drop
QoS-1 re-deliveries by it), ``time`` (ISO-8601 UTC, milliseconds, ``Z``) next to ``t``
(the same instant in UNIX seconds), ``site``, ``gateway`` and ``kind``, plus a ``units``
object naming the unit of every numeric field that has one. The JSON Schemas in
``schemas/<kind>.json`` are the contract; the tests validate every published message
against them.

Topics (under the configured prefix, default ``loadwatch/v1/<site>/<gateway>``):

- ``status``                 QoS 1, retained: birth ``online`` / will and stop ``offline``
- ``meter/<id>/telemetry``   QoS 0 (configurable 1), not retained: slot aggregates
- ``meter/<id>/score``       QoS 0 (configurable 1), not retained: score and contributions
- ``meter/<id>/alert``       QoS 1, retained: the current alert state; a ``cleared``
  payload stays retained (it *is* the current state: "no alert, last one was X, cleared
  at T"), so a subscriber that connects later sees the truth instead of silence
- ``meter/<id>/health``      QoS 1, retained: reachability, error counts, back-off
- ``cmd/<name>`` / ``cmd/<name>/reply``  QoS 1: read-only commands and their answers

The codec is pure (no clock, no I/O): the time comes from the event or the caller.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone

from agent.model import ALERT_KINDS, Event

SCHEMA_VERSION = 1
# Kinds whose loss would matter: QoS 1 and fsync'ed in the outbox.
CRITICAL_KINDS = (*ALERT_KINDS, "health", "status", "reply")
# Kinds the outbox may drop (oldest first) when it reaches its bound.
DROPPABLE_KINDS = ("telemetry", "score")
COMMANDS = ("ping", "read", "state")
_TOPIC_ID = re.compile(r"^[^/#+\x00]{1,64}$")

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


def iso_utc(t: float | None) -> str | None:
    """UNIX seconds -> ``2026-03-02T01:15:00.000Z`` (None stays None)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def clean(value: object) -> object:
    """JSON has no NaN or infinity: a non-finite float becomes null (and says so by being
    null), tuples become lists, unknown objects their ``str``. Never raises."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return str(value)


def encode(payload: dict) -> bytes:
    try:  # the common case: already plain JSON, no walk over the tree needed
        return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (ValueError, TypeError):  # NaN/inf or an odd type somewhere: clean, then encode
        return json.dumps(clean(payload), separators=(",", ":"),
                          allow_nan=False).encode("utf-8")


class Codec:
    """Turns events into messages for one gateway.

    ``telemetry_qos`` / ``score_qos`` follow ``[broker]`` settings; everything else has the
    fixed QoS/retain of the contract.
    """

    def __init__(self, prefix: str, site: str, gateway: str, telemetry_qos: int = 0,
                 score_qos: int = 0):
        if not prefix or any(c in prefix for c in "#+\x00") or prefix.endswith("/"):
            raise ValueError("%r is not a valid MQTT topic prefix" % prefix)
        self.prefix = prefix
        self.site = site
        self.gateway = gateway
        self.telemetry_qos = telemetry_qos
        self.score_qos = score_qos

    # ----------------------------------------------------------------- topics

    def topic(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    def meter_topic(self, meter: str, leaf: str) -> str:
        if not _TOPIC_ID.match(meter):
            raise ValueError("meter id %r cannot be used in an MQTT topic" % meter)
        return self.topic("meter", meter, leaf)

    @property
    def status_topic(self) -> str:
        return self.topic("status")

    @property
    def command_filter(self) -> str:
        return self.topic("cmd", "+")

    def command_name(self, topic: str) -> str | None:
        """``<prefix>/cmd/<name>`` -> name; None for anything else (replies included)."""
        head = self.topic("cmd") + "/"
        if not topic.startswith(head):
            return None
        name = topic[len(head):]
        return name if name and "/" not in name else None

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
            for k, v in data.items():
                body.setdefault(k, v)
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
        for k, v in (extra or {}).items():
            body.setdefault(k, v)
        return Message(self.status_topic, encode(body), 1, True, "status", "", id)

    def will(self, t: float, id: str) -> Message:
        """What the broker publishes for us if the connection dies without a goodbye."""
        return self.status("offline", t, id, reason="connection lost")

    def reply(self, name: str, t: float, id: str, request_id: str | None, ok: bool,
              result: dict | None = None, error: str = "") -> Message:
        body = self._base("reply", id, t)
        body.update({"command": name, "request_id": request_id, "ok": ok})
        if ok:
            body["result"] = result if result is not None else {}
        else:
            body["error"] = error
        return Message(self.topic("cmd", name, "reply"), encode(body), 1, False, "reply", "",
                       id)
