"""bench/corpus.py: the split is disjoint, labels and onsets are right, the miner is really in
the positives (its interval-mean power, P and Q added), and it works without the data files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

np = pytest.importorskip("numpy", reason="bench extra (numpy) is part of the dev venv")

from bench.corpus import build_corpus, interval_means  # noqa: E402
from hil.loads.traces import Series  # noqa: E402

DAY = 86400.0


def test_real_corpus_split_labels_and_injection(shared_data) -> None:
    kw = dict(max_homes=2, sizes=(1.4,), schedules=("constant", "night"), conf_homes=1,
              include_uci=False, conf_days=40.0)
    tune = build_corpus(shared_data, "tune", 1, **kw)
    report = build_corpus(shared_data, "report", 1, **kw)
    assert {c.home for c in tune}.isdisjoint({c.home for c in report})
    again = build_corpus(shared_data, "tune", 1, **kw)
    assert [(c.meter, c.onset) for c in tune] == [(c.meter, c.onset) for c in again]
    negatives = {c.home: c for c in tune if c.kind == "negative"}
    miners = [c for c in tune if c.kind == "miner"]
    assert len(miners) == 4 and all(c.label == 1 and c.size_kw == 1.4 for c in miners)
    assert {c.cls for c in tune if c.kind == "confounder"} >= {"opsd_heat_pump", "opsd_ev",
                                                                "uci_sub3"}
    for c in miners:
        assert c.step_s == 1800.0 and c.pf is None and c.split == "tune"
        assert c.start <= c.onset - 27 * DAY and c.end >= c.onset + 13 * DAY
        host = negatives[c.home]
        # the same half-hours in the host without the miner: the difference is the miner
        common, ia, ib = np.intersect1d(c.t, host.t, return_indices=True)
        added = c.p_w[ia] - host.p_w[ib]
        before = common < c.onset - 1800.0
        assert np.all(added[before] == 0.0)
        after = added[common >= c.onset + 1800.0]
        if c.schedule == "constant":
            assert 1250.0 < np.median(after) < 1420.0
        else:  # night only: 9 h of 24
            assert 0.3 < np.mean(after > 1000.0) < 0.45
        samples = list(c.samples())
        assert len(samples) == len(c) and samples[0][2] is None
    for c in tune:
        assert c.eval_days > 0
        assert (c.label == 1) == (c.kind == "miner")


def test_interval_means_integrates_exactly() -> None:
    from array import array

    s = Series("x", array("d", [0.0, 60.0, 120.0]), array("d", [100.0, 200.0, 400.0]), None,
               60.0, 0.0, "test")
    t = np.array([0.0, 60.0, 30.0])
    assert list(interval_means(s, t, 60.0, 0.0)) == pytest.approx([100.0, 200.0, 150.0])
    # a 180 s interval covers all three samples
    assert interval_means(s, np.array([0.0]), 180.0, 0.0)[0] == pytest.approx(700.0 / 3.0)


def test_synthetic_fallback_without_data(tmp_path: Path) -> None:
    cs = build_corpus(tmp_path, "report", 1, max_homes=1, sizes=(3.25,),
                      schedules=("constant",), conf_homes=1, confounders=False)
    assert [c.kind for c in cs] == ["negative", "miner"]
    assert "synthetic" in cs[0].source and cs[0].cls == "synthetic"
