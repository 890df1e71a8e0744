"""What the charts need, kept small: a bounded ring of slot means per meter.

The agent already closes a telemetry slot per meter every ``telemetry_every_s``; each
closed slot leaves four float32 numbers here (mean power, score, rolling floor, learned
baseline), so seven days of 15-min slots cost 672 x 16 B = 10.5 KiB per meter whatever
the poll rate. Alert spans (bounded) and the last evidence ride along. Everything is
saved next to the detector checkpoint (``web.json``) so a restart keeps the chart.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import sys
from array import array
from pathlib import Path

from agent.model import Event, Schedule

log = logging.getLogger("loadwatch.web")

HISTORY_FILE = "web.json"
HISTORY_VERSION = 1
WINDOW_S = 7 * 86400.0  # what the meter page shows
MAX_SLOTS = 2016  # 7 days of 5-min slots: the ring never grows past this
MAX_SPANS = 20  # alert spans kept per meter
_FIELDS = 4  # p_mean_w, score, floor_w, baseline_w
NAN = float("nan")


class AlertSpan:
    """One alert from raised to cleared (``end`` is None while it is open)."""

    __slots__ = ("alert_id", "end", "schedule", "score", "start", "summary")

    def __init__(self, alert_id: str, start: float, end: float | None, score: float,
                 summary: str, schedule: Schedule | None = None):
        self.alert_id = alert_id
        self.start = start
        self.end = end
        self.score = score
        self.summary = summary
        self.schedule = schedule

    def as_dict(self) -> dict:
        return {"alert_id": self.alert_id, "start": self.start, "end": self.end,
                "score": self.score, "summary": self.summary,
                "schedule": self.schedule.as_dict() if self.schedule is not None else None}

    @classmethod
    def from_dict(cls, d: dict) -> AlertSpan:
        end = d.get("end")
        return cls(str(d["alert_id"]), float(d["start"]),
                   float(end) if end is not None else None, float(d["score"]),
                   str(d.get("summary", "")), schedule_from_payload(d.get("schedule")))


def schedule_from_payload(d: object) -> Schedule | None:
    """The detector's ``Schedule`` back from its payload form (``Schedule.as_dict()``, as
    alerts, evidence and web.json carry it); None when absent or malformed."""
    if not isinstance(d, dict):
        return None
    try:
        return Schedule(int(d["start_hour"]), int(d["end_hour"]), int(d["days_seen"]),
                        float(d["level_kw"]), float(d["since_t"]))
    except (KeyError, TypeError, ValueError):
        return None


class ChartFigures:
    """The learned figures drawn beside the load: from one score's evidence."""

    __slots__ = ("baseline_kw", "floor_kw")

    def __init__(self, floor_kw: float | None, baseline_kw: float | None):
        self.floor_kw = floor_kw
        self.baseline_kw = baseline_kw

    @classmethod
    def from_evidence(cls, evidence: dict) -> ChartFigures:
        """The one place that reads the detector's evidence figures by name (the MQTT
        payload's documented ``floor_kw`` / ``baseline_kw``)."""
        def num(key: str) -> float | None:
            v = evidence.get(key)
            return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

        return cls(num("floor_kw"), num("baseline_kw"))


class MeterHistory:
    """A ring of the last ``n`` slots of one meter, indexed by slot number mod ``n``."""

    def __init__(self, slot_s: float, window_s: float = WINDOW_S):
        self.slot_s = float(slot_s)
        self.n = max(1, min(MAX_SLOTS, math.ceil(window_s / self.slot_s)))
        self.data = array("f", [NAN] * (self.n * _FIELDS))
        self.last = -1  # slot number of the newest slot written (-1: none)
        self.spans: list[AlertSpan] = []
        self.evidence: dict = {}
        self.contributions: dict[str, float] = {}

    def add_slot(self, slot_start: float, p_mean_w: float | None, score: float | None,
                 figures: ChartFigures | None = None) -> None:
        k = math.floor(slot_start / self.slot_s + 1e-9)
        if k < self.last - self.n + 1:
            return  # older than the window (a clock step back): nothing to draw
        if k > self.last:
            # Clear the slots skipped since the last one (at most the whole ring).
            for j in range(max(self.last + 1, k - self.n + 1), k):
                self._set(j, NAN, NAN, NAN, NAN)
            self.last = k
        floor = base = NAN
        if figures is not None:
            floor = figures.floor_kw * 1000.0 if figures.floor_kw is not None else NAN
            base = figures.baseline_kw * 1000.0 if figures.baseline_kw is not None else NAN
        self._set(k, _f(p_mean_w), _f(score), floor, base)

    def set_figures(self, figures: ChartFigures) -> None:
        """Floor and baseline of the newest slot (the score event follows its telemetry)."""
        if self.last < 0:
            return
        i = (self.last % self.n) * _FIELDS
        if figures.floor_kw is not None:
            self.data[i + 2] = figures.floor_kw * 1000.0
        if figures.baseline_kw is not None:
            self.data[i + 3] = figures.baseline_kw * 1000.0

    def _set(self, k: int, p: float, score: float, floor: float, base: float) -> None:
        i = (k % self.n) * _FIELDS
        self.data[i] = p
        self.data[i + 1] = score
        self.data[i + 2] = floor
        self.data[i + 3] = base

    def series(self) -> ChartSeries:
        """The ring in time order, oldest first (gaps as None)."""
        out = ChartSeries(self.slot_s, (self.last - self.n + 1) * self.slot_s)
        if self.last < 0:
            out.t0 = 0.0
            return out
        for k in range(self.last - self.n + 1, self.last + 1):
            i = (k % self.n) * _FIELDS
            d = self.data
            out.p_w.append(_opt(d[i]))
            out.score.append(_opt(d[i + 1]))
            out.floor_w.append(_opt(d[i + 2]))
            out.baseline_w.append(_opt(d[i + 3]))
        return out

    def raise_span(self, alert_id: str, t: float, score: float, summary: str,
                   schedule: Schedule | None = None) -> None:
        for s in self.spans:
            if s.alert_id == alert_id:
                s.score, s.summary = score, summary or s.summary
                s.schedule = schedule or s.schedule
                return
        self.spans.append(AlertSpan(alert_id, t, None, score, summary, schedule))
        del self.spans[:-MAX_SPANS]

    @property
    def schedule(self) -> Schedule | None:
        """The block to draw: the detector's latest, else the newest open alert's (fixed
        when it was raised or updated)."""
        current = schedule_from_payload(self.evidence.get("schedule"))
        if current is not None:
            return current
        for s in reversed(self.spans):
            if s.end is None and s.schedule is not None:
                return s.schedule
        return None

    def clear_span(self, alert_id: str, t: float) -> None:
        for s in self.spans:
            if s.alert_id == alert_id and s.end is None:
                s.end = t

    # ------------------------------------------------------------- persistence

    def state(self) -> dict:
        raw = array("f", self.data)
        if sys.byteorder == "big":
            raw.byteswap()  # stored little-endian, so a state file moves between machines
        return {"slot_s": self.slot_s, "n": self.n, "last": self.last,
                "data": base64.b64encode(raw.tobytes()).decode("ascii"),
                "spans": [s.as_dict() for s in self.spans],
                "evidence": self.evidence, "contributions": self.contributions}

    @classmethod
    def from_state(cls, slot_s: float, state: dict) -> MeterHistory:
        """Restore; a ring saved with another slot length or window starts empty."""
        h = cls(slot_s)
        if float(state["slot_s"]) == h.slot_s and int(state["n"]) == h.n:
            raw = array("f")
            raw.frombytes(base64.b64decode(state["data"]))
            if sys.byteorder == "big":
                raw.byteswap()
            if len(raw) != len(h.data):
                raise ValueError("ring has %d values, expected %d" % (len(raw), len(h.data)))
            h.data = raw
            h.last = int(state["last"])
        h.spans = [AlertSpan.from_dict(d) for d in state.get("spans", [])][-MAX_SPANS:]
        ev = state.get("evidence", {})
        h.evidence = ev if isinstance(ev, dict) else {}
        c = state.get("contributions", {})
        h.contributions = c if isinstance(c, dict) else {}
        return h


class ChartSeries:
    """One meter's chart data, oldest slot first; a slot without data is None."""

    def __init__(self, slot_s: float, t0: float):
        self.slot_s = slot_s
        self.t0 = t0
        self.p_w: list[float | None] = []
        self.score: list[float | None] = []
        self.floor_w: list[float | None] = []
        self.baseline_w: list[float | None] = []

    def __len__(self) -> int:
        return len(self.p_w)

    def as_dict(self) -> dict:
        return {"t0": self.t0, "slot_s": self.slot_s, "p_mean_w": _round(self.p_w),
                "score": _round(self.score), "floor_w": _round(self.floor_w),
                "baseline_w": _round(self.baseline_w)}


def _f(x: float | None) -> float:
    return NAN if x is None or not math.isfinite(x) else float(x)


def _opt(x: float) -> float | None:
    return None if math.isnan(x) else x


def _round(xs: list[float | None]) -> list[float | None]:
    return [None if x is None else round(x, 1) for x in xs]


class History:
    """Every meter's ring, fed by the agent's events (``on_event``); one lock-free writer
    (the event loop thread) and readers on the same thread."""

    def __init__(self, meters: list[str], slot_s: float):
        self.slot_s = slot_s
        self.meters = {m: MeterHistory(slot_s) for m in meters}

    def on_event(self, ev: Event) -> None:
        h = self.meters.get(ev.meter)
        if h is None:
            return
        if ev.kind == "telemetry":
            h.add_slot(float(ev.data.get("slot_start", ev.t)), ev.data.get("p_mean_w"),
                       ev.data.get("score"))
        elif ev.kind == "score":
            h.set_figures(ChartFigures.from_evidence(ev.evidence))
            h.evidence = dict(ev.evidence)
            contrib = ev.data.get("contributions", {})
            h.contributions = dict(contrib) if isinstance(contrib, dict) else {}
        elif ev.kind in ("raised", "updated"):
            h.raise_span(ev.alert_id, ev.t, ev.score, str(ev.evidence.get("summary", "")),
                         schedule_from_payload(ev.data.get("schedule")))
        elif ev.kind == "cleared":
            h.clear_span(ev.alert_id, ev.t)

    def alerts(self) -> list[tuple[str, AlertSpan]]:
        """Every kept alert, newest first."""
        out = [(m, s) for m, h in self.meters.items() for s in h.spans]
        out.sort(key=lambda ms: -ms[1].start)
        return out

    # ------------------------------------------------------------- persistence

    def save(self, state_dir: str | os.PathLike) -> None:
        """Atomically, like the detector checkpoint (tmp file, fsync, rename)."""
        path = Path(state_dir) / HISTORY_FILE
        data = {"version": HISTORY_VERSION,
                "meters": {m: h.state() for m, h in self.meters.items()}}
        tmp = path.with_suffix(".tmp-web")
        with open(tmp, "w") as f:
            json.dump(data, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, state_dir: str | os.PathLike, meters: list[str], slot_s: float) -> History:
        """The saved rings, or empty ones (loudly) when the file is missing or unreadable."""
        h = cls(meters, slot_s)
        path = Path(state_dir) / HISTORY_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return h
        except (OSError, ValueError) as e:
            log.error("chart history %s is unreadable (%s); charts start empty", path, e)
            return h
        if not isinstance(data, dict) or data.get("version") != HISTORY_VERSION:
            log.error("chart history %s has an unknown format; charts start empty", path)
            return h
        saved = data.get("meters", {})
        for m in meters:
            if m in saved:
                try:
                    h.meters[m] = MeterHistory.from_state(slot_s, saved[m])
                except (KeyError, TypeError, ValueError) as e:
                    log.error("chart history of meter %s is unreadable (%s); it starts "
                              "empty", m, e)
        return h
