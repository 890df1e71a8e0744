"""HTML pages and JSON documents of the status page, built from the agent's status
snapshot (the document ``loadwatch status`` prints) and the chart history.

Server-rendered, no JavaScript: every page works offline on the technician's laptop and
refreshes itself every 30 s. Everything a meter or an alert can put on a page goes
through ``escape`` (meter ids are restricted by config, evidence text is not).
"""

from __future__ import annotations

import time
from html import escape
from typing import Any, Callable

from agent.model import Schedule
from agent.web.history import History
from agent.web.svg import describe_schedule, render_chart

STYLE = """
body{font-family:sans-serif;margin:1em 2em;color:#222}
table{border-collapse:collapse;margin:.5em 0}
th,td{border-bottom:1px solid #ddd;padding:3px 10px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.alert{color:#b00;font-weight:bold}.down{color:#b00}.degraded{color:#a60}.ok{color:#070}
nav a{margin-right:1em}small{color:#666}
"""


class WebView:
    """What the pages read: the agent's live status snapshot, the chart history, and
    the few settings the chart needs. A seam, so tests and ``replay`` can build one."""

    def __init__(self, snapshot: Callable[[], dict], history: History,
                 tz_offset_s: float = 0.0,
                 raise_at: Callable[[str], float | None] = lambda meter: None,
                 schedule: Callable[[str], Schedule | None] | None = None):
        self.snapshot = snapshot
        self.history = history
        self.tz_offset_s = tz_offset_s
        self.raise_at = raise_at
        self.schedule = schedule if schedule is not None else self._history_schedule

    def _history_schedule(self, meter: str) -> Schedule | None:
        h = self.history.meters.get(meter)
        return h.schedule if h is not None else None


def _ts(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def _duration(s: float) -> str:
    s = max(0, int(s))
    if s < 3600:
        return "%d min" % (s // 60)
    if s < 86400 * 2:
        return "%d h %d min" % (s // 3600, s % 3600 // 60)
    return "%d d %d h" % (s // 86400, s % 86400 // 3600)


def meter_state(row: dict) -> str:
    """warming | ready | alert: what a meter's detector and policy say together."""
    return "alert" if row.get("alert") else str(row.get("state", ""))


def _page(title: str, snap: dict, body: str) -> str:
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"refresh\" content=\"30\">"
            "<meta name=\"viewport\" content=\"width=device-width\">"
            "<title>%s</title><style>%s</style></head><body>"
            "<nav><a href=\"/\">gateway</a><a href=\"/alerts\">alerts</a>"
            "<a href=\"/metrics\">metrics</a><small>%s/%s</small></nav>%s"
            "</body></html>" % (escape(title), STYLE, escape(str(snap.get("site", ""))),
                                escape(str(snap.get("gateway", ""))), body))


# ------------------------------------------------------------------ gateway


def gateway_json(view: WebView, now: float) -> dict:
    snap = view.snapshot()
    out = dict(snap)
    out["uptime_s"] = now - float(snap.get("started", now))
    out["meters"] = [dict(row, display_state=meter_state(row)) for row in snap["meters"]]
    return out


def gateway_html(view: WebView, now: float) -> str:
    snap = gateway_json(view, now)
    broker = snap.get("broker", {})
    ob = snap.get("outbox") or {}
    link = "connected" if broker.get("connected") else "NOT connected"
    why = broker.get("last_error") or ""
    head = ("<h1>Gateway %s/%s</h1><p id=\"summary\">loadwatch %s, up %s. Broker "
            "%s:%s <b id=\"broker\" class=\"%s\">%s</b>%s. Outbox: <span id=\"outbox\">%d "
            "waiting</span>, dropped telemetry %d, score %d.</p>" % (
                escape(str(snap.get("site"))), escape(str(snap.get("gateway"))),
                escape(str(snap.get("version"))), _duration(snap["uptime_s"]),
                escape(str(broker.get("host"))), escape(str(broker.get("port"))),
                "ok" if broker.get("connected") else "down", link,
                (" <small>(%s)</small>" % escape(why)) if why and not broker.get("connected")
                else "", ob.get("pending", 0), ob.get("dropped", {}).get("telemetry", 0),
                ob.get("dropped", {}).get("score", 0)))
    rows = []
    for r in snap["meters"]:
        kw = "%.3f" % (r["p_w"] / 1000.0) if r.get("p_w") is not None else "-"
        state = r["display_state"]
        health = str(r.get("health", ""))
        reason = r.get("health_reason") or ""
        rows.append(
            "<tr data-meter=\"%s\"><td><a href=\"/meter/%s\">%s</a></td><td>%s</td>"
            "<td class=\"num\">%s</td><td class=\"num\">%.1f</td><td class=\"%s\">%s</td>"
            "<td class=\"health %s\">%s%s</td></tr>" % (
                escape(r["meter"]), escape(r["meter"]), escape(r["meter"]),
                escape(str(r.get("profile", ""))), kw, float(r.get("score", 0.0)),
                "alert" if state == "alert" else "", escape(state), escape(health),
                escape(health), (": <span class=\"reason\">%s</span>" % escape(reason))
                if reason else ""))
    table = ("<table id=\"meters\"><thead><tr><th>meter</th><th>profile</th><th>kW</th>"
             "<th>score</th><th>state</th><th>health</th></tr></thead><tbody>%s</tbody>"
             "</table>" % "".join(rows))
    return _page("loadwatch %s" % snap.get("gateway"), snap, head + table)


# ------------------------------------------------------------------ meter


def meter_json(view: WebView, meter: str, now: float) -> dict | None:
    snap = view.snapshot()
    row = next((r for r in snap["meters"] if r["meter"] == meter), None)
    h = view.history.meters.get(meter)
    if row is None or h is None:
        return None
    block = view.schedule(meter)
    return {"meter": dict(row, display_state=meter_state(row)),
            "series": h.series().as_dict(),
            "alerts": [s.as_dict() for s in h.spans],
            "evidence": h.evidence, "contributions": h.contributions,
            "schedule": None if block is None else block.as_dict()}


def meter_svg(view: WebView, meter: str, now: float) -> str | None:
    h = view.history.meters.get(meter)
    if h is None:
        return None
    return render_chart(meter, h.series(), h.spans, tz_offset_s=view.tz_offset_s, now=now,
                        schedule=view.schedule(meter), raise_at=view.raise_at(meter))


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "%g" % v
    if v is None:
        return "-"
    return escape(str(v))


def meter_html(view: WebView, meter: str, now: float) -> str | None:
    doc = meter_json(view, meter, now)
    svg = meter_svg(view, meter, now)
    if doc is None or svg is None:
        return None
    snap = view.snapshot()
    row = doc["meter"]
    kw = "%.3f kW" % (row["p_w"] / 1000.0) if row.get("p_w") is not None else "no reading"
    reason = row.get("health_reason") or ""
    parts = ["<h1>Meter %s</h1><p id=\"meter-summary\">%s, %s, score %.1f, <span class=\"%s\">"
             "%s</span>, health <span class=\"health %s\">%s</span>%s</p>" % (
                 escape(meter), escape(str(row.get("profile", ""))), kw,
                 float(row.get("score", 0.0)),
                 "alert" if row["display_state"] == "alert" else "",
                 escape(row["display_state"]), escape(str(row.get("health", ""))),
                 escape(str(row.get("health", ""))),
                 (": <span class=\"reason\">%s</span>" % escape(reason)) if reason else ""),
             "<figure id=\"chart\">%s<figcaption>last 7 days: slot mean load, learned floor "
             "and baseline, score; alert spans shaded</figcaption></figure>" % svg]
    block = view.schedule(meter)
    if block is not None:
        parts.append("<p id=\"schedule\">Schedule block: %s (the orange band under the "
                     "load)</p>" % escape(describe_schedule(block)))
    ev = doc["evidence"]
    if ev:
        parts.append("<h2>Evidence</h2><p id=\"evidence-summary\">%s</p><table id=\"evidence\">"
                     "%s</table>" % (escape(str(ev.get("summary", ""))), "".join(
                         "<tr><th>%s</th><td class=\"num\">%s</td></tr>" % (
                             escape(k), _ts(v) if k.endswith("_t") and isinstance(v, (int, float))
                             else _cell(v))
                         for k, v in ev.items()
                         # The summary is above; the schedule has its own line.
                         if k != "summary" and not isinstance(v, (dict, list)))))
    if doc["contributions"]:
        parts.append("<h2>Score contributions</h2><table id=\"contributions\">%s</table>"
                     % "".join("<tr><th>%s</th><td class=\"num\">%.1f</td></tr>"
                               % (escape(k), float(v)) for k, v in doc["contributions"].items()))
    if doc["alerts"]:
        parts.append("<h2>Alerts</h2>" + _alert_table([(meter, a) for a in doc["alerts"]]))
    return _page("meter %s" % meter, snap, "".join(parts))


# ------------------------------------------------------------------ alerts


def alerts_json(view: WebView, now: float) -> dict:
    out = []
    for meter, s in view.history.alerts():
        d = s.as_dict()
        d["meter"] = meter
        d["open"] = s.end is None
        out.append(d)
    return {"alerts": out}


def _alert_table(items: list[tuple[str, dict]]) -> str:
    rows = []
    for meter, a in items:
        rows.append("<tr class=\"%s\"><td><a href=\"/meter/%s\">%s</a></td><td>%s</td>"
                    "<td>%s</td><td>%s</td><td class=\"num\">%.1f</td><td>%s</td></tr>" % (
                        "open" if a["end"] is None else "closed", escape(meter), escape(meter),
                        escape(a["alert_id"]), _ts(a["start"]),
                        "<b class=\"alert\">open</b>" if a["end"] is None else _ts(a["end"]),
                        float(a["score"]), escape(a["summary"])))
    return ("<table class=\"alerts\"><thead><tr><th>meter</th><th>alert</th><th>raised</th>"
            "<th>cleared</th><th>score</th><th>evidence</th></tr></thead><tbody>%s</tbody>"
            "</table>" % "".join(rows))


def alerts_html(view: WebView, now: float) -> str:
    items = [(a["meter"], a) for a in alerts_json(view, now)["alerts"]]
    n_open = sum(1 for _, a in items if a["end"] is None)
    body = "<h1>Alerts</h1><p>%d open, %d kept in all.</p>%s" % (
        n_open, len(items), _alert_table(items) if items else "<p>No alerts.</p>")
    return _page("alerts", view.snapshot(), body)
