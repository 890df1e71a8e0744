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

Telemetry can be sent as CBOR (RFC 8949) instead of JSON (``[broker] telemetry_encoding =
"cbor"``, MQTT 5 only): the same fields and schema, a third fewer bytes, announced by the
PUBLISH packet's content type ``application/cbor``. A message without a content type is
JSON, so JSON stays the default and needs no property. This module is the one import of
cbor2 (an optional extra: ``pip install 'loadwatch[cbor]'``).
"""

from __future__ import annotations

import json
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

try:
    import cbor2
except ImportError:  # the optional extra is not installed: JSON only
    cbor2 = None

__all__ = ["CBOR", "COMMANDS", "CRITICAL_KINDS", "DROPPABLE_KINDS", "ENCODINGS",
           "HEALTH_UNITS", "SCHEMA_VERSION", "SCORE_UNITS", "TELEMETRY_UNITS", "Codec",
           "Message", "cbor_available", "clean", "content_type", "decode", "encode",
           "iso_utc", "topic_id_ok"]

# The MQTT 5 content type of a CBOR payload (IANA media type, RFC 8949 section 9.5).
CBOR = "application/cbor"
ENCODINGS = ("json", "cbor")

# Kinds whose loss would matter: QoS 1 and fsync'ed in the outbox.
CRITICAL_KINDS = ALERT_KINDS + ("health", "status", "reply")
# Kinds the outbox may drop (oldest first) when it reaches its bound.
DROPPABLE_KINDS = ("telemetry", "score")
COMMANDS = ("ping", "read", "state")
_TOPIC_ID = re.compile(r"^[^/#+\x00]{1,64}$")


def cbor_available() -> bool:
    return cbor2 is not None


def content_type(payload: bytes) -> str | None:
    """The content type a payload is published with: ``application/cbor`` for CBOR, None
    (no property: JSON) otherwise. Judged from the payload itself, not from today's
    settings, so a message written to the outbox before ``telemetry_encoding`` changed is
    still announced for what it is: every JSON payload of ours is an object (``{``), a
    CBOR one a map (major type 5, first byte 0xa0-0xbf)."""
    return CBOR if payload[:1] and 0xA0 <= payload[0] <= 0xBF else None


def decode(payload: bytes, ctype: str | None = None) -> object:
    """A received payload -> its value, by its MQTT 5 content type (none or
    ``application/json``: JSON). ValueError when it cannot be decoded (not UTF-8 JSON,
    broken CBOR, a content type we do not read, or CBOR without cbor2 installed)."""
    if not ctype or ctype == "application/json":
        try:
            return json.loads(payload.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ValueError("not UTF-8: %s" % e) from None
    if ctype != CBOR:
        raise ValueError("content type %r is neither JSON nor CBOR" % ctype)
    if cbor2 is None:
        raise ValueError("CBOR payload, but cbor2 is not installed "
                         "(pip install 'loadwatch[cbor]')")
    try:
        return cbor2.loads(payload)
    except Exception as e:  # cbor2 raises CBORDecodeError and others from broken input
        raise ValueError("broken CBOR: %s" % e) from None


def topic_id_ok(name: str) -> bool:
    """True when ``name`` can be one level of an MQTT topic: 1-64 characters, none of
    ``/ # +`` or NUL."""
    return _TOPIC_ID.match(name) is not None


class Codec(EventCodec):
    """Turns events into messages for one gateway (agent/publish/payloads.py, which the
    MCU shares), checks topics, and frames commands' replies.

    ``telemetry_qos`` / ``score_qos`` follow ``[broker]`` settings; everything else has the
    fixed QoS/retain of the contract. ``telemetry_encoding`` ``cbor`` sends telemetry as
    CBOR (the publisher marks it with its content type); every other message stays JSON
    (alerts, status and health are few, and Home Assistant and most tools read JSON only).
    """

    def __init__(self, prefix: str, site: str, gateway: str, telemetry_qos: int = 0,
                 score_qos: int = 0, score_topic: bool = False,
                 telemetry_encoding: str = "json"):
        if not prefix or any(c in prefix for c in "#+\x00") or prefix.endswith("/"):
            raise ValueError("%r is not a valid MQTT topic prefix" % prefix)
        if telemetry_encoding not in ENCODINGS:
            raise ValueError("telemetry encoding %r is not one of %s"
                             % (telemetry_encoding, ", ".join(ENCODINGS)))
        if telemetry_encoding == "cbor" and cbor2 is None:
            raise ValueError("telemetry_encoding = \"cbor\" needs the cbor2 package "
                             "(pip install 'loadwatch[cbor]')")
        super().__init__(prefix, site, gateway, telemetry_qos, score_qos, score_topic)
        self.telemetry_encoding = telemetry_encoding

    def encode_telemetry(self, body: dict) -> bytes:
        if self.telemetry_encoding == "cbor":
            # Integers take their shortest CBOR form; floats (the counters, de, sc) are
            # sent as float64, so a value reads back exactly as the JSON form's, and a
            # non-finite one is null as in JSON (clean).
            return cbor2.dumps(clean(body))
        return encode(body)

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
