"""Delivery to the utility: codec (event -> topic and JSON), outbox (durable SQLite queue),
mqtt (the publisher, the only paho import in agent/), watch (the ``loadwatch watch``
subscriber). The MQTT contract is DESIGN.md section 6; the payload schemas are in
``schemas/``.

The MCU gateway imports this package for the codec, so this file stays MicroPython-safe.
"""

import json

# Payload kind -> schema file (alert kinds share one).
SCHEMA_OF_KIND = {"raised": "alert", "updated": "alert", "cleared": "alert",
                  "telemetry": "telemetry", "score": "score", "health": "health",
                  "status": "status", "reply": "reply"}


def schema_name(payload: dict) -> str:
    """The schema file a payload follows: by its ``kind``; telemetry of schema 2 has no
    kind (its topic says it) and follows ``telemetry``, schema 1 ``telemetry_v1``."""
    kind = payload.get("kind")
    if kind == "telemetry":
        return "telemetry_v1"
    if kind is None and payload.get("schema") == 2 and "q" in payload:
        return "telemetry"
    return SCHEMA_OF_KIND[kind]


def load_schema(name: str) -> dict:
    """One of the JSON Schemas shipped in ``schemas/`` (``alert``, ``status``, ...)."""
    from pathlib import Path  # CPython only: the schemas are not shipped to a board

    return json.loads((Path(__file__).with_name("schemas") / ("%s.json" % name)).read_text())
