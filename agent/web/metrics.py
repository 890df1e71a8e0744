"""``/metrics`` in the Prometheus text exposition format (version 0.0.4), by hand.

prometheus-client would be one more dependency on the gateway for ~60 lines of text; the
test suite parses this output with prometheus-client's own parser instead, so a format
slip fails there. Names follow Prometheus conventions (base units, ``_total`` counters).
"""

from __future__ import annotations

import math

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name -> (type, help); the README's metrics list is this table.
METRICS = {
    "loadwatch_meter_power_watts": ("gauge", "Last active power read from the meter (W)."),
    "loadwatch_meter_score": ("gauge", "Mining-signature score of the meter, 0..100."),
    "loadwatch_meter_state": ("gauge", "1 for the meter's current state "
                              "(warming, ready or alert), 0 for the others."),
    "loadwatch_meter_up": ("gauge", "1 while the meter answers (health ok or degraded)."),
    "loadwatch_meter_polls_total": ("counter", "Polls of the meter since the agent started."),
    "loadwatch_meter_poll_errors_total": ("counter", "Failed polls of the meter by kind."),
    "loadwatch_bus_cycle_seconds": ("gauge", "Wall time of the bus's last polling sweep."),
    "loadwatch_outbox_pending": ("gauge", "Messages waiting in the outbox."),
    "loadwatch_outbox_bytes": ("gauge", "Bytes used by the outbox on disk."),
    "loadwatch_outbox_dropped_total": ("counter", "Messages dropped from a full outbox."),
    "loadwatch_publish_latency_seconds": ("summary", "Publish to PUBACK time of QoS-1 "
                                          "messages."),
    "loadwatch_broker_up": ("gauge", "1 while connected to the MQTT broker."),
    "loadwatch_uptime_seconds": ("gauge", "Seconds since the agent started."),
    "loadwatch_build_info": ("gauge", "Always 1; the version is a label."),
}

STATES = ("warming", "ready", "alert")


def _label(v: object) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: object) -> str:
    if v is None:
        return "NaN"
    x = float(v)  # type: ignore[arg-type]
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(x) if x != int(x) or abs(x) >= 1e15 else str(int(x))


def render(snap: dict, now: float) -> str:
    """The status snapshot as exposition text."""
    samples: dict[str, list[str]] = {name: [] for name in METRICS}

    def add(name: str, value: object, suffix: str = "", **labels: object) -> None:
        lab = ",".join('%s="%s"' % (k, _label(v)) for k, v in labels.items())
        samples[name].append("%s%s%s %s" % (name, suffix, "{%s}" % lab if lab else "",
                                             _num(value)))

    for row in snap.get("meters", []):
        m = row["meter"]
        add("loadwatch_meter_power_watts", row.get("p_w"), meter=m)
        add("loadwatch_meter_score", row.get("score"), meter=m)
        state = "alert" if row.get("alert") else row.get("state")
        for s in STATES:
            add("loadwatch_meter_state", 1 if s == state else 0, meter=m, state=s)
        add("loadwatch_meter_up", 1 if row.get("health") in ("ok", "degraded") else 0,
            meter=m)
        add("loadwatch_meter_polls_total", row.get("polls", 0), meter=m)
        for kind, count in sorted((row.get("poll_errors") or {}).items()):
            add("loadwatch_meter_poll_errors_total", count, meter=m, kind=kind)
    for bus in snap.get("buses", []):
        if bus.get("cycle_s") is not None:
            add("loadwatch_bus_cycle_seconds", bus["cycle_s"], bus=bus["name"])
    ob = snap.get("outbox")
    if ob:
        add("loadwatch_outbox_pending", ob.get("pending", 0))
        add("loadwatch_outbox_bytes", ob.get("bytes", 0))
        for kind, count in sorted(ob.get("dropped", {}).items()):
            add("loadwatch_outbox_dropped_total", count, kind=kind)
    broker = snap.get("broker", {})
    lat = broker.get("publish_latency")
    if lat:
        add("loadwatch_publish_latency_seconds", lat.get("sum_s", 0.0), "_sum")
        add("loadwatch_publish_latency_seconds", lat.get("count", 0), "_count")
    add("loadwatch_broker_up", 1 if broker.get("connected") else 0)
    add("loadwatch_uptime_seconds", now - float(snap.get("started", now)))
    add("loadwatch_build_info", 1, version=snap.get("version", ""))
    out: list[str] = []
    for name, lines in samples.items():
        if not lines:
            continue
        kind, helptext = METRICS[name]
        out.append("# HELP %s %s" % (name, helptext))
        out.append("# TYPE %s %s" % (name, kind))
        out.extend(lines)
    return "\n".join(out) + "\n"
