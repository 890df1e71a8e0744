"""One meter's samples through the detector and the policy: the step `replay` and `screen` share.

``loadwatch replay`` (rows of many meters interleaved, streamed) and ``loadwatch screen``
(one meter's whole history at a time, in a process pool or a Spark task) must give the
same events for the same samples. So the call into the detector and the policy is written
once, in :meth:`MeterScorer.feed`, and both commands go through it; when the detector's
interface changes, this is the one place to change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from agent.model import Event


class MeterScorer:
    """The detector and policy of one meter, plus what a screening report needs about it.

    ``max_score``/``max_t``/``max_evidence``: the highest score seen, when, and the
    detector's evidence at that moment (built only when the maximum rises, not per sample).
    ``first_ready_t``: when the detector first left its warm-up (for "days scored").
    """

    __slots__ = ("detector", "first_ready_t", "last_t", "max_evidence", "max_score",
                 "max_t", "meter", "policy", "samples")

    def __init__(self, meter: str, detector_settings: dict | None,
                 policy_settings: dict | None) -> None:
        from agent.policy import Policy
        from agent.signature import Detector

        self.meter = meter
        self.detector = Detector(detector_settings)
        self.policy = Policy(meter, policy_settings)
        self.samples = 0
        self.max_score = 0.0
        self.max_t = math.nan
        self.max_evidence: dict[str, Any] | None = None
        self.first_ready_t = math.nan
        self.last_t = -math.inf

    def feed(self, t: float, p_w: float, pf: float | None) -> list[Event]:
        """Learn one sample (in time order) and return the alert events it causes."""
        det = self.detector
        score = det.update(t, p_w, pf)
        self.samples += 1
        self.last_t = t
        if score > self.max_score:
            self.max_score = score
            self.max_t = t
            self.max_evidence = dict(det.evidence())
        if not det.ready:
            return []  # the policy ignores a warming detector's verdicts
        if self.first_ready_t != self.first_ready_t:  # NaN: not ready before
            self.first_ready_t = t
        policy = self.policy
        if policy.quiet(score):
            return []  # (no verdict object built: most samples of most meters)
        return policy.update(det.verdict(t))


def score_series(scorer: MeterScorer, ts: Sequence[float], ps: Sequence[float],
                 pfs: Sequence[float | None] | None) -> list[Event]:
    """Feed a meter's samples, already in time order, and return all its events.

    ``pfs`` is None when the input has no power factor; a NaN power factor is "none".
    """
    events: list[Event] = []
    feed = scorer.feed
    if pfs is None:
        for t, p in zip(ts, ps):
            out = feed(t, p, None)
            if out:
                events.extend(out)
    else:
        for t, p, pf in zip(ts, ps, pfs):
            out = feed(t, p, None if pf is None or pf != pf else pf)
            if out:
                events.extend(out)
    return events
