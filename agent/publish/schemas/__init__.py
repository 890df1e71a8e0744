"""JSON Schemas of the MQTT payloads (data files; a package so setup.cfg ships them)."""
