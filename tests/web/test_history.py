"""The chart ring: bounded, in time order, gaps as gaps, saved and restored."""

from __future__ import annotations

import json
import math
from pathlib import Path

from agent.model import Event, Schedule
from agent.web.history import HISTORY_FILE, MAX_SLOTS, History, MeterHistory
from agent.web.svg import render_chart

SLOT = 900.0


def _telemetry(meter: str, k: int, p: float) -> Event:
    return Event("telemetry", meter, (k + 1) * SLOT, "t%d" % k,
                 data={"slot_start": k * SLOT, "p_mean_w": p, "score": k % 100})


def test_ring_keeps_the_last_week_in_order_with_gaps() -> None:
    h = MeterHistory(SLOT)
    assert h.n == 672 and len(h.data) == 672 * 4  # 7 days of 15-min slots, 10.5 KiB
    for k in range(1000):
        if 900 <= k < 910:
            continue  # the meter was down: ten slots without telemetry
        h.add_slot(k * SLOT, 100.0 + k, float(k % 100))
    s = h.series()
    assert len(s) == 672 and s.t0 == (999 - 671) * SLOT
    assert s.p_w[0] == 100.0 + 328 and s.p_w[-1] == 100.0 + 999
    assert s.p_w[900 - 328:910 - 328] == [None] * 10
    assert MeterHistory(1.0).n == MAX_SLOTS  # a tiny slot never grows the ring past the cap


def test_events_feed_spans_and_figures_and_survive_a_restart(tmp_path: Path) -> None:
    hist = History(["m1", "m2"], SLOT)
    for k in range(10):
        hist.on_event(_telemetry("m1", k, 500.0))
        hist.on_event(Event("score", "m1", (k + 1) * SLOT, "s%d" % k, score=80.0,
                            evidence={"floor_kw": 0.4, "baseline_kw": 0.1, "summary": "x"},
                            data={"contributions": {"step": 20.0}}))
    hist.on_event(Event("raised", "m1", 3 * SLOT, "r", 80.0, {"summary": "floor +0.3 kW"},
                        alert_id="m1:1"))
    hist.on_event(Event("cleared", "m1", 8 * SLOT, "c", 10.0, alert_id="m1:1"))
    hist.on_event(_telemetry("nobody", 1, 1.0))  # an unknown meter is ignored
    hist.save(tmp_path)
    again = History.load(tmp_path, ["m1", "m2", "m3"], SLOT)
    s = again.meters["m1"].series()
    assert s.p_w[-1] == 500.0 and s.floor_w[-1] == 400.0 and s.baseline_w[-1] == 100.0
    [(meter, span)] = again.alerts()
    assert meter == "m1" and (span.start, span.end) == (3 * SLOT, 8 * SLOT)
    assert again.meters["m1"].contributions == {"step": 20.0}
    assert len(again.meters["m3"].series()) == 0  # a meter new to the config: empty
    # Another slot length: the old ring does not fit the new time axis, so it starts empty.
    assert History.load(tmp_path, ["m1"], 3600.0).meters["m1"].last == -1
    # The whole saved state of a meter is small.
    assert len(json.dumps(json.loads((tmp_path / HISTORY_FILE).read_text())["meters"]["m1"])) \
        < 16_000


def test_a_corrupt_history_file_starts_empty_not_crashed(tmp_path: Path, caplog) -> None:
    (tmp_path / HISTORY_FILE).write_text("{not json")
    hist = History.load(tmp_path, ["m1"], SLOT)
    assert hist.meters["m1"].last == -1
    assert "unreadable" in caplog.text


def test_chart_draws_spans_gaps_and_the_schedule_block() -> None:
    h = MeterHistory(3600.0)
    for k in range(100):
        if k != 50:
            h.add_slot(k * 3600.0, 1000.0 + 10 * k, 50.0)
    h.raise_span("m:1", 60 * 3600.0, 90.0, "floor <+1 kW> & more")
    svg = render_chart("m<1>", h.series(), h.spans, now=100 * 3600.0, raise_at=72.0,
                       schedule=Schedule(22, 7, 3, 1.2, 40 * 3600.0))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="alert-span"') == 1 and "&lt;+1 kW&gt; &amp; more" in svg
    load = svg.split('class="load" d="', 1)[1].split('"', 1)[0]
    assert load.count("M") == 2  # the missing slot lifts the pen once
    # One band per night since the run began (hour 40), none before it.
    assert svg.count('class="schedule-block"') == 3
    assert "+1.20 kW 22:00-07:00 local, 3 days in a row" in svg
    assert "m&lt;1&gt;" in svg and "<script" not in svg
    assert not math.isnan(float(load.split()[0][1:]))


def test_the_block_comes_from_the_detector_else_from_the_open_alert(tmp_path: Path) -> None:
    sched = {"start_hour": 22, "end_hour": 7, "days_seen": 4, "level_kw": 1.4,
             "since_t": 1000.0}
    hist = History(["m1"], SLOT)
    h = hist.meters["m1"]
    assert h.schedule is None
    hist.on_event(Event("raised", "m1", 5 * SLOT, "r", 80.0, {"summary": "x"},
                        alert_id="m1:1", data={"schedule": sched}))
    assert (h.schedule.start_h, h.schedule.end_h, h.schedule.level_kw) == (22, 7, 1.4)
    hist.on_event(Event("score", "m1", 6 * SLOT, "s", 80.0, evidence={
        "summary": "y", "schedule": dict(sched, start_hour=0, end_hour=24)}))
    assert h.schedule.all_day  # the detector's latest wins
    hist.on_event(Event("score", "m1", 7 * SLOT, "s2", 80.0, evidence={"summary": "z"}))
    assert h.schedule.start_h == 22  # none now: the open alert's
    hist.save(tmp_path)
    again = History.load(tmp_path, ["m1"], SLOT).meters["m1"]
    assert again.spans[0].schedule == h.spans[0].schedule
    hist.on_event(Event("cleared", "m1", 9 * SLOT, "c", 10.0, alert_id="m1:1"))
    assert h.schedule is None
