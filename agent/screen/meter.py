"""One meter's whole history -> its events and its line in meters.parquet.

:func:`screen_meter` is the only thing either engine runs per meter (the local process
pool and the Spark task alike), and it scores through ``agent.scoring`` exactly as
``replay`` and the gateway do: no vectorised re-implementation of the detector that could
disagree with it. NumPy is used only to clean the input (order, duplicates, impossible
values), never to score.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from agent.model import Event
from agent.scoring import MeterScorer, score_series
from agent.screen.problems import Problems

# A household meter never draws 1 MW: such a value is a garbage register, not load.
ABSURD_W = 1e6
_DAY = 86400.0


@dataclass(frozen=True)
class Settings:
    """What every meter is scored with (picklable: shipped to workers and Spark tasks)."""

    detector: dict
    policy: dict


@dataclass
class EventRow:
    """One alert event, flattened for alerts.parquet/csv."""

    meter: str
    kind: str
    t: float
    score: float
    alert_id: str
    event_id: str
    summary: str
    evidence: str  # JSON, with the feature contributions

    @classmethod
    def of(cls, ev: Event) -> EventRow:
        evidence = ev.evidence or {}
        return cls(ev.meter, ev.kind, float(ev.t), round(float(ev.score), 2), ev.alert_id,
                   ev.id, str(evidence.get("summary", "")),
                   json.dumps(evidence, sort_keys=True, default=str))


@dataclass
class MeterResult:
    """A meter's line in meters.parquet plus its events and the input problems it had."""

    meter: str
    samples: int = 0
    first_t: float = math.nan
    last_t: float = math.nan
    interval_s: float = math.nan
    coverage: float = 0.0  # samples / slots of the median interval between first and last
    days_scored: float = 0.0  # days after the detector's warm-up
    max_score: float = 0.0
    max_score_t: float = math.nan
    schedule: str = ""  # the load pattern at the highest score (detector evidence)
    summary: str = ""  # the detector's one-line evidence at the highest score
    alerts_raised: int = 0
    alert_open: bool = False
    error: str = ""
    events: list[EventRow] = field(default_factory=list)
    problems: Problems = field(default_factory=Problems)


def _schedule(evidence: dict | None) -> str:
    """The schedule the detector names at its highest score (v2 evidence: ``block``)."""
    if not evidence:
        return ""
    block = evidence.get("block")
    if block is not None:
        return str(block)
    step = evidence.get("step_kw")
    return "24/7" if isinstance(step, (int, float)) and step > 0 else ""


def clean(t: np.ndarray, p: np.ndarray, pf: np.ndarray | None, problems: Problems
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Order one meter's samples in time and drop what cannot be load; count each kind."""
    if len(t) > 1:
        back = int(np.count_nonzero(np.diff(t) < 0))
        if back:
            problems.unsorted_rows += back
            problems.unsorted_meters += 1
            order = np.argsort(t, kind="stable")  # equal times keep their input order
            t, p = t[order], p[order]
            pf = None if pf is None else pf[order]
        dup = np.concatenate(([False], np.diff(t) == 0))
        n_dup = int(np.count_nonzero(dup))
        if n_dup:
            problems.duplicate_rows += n_dup
            keep = ~dup
            t, p = t[keep], p[keep]
            pf = None if pf is None else pf[keep]
    neg = p < 0
    absurd = p > ABSURD_W
    problems.negative_values += int(np.count_nonzero(neg))
    problems.absurd_values += int(np.count_nonzero(absurd))
    if neg.any() or absurd.any():
        keep = ~(neg | absurd)
        t, p = t[keep], p[keep]
        pf = None if pf is None else pf[keep]
    if pf is not None:
        out = (pf < 0) | (pf > 1)
        n_out = int(np.count_nonzero(out))
        if n_out:
            problems.bad_pf += n_out
            pf = np.where(out, np.nan, pf)
    if len(t) > 1:
        gaps = np.diff(t)
        problems.missing_days += int(np.floor(gaps[gaps > _DAY] / _DAY).sum())
    return t, p, pf


def screen_meter(meter: str, t: np.ndarray, p: np.ndarray, pf: np.ndarray | None,
                 settings: Settings) -> MeterResult:
    """Clean and score one meter; any failure is reported in the result, never raised."""
    r = MeterResult(meter)
    try:
        t, p, pf = clean(t, p, pf, r.problems)
        n = len(t)
        r.samples = n
        if n == 0:
            return r
        r.first_t, r.last_t = float(t[0]), float(t[-1])
        if n < 2:
            r.problems.short_meters += 1
        else:
            step = float(np.median(np.diff(t)))
            r.interval_s = step
            if step > 0:
                r.coverage = round(min(1.0, n / ((r.last_t - r.first_t) / step + 1.0)), 4)
        scorer = MeterScorer(meter, settings.detector, settings.policy)
        events = score_series(scorer, t.tolist(), p.tolist(),
                              None if pf is None else pf.tolist())
        r.events = [EventRow.of(e) for e in events]
        r.alerts_raised = sum(1 for e in events if e.kind == "raised")
        r.alert_open = scorer.policy.active
        r.max_score = round(scorer.max_score, 2)
        r.max_score_t = scorer.max_t
        r.schedule = _schedule(scorer.max_evidence)
        if scorer.max_evidence:
            r.summary = str(scorer.max_evidence.get("summary", ""))
        if scorer.first_ready_t == scorer.first_ready_t:
            r.days_scored = round((r.last_t - scorer.first_ready_t) / _DAY, 2)
    except Exception as e:  # one bad meter never stops the run: say what, go on
        r.error = "%s: %s" % (type(e).__name__, e)
        r.problems.failed_meters += 1
    return r
