"""Frozen copies of what main published before telemetry schema 2 (commit 707850e), so
bench/delivery.py measures today's payloads and their CPU side by side with the new ones
in one run. Never imported by the agent."""
