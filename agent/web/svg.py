"""The one chart renderer: a meter's load, learned floor and baseline, score and alert
spans as a self-contained SVG string.

Used by the status page (``/meter/<id>``, ``/meter/<id>.svg``) and by ``loadwatch replay
--plot``, so what an analyst sees from a replayed CSV is drawn exactly like what the
technician sees on the gateway. Pure: data and the local-time offset in, text out. No
scripts, no external fonts or links: it renders offline and in any browser.
"""

from __future__ import annotations

import math
import time
from html import escape

from agent.model import Schedule
from agent.web.history import AlertSpan, ChartSeries

W, H = 960, 380
LEFT, RIGHT = 56, 16
LOAD_TOP, LOAD_H = 24, 220
SCORE_TOP, SCORE_H = 276, 72
DAY = 86400.0


def describe_schedule(s: Schedule) -> str:
    """``+1.40 kW 22:00-07:00 local, 3 days in a row`` (or ``24/7``)."""
    days = "%d day%s" % (s.days, "" if s.days == 1 else "s")
    if s.all_day:
        return "+%.2f kW 24/7 (%s so far)" % (s.level_kw, days)
    return "+%.2f kW %02d:00-%02d:00 local, %s in a row" % (s.level_kw, s.start_h,
                                                            s.end_h % 24, days)


def _fmt(x: float) -> str:
    return ("%.1f" % x).rstrip("0").rstrip(".")


def _path(xs: list[float], ys: list[float | None]) -> str:
    """An SVG path that lifts the pen over gaps (None), so a dead meter shows as a gap."""
    parts: list[str] = []
    pen = False
    for x, y in zip(xs, ys):
        if y is None:
            pen = False
            continue
        parts.append("%s%s %s" % ("L" if pen else "M", _fmt(x), _fmt(y)))
        pen = True
    return " ".join(parts)


def _nice_max(v: float) -> float:
    """A round axis top at or above ``v`` (1, 2, 2.5, 5 x 10^k)."""
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * e >= v:
            return m * e
    return 10 * e


class _Frame:
    """Where things go on the chart: time to x, kW and score to y."""

    def __init__(self, t0: float, t1: float, top_kw: float):
        self.t0, self.t1, self.top = t0, t1, top_kw
        self.plot_w = W - LEFT - RIGHT

    def x(self, t: float) -> float:
        return LEFT + (t - self.t0) / (self.t1 - self.t0) * self.plot_w

    def y_kw(self, v: float | None) -> float | None:
        return None if v is None else LOAD_TOP + LOAD_H - max(0.0, v) / self.top * LOAD_H

    def y_score(self, v: float | None) -> float | None:
        return None if v is None else \
            SCORE_TOP + SCORE_H - min(100.0, max(0.0, v)) / 100 * SCORE_H


def render_chart(meter: str, series: ChartSeries, spans: list[AlertSpan], *,
                 tz_offset_s: float = 0.0, now: float | None = None,
                 schedule: Schedule | None = None, raise_at: float | None = None) -> str:
    """The meter's chart as an SVG document (the load panel above the score panel)."""
    n = len(series)
    t0 = series.t0
    t1 = t0 + max(n, 1) * series.slot_s
    if now is not None and n == 0:
        t0, t1 = now - 7 * DAY, now
    kw = [None if p is None else p / 1000.0 for p in series.p_w]
    floor = [None if p is None else p / 1000.0 for p in series.floor_w]
    base = [None if p is None else p / 1000.0 for p in series.baseline_w]
    f = _Frame(t0, t1, _nice_max(max([v for v in kw + floor + base if v is not None]
                                     or [1.0]) * 1.05))
    out = ['<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" '
           'height="%d" role="img" aria-label="%s" font-family="sans-serif" font-size="11">'
           % (W, H, W, H, escape("load and score of meter %s" % meter)),
           "<title>%s</title>" % escape("meter %s: load (kW), floor, baseline, score" % meter),
           '<rect x="0" y="0" width="%d" height="%d" fill="#fff"/>' % (W, H)]
    _alert_spans(out, f, spans, now)  # first, so the lines draw over them
    _days(out, f, tz_offset_s, schedule)
    _axes(out, f, raise_at)
    xs = [f.x(t0 + (i + 0.5) * series.slot_s) for i in range(n)]
    out.append('<path class="load" d="%s" fill="none" stroke="#1f77b4" stroke-width="1.2"/>'
               % _path(xs, [f.y_kw(v) for v in kw]))
    out.append('<path class="baseline" d="%s" fill="none" stroke="#2ca02c" '
               'stroke-width="1.5" stroke-dasharray="6 3"/>'
               % _path(xs, [f.y_kw(v) for v in base]))
    out.append('<path class="floor" d="%s" fill="none" stroke="#ff7f0e" stroke-width="1.5"/>'
               % _path(xs, [f.y_kw(v) for v in floor]))
    out.append('<path class="score" d="%s" fill="none" stroke="#9467bd" stroke-width="1.3"/>'
               % _path(xs, [f.y_score(v) for v in series.score]))
    _legend(out)
    if n == 0 or all(v is None for v in kw):
        out.append('<text x="%d" y="%d" text-anchor="middle" fill="#888">no slot closed yet'
                   '</text>' % (LEFT + f.plot_w // 2, LOAD_TOP + LOAD_H // 2))
    out.append("</svg>")
    return "\n".join(out)


def _alert_spans(out: list[str], f: _Frame, spans: list[AlertSpan],
                 now: float | None) -> None:
    for s in spans:
        a = max(s.start, f.t0)
        b = min(s.end if s.end is not None else (now if now is not None else f.t1), f.t1)
        if b <= f.t0 or a >= f.t1 or b <= a:
            continue
        out.append('<rect class="alert-span" data-alert-id="%s" x="%s" y="%d" width="%s" '
                   'height="%d" fill="#d62728" fill-opacity="0.14"><title>%s</title></rect>'
                   % (escape(s.alert_id), _fmt(f.x(a)), LOAD_TOP, _fmt(f.x(b) - f.x(a)),
                      SCORE_TOP + SCORE_H - LOAD_TOP,
                      escape("alert %s: %s" % (s.alert_id, s.summary))))


def _days(out: list[str], f: _Frame, tz_offset_s: float, schedule: Schedule | None) -> None:
    """Local midnights: grid lines and day labels, and the rig's schedule block per day."""
    first_day = math.ceil((f.t0 + tz_offset_s) / DAY)
    last_day = math.floor((f.t1 + tz_offset_s) / DAY)
    for d in range(first_day, last_day + 1):
        x = f.x(d * DAY - tz_offset_s)
        out.append('<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#ddd"/>'
                   % (_fmt(x), LOAD_TOP, _fmt(x), SCORE_TOP + SCORE_H))
        if x < W - RIGHT - 30:
            out.append('<text x="%s" y="%d" fill="#555">%s</text>' % (
                _fmt(x + 3), SCORE_TOP + SCORE_H + 16,
                time.strftime("%m-%d", time.gmtime(d * DAY))))
        if schedule is not None:
            a = d * DAY - tz_offset_s + schedule.start_h * 3600.0
            b = d * DAY - tz_offset_s + schedule.end_h * 3600.0
            if schedule.end_h <= schedule.start_h:
                b += DAY
            a, b = max(a, f.t0, schedule.since_t), min(b, f.t1)  # only since the run began
            if b > a:
                out.append('<rect class="schedule-block" x="%s" y="%d" width="%s" height="6" '
                           'fill="#ff7f0e"><title>%s</title></rect>' % (
                               _fmt(f.x(a)), LOAD_TOP + LOAD_H - 6, _fmt(f.x(b) - f.x(a)),
                               escape(describe_schedule(schedule))))


def _axes(out: list[str], f: _Frame, raise_at: float | None) -> None:
    for frac in (0.0, 0.5, 1.0):
        y = LOAD_TOP + LOAD_H - frac * LOAD_H
        out.append('<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#eee"/>'
                   % (LEFT, _fmt(y), W - RIGHT, _fmt(y)))
        out.append('<text x="%d" y="%s" text-anchor="end" fill="#555">%s</text>'
                   % (LEFT - 4, _fmt(y + 4), _fmt(frac * f.top)))
    out.append('<text x="4" y="%d" fill="#333">kW</text>' % (LOAD_TOP - 8))
    out.append('<text x="4" y="%d" fill="#333">score</text>' % (SCORE_TOP - 6))
    for v in (0, 50, 100):
        y = f.y_score(v)
        out.append('<text x="%d" y="%s" text-anchor="end" fill="#555">%d</text>'
                   % (LEFT - 4, _fmt((y or 0) + 4), v))
    out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>'
               % (LEFT, LOAD_TOP, f.plot_w, LOAD_H))
    out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>'
               % (LEFT, SCORE_TOP, f.plot_w, SCORE_H))
    if raise_at is not None:
        y = f.y_score(raise_at) or 0.0
        out.append('<line class="raise-at" x1="%d" y1="%s" x2="%d" y2="%s" stroke="#d62728" '
                   'stroke-dasharray="2 3"/>' % (LEFT, _fmt(y), W - RIGHT, _fmt(y)))


def _legend(out: list[str]) -> None:
    lx = LEFT + 8
    for label, color, dash in (("load (slot mean)", "#1f77b4", ""), ("floor", "#ff7f0e", ""),
                               ("baseline", "#2ca02c", "6 3"), ("alert", "#d62728", "")):
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="%s"%s/>'
                   % (lx, LOAD_TOP - 10, lx + 16, LOAD_TOP - 10, color,
                      "6" if label == "alert" else "2",
                      ' stroke-dasharray="%s"' % dash if dash else ""))
        out.append('<text x="%d" y="%d" fill="#333">%s</text>' % (lx + 20, LOAD_TOP - 6, label))
        lx += 40 + 7 * len(label)
