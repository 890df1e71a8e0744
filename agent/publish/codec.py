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

The codec is pure (no clock, no I/O): the time comes from the event or the caller. Its
payloads are agent/publish/payloads.py, which the MCU gateway runs too.
"""

from __future__ import annotations

import re

from agent.model import ALERT_KINDS
from agent.publish.payloads import (
    HEALTH_UNITS,
    SCHEMA_VERSION,
    SCORE_UNITS,
    TELEMETRY_UNITS,
    EventCodec,
    Message,
    clean,
    encode,
    iso_utc,
)

__all__ = ["COMMANDS", "CRITICAL_KINDS", "DROPPABLE_KINDS", "HEALTH_UNITS", "SCHEMA_VERSION",
           "SCORE_UNITS", "TELEMETRY_UNITS", "Codec", "Message", "clean", "encode",
           "iso_utc", "topic_id_ok"]

# Kinds whose loss would matter: QoS 1 and fsync'ed in the outbox.
CRITICAL_KINDS = ALERT_KINDS + ("health", "status", "reply")
# Kinds the outbox may drop (oldest first) when it reaches its bound.
DROPPABLE_KINDS = ("telemetry", "score")
COMMANDS = ("ping", "read", "state")
_TOPIC_ID = re.compile(r"^[^/#+\x00]{1,64}$")


def topic_id_ok(name: str) -> bool:
    """True when ``name`` can be one level of an MQTT topic: 1-64 characters, none of
    ``/ # +`` or NUL."""
    return _TOPIC_ID.match(name) is not None


class Codec(EventCodec):
    """Turns events into messages for one gateway (agent/publish/payloads.py, which the
    MCU shares), checks topics, and frames commands' replies.

    ``telemetry_qos`` / ``score_qos`` follow ``[broker]`` settings; everything else has the
    fixed QoS/retain of the contract.
    """

    def __init__(self, prefix: str, site: str, gateway: str, telemetry_qos: int = 0,
                 score_qos: int = 0, score_topic: bool = False):
        if not prefix or any(c in prefix for c in "#+\x00") or prefix.endswith("/"):
            raise ValueError("%r is not a valid MQTT topic prefix" % prefix)
        super().__init__(prefix, site, gateway, telemetry_qos, score_qos, score_topic)

    def meter_topic(self, meter: str, leaf: str) -> str:
        if not topic_id_ok(meter):
            raise ValueError("meter id %r cannot be used in an MQTT topic" % meter)
        return super().meter_topic(meter, leaf)

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
