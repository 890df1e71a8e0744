"""Events -> MQTT (topic, payload, qos, retain): the device's copy of agent/publish/codec.py.

The same topics, QoS, retain flags and JSON fields as the agent (DESIGN.md 6), so a
subscriber cannot tell an MCU gateway from a Linux one. Differences are only in spelling:
MicroPython's dict order is not insertion order (so payloads are equal as JSON, not byte
for byte) and the ISO time is computed here because ``time.gmtime`` has a 2000 epoch on
some ports. tests/firmware checks every device payload against the agent's codec.
"""

import json

from agent.signature import _civil  # the core's civil-date arithmetic (no time module)

SCHEMA_VERSION = 1
ALERT_KINDS = ("raised", "updated", "cleared")
SCORE_UNITS = {"score": "points (0-100)", "contributions": "points (0-100, summing to score)"}
TELEMETRY_UNITS = {
    "p_mean_w": "W", "p_min_w": "W", "p_max_w": "W", "pf_mean": "1 (absolute power factor)",
    "energy_kwh": "kWh", "e_import_kwh": "kWh (meter's import counter)", "slot_s": "s",
    "score": "points (0-100)",
}
HEALTH_UNITS = {"backoff_s": "s"}
_INF = float("inf")


def iso_utc(t):
    """UNIX seconds -> ``2026-03-02T01:15:00.000Z`` (milliseconds truncated, as CPython's
    ``isoformat(timespec="milliseconds")`` after rounding to microseconds)."""
    if t is None:
        return None
    us = int(t * 1000000.0 + (0.5 if t >= 0 else -0.5))
    secs = us // 1000000
    ms = (us % 1000000) // 1000
    days = secs // 86400
    rem = secs - days * 86400
    return "%sT%02d:%02d:%02d.%03dZ" % (_civil(days), rem // 3600, (rem // 60) % 60,
                                         rem % 60, ms)


def clean(v):
    """JSON has no NaN or infinity: non-finite floats become null, as the agent's codec."""
    if isinstance(v, float):
        return None if (v != v or v == _INF or v == -_INF) else v
    if isinstance(v, dict):
        return {str(k): clean(v[k]) for k in v}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    return v


def encode(body):
    return json.dumps(clean(body), separators=(",", ":")).encode()


class Codec:
    def __init__(self, prefix, site, gateway, telemetry_qos=0, score_qos=0):
        self.prefix = prefix
        self.site = site
        self.gateway = gateway
        self.telemetry_qos = telemetry_qos
        self.score_qos = score_qos

    def topic(self, *parts):
        return "/".join((self.prefix,) + parts)

    def _base(self, kind, id, t, meter=None):
        out = {"schema": SCHEMA_VERSION, "id": id, "kind": kind, "time": iso_utc(t), "t": t,
               "site": self.site, "gateway": self.gateway}
        if meter is not None:
            out["meter"] = meter
        return out

    def event(self, ev):
        """-> (topic, payload bytes, qos, retain)."""
        body = self._base(ev.kind, ev.id, ev.t, ev.meter)
        data = ev.data or {}
        if ev.kind in ALERT_KINDS:
            contributions = data.get("contributions")
            if contributions is None:
                contributions = (ev.evidence or {}).get("contributions", {})
            body["alert_id"] = ev.alert_id
            body["state"] = "cleared" if ev.kind == "cleared" else "active"
            body["score"] = ev.score
            body["contributions"] = contributions
            body["evidence"] = ev.evidence or {}
            body["units"] = SCORE_UNITS
            for k in data:
                if k not in body:
                    body[k] = data[k]
            return self.topic("meter", ev.meter, "alert"), encode(body), 1, True
        if ev.kind == "telemetry":
            for k in data:
                body[k] = data[k]
            if "slot_start" in data:
                body["slot_start_time"] = iso_utc(data["slot_start"])
            body["units"] = TELEMETRY_UNITS
            return (self.topic("meter", ev.meter, "telemetry"), encode(body),
                    self.telemetry_qos, False)
        if ev.kind == "score":
            body["score"] = ev.score
            body["state"] = data.get("state", "warming")
            body["contributions"] = data.get("contributions", {})
            body["evidence"] = ev.evidence or {}
            body["units"] = SCORE_UNITS
            return self.topic("meter", ev.meter, "score"), encode(body), self.score_qos, False
        if ev.kind == "health":
            for k in data:
                body[k] = data[k]
            body["last_success_time"] = iso_utc(data.get("last_success") or None)
            body["units"] = HEALTH_UNITS
            return self.topic("meter", ev.meter, "health"), encode(body), 1, True
        raise ValueError("event kind %r has no topic" % ev.kind)

    def status(self, state, t, id, extra=None, reason=""):
        body = self._base("status", id, t)
        body["state"] = state
        if reason:
            body["reason"] = reason
        if extra:
            for k in extra:
                if k not in body:
                    body[k] = extra[k]
        return self.topic("status"), encode(body), 1, True
