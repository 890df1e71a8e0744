"""The peers Loadwatch is compared with in bench/detection.py, and how they raise alerts.

- ``peer_monthly``: what utilities use today: consumption over the trailing 30 days divided
  by the account's previous 30 days (or the first 28 days of the case when there is no older
  history). Generous: evaluated at every sample, as if billing were continuous.
- ``peer_zscore``: trailing 24 h mean power as a z-score against the previous 28 daily means
  (floors: sd >= 10% of the mean and >= 20 W, so a flat vacant week does not divide by 0).
- ``peer_floor24``: the 30-line floor rule: the 10th percentile of the trailing 24 h
  (of half-hourly means) minus the median of the same percentile at the end of each of
  the previous 28 local days, in kW.
- ``peer_hst``: river ``HalfSpaceTrees`` (Tan, Ting & Liu 2011; n_trees=10, height=8,
  window_size=250) on log10(1 + kW) of the sample, of its trailing 24 h mean and of its
  trailing 24 h minimum, plus the local hour; score_one then learn_one per sample.

Windows are counted in samples where a time span is needed at a fixed rate (24 h = 48
half-hours); gaps in the data therefore stretch a window slightly (documented, minor).
``held`` and ``alarms`` turn any score into raised alerts like the policy does: the score
must hold above the threshold for ``hold_s``, and an alert re-arms after 12 h below.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import minimum_filter1d

from bench.corpus import Case

DAY = 86400.0
PEERS = ("monthly-kWh", "z-score", "24h-floor", "HalfSpaceTrees")


def _trailing_sum(t: np.ndarray, x: np.ndarray, span: float) -> tuple[np.ndarray, np.ndarray]:
    """Sum of x and count of samples over (t - span, t] for each sample."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    j = np.searchsorted(t, t - span, side="right")
    i = np.arange(1, len(t) + 1)
    return c[i] - c[j], (i - j).astype(float)


def peer_monthly(case: Case) -> np.ndarray:
    """Trailing 30-day kWh over the previous 30 days' (or the first 28 days') kWh."""
    t, p = case.t, case.p_w
    s30, n30 = _trailing_sum(t, p, 30 * DAY)
    m30 = s30 / np.maximum(n30, 1)
    # previous month: (t - 60 d, t - 30 d]
    c = np.concatenate([[0.0], np.cumsum(p)])
    a = np.searchsorted(t, t - 60 * DAY, side="right")
    b = np.searchsorted(t, t - 30 * DAY, side="right")
    nprev = (b - a).astype(float)
    mprev = (c[b] - c[a]) / np.maximum(nprev, 1)
    first = t < t[0] + 28 * DAY
    mfirst = p[first].mean() if first.any() else p.mean()
    base = np.where(nprev * case.step_s >= 7 * DAY, mprev, mfirst)
    score = m30 / np.maximum(base, 20.0)
    score[n30 * case.step_s < 7 * DAY] = 0.0
    return score


def peer_zscore(case: Case) -> np.ndarray:
    """z of the trailing 24 h mean against the previous 28 local-day means."""
    t, p = case.t, case.p_w
    s24, n24 = _trailing_sum(t, p, DAY)
    m24 = s24 / np.maximum(n24, 1)
    day = np.floor((t + case.tz_hours * 3600.0) / DAY).astype(np.int64)
    d0 = day[0]
    di = day - d0
    nd = int(di[-1]) + 1
    sums = np.bincount(di, weights=p, minlength=nd)
    cnt = np.bincount(di, minlength=nd).astype(float)
    full = cnt * case.step_s >= 20 * 3600.0
    dmean = np.where(full, sums / np.maximum(cnt, 1), np.nan)
    mu = np.full(nd, np.nan)
    sd = np.full(nd, np.nan)
    for d in range(nd):
        w = dmean[max(0, d - 28):d]
        w = w[~np.isnan(w)]
        if len(w) >= 7:
            mu[d] = w.mean()
            sd[d] = w.std()
    m = mu[di]
    s = np.maximum(np.nan_to_num(sd[di], nan=1.0), np.maximum(0.1 * np.nan_to_num(m), 20.0))
    z = (m24 - m) / s
    z[np.isnan(z)] = 0.0
    z[n24 * case.step_s < 0.8 * DAY] = 0.0
    return z


def peer_floor24(case: Case) -> np.ndarray:
    """p10 of the trailing 24 h of half-hourly means, minus its median at the previous 28
    local day-ends (kW). Faster samples are averaged to half-hours first and the score is
    held for each half-hour's samples."""
    t, p = case.t, case.p_w
    half = np.floor(t / 1800.0).astype(np.int64)
    keys, inv = np.unique(half, return_inverse=True)
    means = np.bincount(inv, weights=p) / np.bincount(inv)
    n = len(means)
    k = 48
    if n < k:
        return np.zeros(len(t))
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(means, k)  # window i covers means[i .. i+k-1]
    p10 = np.partition(win, 4, axis=1)[:, 4] / 1000.0
    floor = np.full(n, np.nan)
    floor[k - 1:] = p10
    tk = keys * 1800.0
    day = np.floor((tk + case.tz_hours * 3600.0) / DAY).astype(np.int64)
    last_of_day = np.flatnonzero(np.diff(day, append=day[-1] + 1) != 0)
    day_floor = floor[last_of_day]
    score = np.zeros(n)
    j = 0
    for i in range(n):
        while j < len(last_of_day) and last_of_day[j] < i:
            j += 1
        prev = day_floor[max(0, j - 28):j]
        prev = prev[~np.isnan(prev)]
        if len(prev) >= 7 and not np.isnan(floor[i]):
            score[i] = floor[i] - float(np.median(prev))
    return score[inv]


def peer_hst(case: Case, seed: int) -> np.ndarray:
    """river HalfSpaceTrees on (sample, 24 h mean, 24 h min, hour), score then learn."""
    from river.anomaly import HalfSpaceTrees

    t, p = case.t, case.p_w
    s24, n24 = _trailing_sum(t, p, DAY)
    m24 = s24 / np.maximum(n24, 1)
    k = max(1, round(DAY / case.step_s))
    # trailing minimum over k samples (origin shifts the window to end at the sample)
    f24 = minimum_filter1d(p, size=k, origin=(k - 1) // 2, mode="nearest")
    lp = np.log10(1.0 + np.maximum(p, 0) / 1000.0).tolist()
    lm = np.log10(1.0 + np.maximum(m24, 0) / 1000.0).tolist()
    lf = np.log10(1.0 + np.maximum(f24, 0) / 1000.0).tolist()
    hr = (((t + case.tz_hours * 3600.0) % DAY) / 3600.0).tolist()
    hst = HalfSpaceTrees(n_trees=10, height=8, window_size=250, seed=seed,
                         limits={"p": (0.0, 2.0), "m": (0.0, 2.0), "f": (0.0, 2.0),
                                 "h": (0.0, 24.0)})
    out = np.empty(len(t))
    score_one = hst.score_one
    learn_one = hst.learn_one
    for i in range(len(lp)):
        x = {"p": lp[i], "m": lm[i], "f": lf[i], "h": hr[i]}
        out[i] = score_one(x)
        learn_one(x)
    return out


def held(case: Case, scores: np.ndarray, hold_s: float) -> np.ndarray:
    """The lowest score over the trailing ``hold_s``: above a threshold = held that long."""
    k = max(1, round(hold_s / case.step_s) + 1)
    if k == 1:
        return scores
    return minimum_filter1d(scores, size=k, origin=(k - 1) // 2, mode="nearest")


def alarms(case: Case, h: np.ndarray, thr: float, rearm_s: float = 43200.0) -> list[float]:
    """Raise times: ``h`` crosses ``thr`` after having been below it for ``rearm_s``."""
    above = h >= thr
    out: list[float] = []
    active = False
    below_since = None
    t = case.t
    idx = np.flatnonzero(np.diff(above.astype(np.int8), prepend=0) != 0)
    for i in idx.tolist():
        if above[i]:
            if not active:
                out.append(float(t[i]))
                active = True
            below_since = None
        else:
            below_since = float(t[i])
        # re-arm after a long enough quiet spell (checked at the next edge)
        if active and below_since is not None:
            nxt = np.searchsorted(t, below_since + rearm_s)
            if nxt < len(t) and not above[i:nxt + 1].any():
                active = False
    return out


def peer_scores(case: Case, seed: int) -> dict[str, np.ndarray]:
    """Every peer's per-sample score for one case."""
    return {"monthly-kWh": peer_monthly(case), "z-score": peer_zscore(case),
            "24h-floor": peer_floor24(case), "HalfSpaceTrees": peer_hst(case, seed)}




def tune_threshold(cases: list[Case], helds: list[np.ndarray]) -> float:
    """Lowest threshold with no alarm in the scored windows of these non-miner cases."""
    top = -math.inf
    for c, h in zip(cases, helds):
        m = c.t >= c.eval_from
        if m.any():
            top = max(top, float(h[m].max()))
    if not math.isfinite(top):
        return 0.0
    return top + max(1e-9, abs(top) * 1e-6)
