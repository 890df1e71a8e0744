"""Modbus polling: pure request planning (blocks), the one pymodbus wrapper (transport),
one poller per bus (poller) and the technician tools (tools)."""
