"""Delivery to the utility: codec (event -> topic and JSON), outbox (durable SQLite queue),
mqtt (the publisher, the only paho import in agent/), watch (the ``loadwatch watch``
subscriber). The MQTT contract is DESIGN.md section 6; the payload schemas are in
``schemas/``."""
