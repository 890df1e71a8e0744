"""Property tests (CPython only, hypothesis) for the detector's contract.

Whatever arrives (any rate, gaps, jumps back, NaN/inf/negative power, odd power factors):
the score stays in 0..100 and equals the sum of its contributions, the state stays JSON-able
and under 2 KB, and a detector restored from JSON at any point continues bit-identically.
"""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.signature import FEATURES, Detector

T0 = 1362096000.0
STATE_LIMIT = 2048

power = st.one_of(
    st.floats(min_value=0.0, max_value=20000.0),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), -100.0, 0.0]),
)
pf = st.one_of(st.none(), st.floats(min_value=-1.0, max_value=1.5),
               st.sampled_from([float("nan"), float("inf")]))
step_s = st.sampled_from([1.0, 7.0, 60.0, 900.0, 1800.0, 7200.0, -30.0])
samples = st.lists(st.tuples(step_s, power, pf), min_size=1, max_size=400)


def _base_stream(n: int) -> list[tuple[float, float]]:
    """Four days of a simple home every 15 min, so the detector is ready."""
    out = []
    for i in range(n):
        t = T0 + i * 900.0
        h = (i % 96) / 4.0
        out.append((t, 200.0 + (1500.0 if 18 <= h < 21 else 0.0) + (i % 7) * 10.0))
    return out


WARM = _base_stream(4 * 96 + 5)


def _run(det: Detector, t: float, seq) -> tuple[float, list[float]]:
    scores = []
    for dt, p, f in seq:
        t += dt * 13.0  # stretch so that slots and days really close
        scores.append(det.update(t, p + (1400.0 if p == p and p > 0 else 0.0), f))
    return t, scores


def _check_outputs(det: Detector) -> None:
    assert 0.0 <= det.score <= 100.0
    c = det.contributions()
    if c:
        assert set(c) == set(FEATURES)
        assert math.isclose(sum(c.values()), det.score, abs_tol=1e-9)
    json.dumps(det.evidence(), allow_nan=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seq=samples, slot=st.sampled_from([900.0, 1800.0, 3600.0]))
def test_score_bounded_and_state_small(seq, slot) -> None:
    det = Detector({"slot_s": slot})
    for t, p in WARM:
        det.update(t, p)
    _, scores = _run(det, WARM[-1][0], seq)
    assert all(0.0 <= s <= 100.0 for s in scores)
    _check_outputs(det)
    blob = json.dumps(det.state(), allow_nan=False, separators=(",", ":"))
    assert len(blob) < STATE_LIMIT, len(blob)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seq=samples, cut=st.integers(min_value=0, max_value=400))
def test_json_round_trip_at_any_point(seq, cut) -> None:
    a = Detector({})
    for t, p in WARM:
        a.update(t, p)
    cut = min(cut, len(seq))
    t, _ = _run(a, WARM[-1][0], seq[:cut])
    b = Detector.from_state({}, json.loads(json.dumps(a.state(), allow_nan=False)))
    assert b.state() == a.state()
    assert (b.score, b.ready, b.evidence(), b.contributions()) == (
        a.score, a.ready, a.evidence(), a.contributions())
    _, sa = _run(a, t, seq[cut:])
    _, sb = _run(b, t, seq[cut:])
    assert sa == sb
    assert a.state() == b.state()
