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


def load_schema(name: str) -> dict:
    """One of the JSON Schemas shipped in ``schemas/`` (``alert``, ``status``, ...)."""
    from pathlib import Path  # CPython only: the schemas are not shipped to a board

    return json.loads((Path(__file__).with_name("schemas") / ("%s.json" % name)).read_text())
