"""What a screening run leaves in its output directory, written as results arrive.

* ``alerts.parquet`` / ``alerts.csv``: every raised/updated/cleared event with its evidence.
* ``meters.parquet``: one row per meter: max score and when, the schedule at that moment,
  days scored, data coverage, alerts, input problems, an error if its scoring failed.
* ``summary.json``: counts, input problems, time and samples/s.

Meter rows stream to Parquet in chunks and only the top-N stay in memory, so a run over
millions of meters holds no list of them.
"""

from __future__ import annotations

import csv
import heapq
import json
import math
import os
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from agent.replay import iso_utc
from agent.screen.meter import EventRow, MeterResult
from agent.screen.problems import Problems

ALERT_COLUMNS = ("meter", "kind", "t", "time", "score", "alert_id", "event_id", "summary",
                 "evidence")
METER_SCHEMA = pa.schema([
    ("meter", pa.string()), ("samples", pa.int64()), ("first_time", pa.string()),
    ("last_time", pa.string()), ("interval_s", pa.float64()), ("coverage", pa.float64()),
    ("days_scored", pa.float64()), ("max_score", pa.float64()),
    ("max_score_time", pa.string()), ("schedule", pa.string()), ("summary", pa.string()),
    ("alerts_raised", pa.int64()), ("alert_open", pa.bool_()), ("problems", pa.string()),
    ("error", pa.string()),
])
_CHUNK = 20_000


def _iso(t: float) -> str | None:
    return iso_utc(t) if t == t and math.isfinite(t) else None


@dataclass(order=True)
class Ranked:
    """A meter in the inspectors' list: highest max score first, then most alerts."""

    key: tuple[float, int, str]
    meter: MeterResult = field(compare=False)


class Outputs:
    def __init__(self, out_dir: str, top: int) -> None:
        os.makedirs(out_dir, exist_ok=True)
        self.dir = out_dir
        self.top = top
        self.events: list[EventRow] = []
        self.meters = 0
        self.samples = 0
        self.alerted = 0
        self.problems = Problems()
        self._heap: list[Ranked] = []
        self._rows: dict[str, list] = {n: [] for n in METER_SCHEMA.names}
        self._writer = pq.ParquetWriter(os.path.join(out_dir, "meters.parquet"), METER_SCHEMA)

    def add(self, r: MeterResult) -> None:
        self.meters += 1
        self.samples += r.samples
        self.problems.add(r.problems)
        if r.alerts_raised:
            self.alerted += 1
        self.events.extend(r.events)
        row = self._rows
        row["meter"].append(r.meter)
        row["samples"].append(r.samples)
        row["first_time"].append(_iso(r.first_t))
        row["last_time"].append(_iso(r.last_t))
        row["interval_s"].append(r.interval_s if r.interval_s == r.interval_s else None)
        row["coverage"].append(r.coverage)
        row["days_scored"].append(r.days_scored)
        row["max_score"].append(r.max_score)
        row["max_score_time"].append(_iso(r.max_score_t))
        row["schedule"].append(r.schedule)
        row["summary"].append(r.summary)
        row["alerts_raised"].append(r.alerts_raised)
        row["alert_open"].append(r.alert_open)
        row["problems"].append(r.problems.brief())
        row["error"].append(r.error)
        if len(row["meter"]) >= _CHUNK:
            self._flush()
        if self.top > 0:
            r.events = []  # kept in self.events; the ranked copy needs only the figures
            item = Ranked((r.max_score, r.alerts_raised, r.meter), r)
            if len(self._heap) < self.top:
                heapq.heappush(self._heap, item)
            elif item > self._heap[0]:
                heapq.heapreplace(self._heap, item)

    def _flush(self) -> None:
        if self._rows["meter"]:
            self._writer.write_table(pa.table(self._rows, schema=METER_SCHEMA))
            self._rows = {n: [] for n in METER_SCHEMA.names}

    def ranked(self) -> list[MeterResult]:
        return [x.meter for x in sorted(self._heap, reverse=True)]

    def close(self, summary: dict) -> None:
        self._flush()
        self._writer.close()
        ev = sorted(self.events, key=lambda e: (e.meter, e.t, e.event_id))
        cols = {
            "meter": [e.meter for e in ev], "kind": [e.kind for e in ev],
            "t": [e.t for e in ev], "time": [iso_utc(e.t) for e in ev],
            "score": [e.score for e in ev], "alert_id": [e.alert_id for e in ev],
            "event_id": [e.event_id for e in ev], "summary": [e.summary for e in ev],
            "evidence": [e.evidence for e in ev],
        }
        schema = pa.schema([("meter", pa.string()), ("kind", pa.string()),
                            ("t", pa.float64()), ("time", pa.string()),
                            ("score", pa.float64()), ("alert_id", pa.string()),
                            ("event_id", pa.string()), ("summary", pa.string()),
                            ("evidence", pa.string())])
        pq.write_table(pa.table(cols, schema=schema), os.path.join(self.dir, "alerts.parquet"))
        with open(os.path.join(self.dir, "alerts.csv"), "w", newline="",
                  encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(ALERT_COLUMNS)
            for i in range(len(ev)):
                w.writerow([cols[c][i] for c in ALERT_COLUMNS])
        counts: dict[str, int] = {}
        for e in ev:
            counts[e.kind] = counts.get(e.kind, 0) + 1
        summary = dict(summary)
        summary.update({
            "meters": self.meters, "samples": self.samples, "meters_alerted": self.alerted,
            "events": {k: counts.get(k, 0) for k in ("raised", "updated", "cleared")},
            "problems": self.problems.as_dict(),
        })
        tmp = os.path.join(self.dir, "summary.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, os.path.join(self.dir, "summary.json"))
