"""``loadwatch replay FILE --plot DIR``: one SVG per meter that raised an alert, drawn by
the status page's renderer, so a replayed or screened meter looks exactly like a live one.

Replay feeds raw rows, not telemetry slots, so each meter gets a small slot accumulator
here (mean power per slot; score, floor and baseline read from the detector as the slot
closes) in front of the same bounded ring the agent keeps. The chart shows the week
around the first alert: the ring is frozen 3.5 days after the first raise (or at the end
of the data), so a long file still shows the onset, not only its last week.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from agent.model import Event
from agent.web.history import (
    AlertSpan,
    ChartFigures,
    ChartSeries,
    MeterHistory,
    schedule_from_payload,
)
from agent.web.svg import render_chart

SLOT_S = 900.0
AFTER_RAISE_S = 3.5 * 86400.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class MeterPlot:
    """One meter's chart being built during a replay."""

    def __init__(self, slot_s: float = SLOT_S):
        self.history = MeterHistory(slot_s)
        self.slot_s = slot_s
        self._slot: int | None = None
        self._sum = 0.0
        self._n = 0
        self.first_raise: float | None = None
        self.frozen: tuple[ChartSeries, list[AlertSpan]] | None = None

    def add(self, t: float, p_w: float, detector: Any) -> None:
        """One row, after the detector learned it."""
        k = math.floor(t / self.slot_s)
        if self._slot is not None and k != self._slot:
            self._close(detector)
        self._slot = k
        self._sum += p_w
        self._n += 1
        if (self.frozen is None and self.first_raise is not None
                and t >= self.first_raise + AFTER_RAISE_S):
            self.frozen = (self.history.series(), [_copy(s) for s in self.history.spans])

    def _close(self, detector: Any) -> None:
        if self._slot is None or not self._n:
            return
        self.history.add_slot(self._slot * self.slot_s, self._sum / self._n, detector.score,
                              ChartFigures.from_evidence(detector.evidence()))
        self._sum, self._n = 0.0, 0

    def on_event(self, ev: Event) -> None:
        if ev.kind in ("raised", "updated"):
            if self.first_raise is None:
                self.first_raise = ev.t
            self.history.raise_span(ev.alert_id, ev.t, ev.score,
                                    str(ev.evidence.get("summary", "")),
                                    schedule_from_payload(ev.data.get("schedule")))
        elif ev.kind == "cleared":
            self.history.clear_span(ev.alert_id, ev.t)

    def svg(self, meter: str, detector: Any, tz_offset_s: float, raise_at: float) -> str:
        if self.frozen is None:
            self._close(detector)
            series, spans = self.history.series(), self.history.spans
        else:
            series, spans = self.frozen
        end = series.t0 + len(series) * series.slot_s
        # The block the alerts named (the newest that named one).
        schedule = next((s.schedule for s in reversed(spans) if s.schedule is not None), None)
        return render_chart(meter, series, spans, tz_offset_s=tz_offset_s, now=end,
                            raise_at=raise_at, schedule=schedule)


def _copy(s: AlertSpan) -> AlertSpan:
    return AlertSpan(s.alert_id, s.start, s.end, s.score, s.summary, s.schedule)


def file_names(meters: list[str]) -> dict[str, str]:
    """A safe, unique ``<meter>.svg`` per meter id (ids in a CSV can be anything)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for m in meters:
        base = _UNSAFE.sub("_", m).lstrip(".") or "meter"
        name, i = base, 1
        while name.lower() in used:
            i += 1
            name = "%s-%d" % (base, i)
        used.add(name.lower())
        out[m] = name + ".svg"
    return out


def write_plots(directory: str, plots: dict[str, tuple[MeterPlot, Any]],
                tz_offset_s: float, raise_at: float) -> list[Path]:
    """Write the SVG of every meter that raised; returns the files written."""
    raised = [m for m, (p, _) in plots.items() if p.first_raise is not None]
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for meter, name in file_names(raised).items():
        plot, detector = plots[meter]
        path = d / name
        path.write_text(plot.svg(meter, detector, tz_offset_s, raise_at), encoding="utf-8")
        written.append(path)
    return written
