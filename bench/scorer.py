"""Speed and state benchmark of the signature core, side by side with two peers, in one run.

    .venv/bin/python bench/scorer.py [--samples 1000000] [--quick]

Measures on the same 1-s stream (a 400 W home with a 1.37 kW miner switched on after two
days, ~1% noise, pf 0.98):

- Loadwatch ``Detector.update`` under CPython: samples per CPU-second (one core: the loop
  is single-threaded; CPU time, not wall time, so other load on the machine does not count);
- the same under the MicroPython unix port (``.venv/bin/micropython``, MICROPYPATH = the
  repo root, timed with ``time.ticks_us`` inside the port over the same stream held in
  ``array('d')``; the cost of the bare indexing loop is measured and subtracted);
- the same detector on 30-min samples (what utilities' AMI stores and ``loadwatch screen``
  reads: every sample closes a slot and holds the next), samples per CPU-second;
- bytes of state per meter: ``len(json.dumps(detector.state()))`` after 3 days;
- river ``HalfSpaceTrees`` (n_trees=10, height=8, window_size=250) scoring and learning
  each sample (features: kW and local hour); state = ``len(pickle.dumps(model))``;
- a NumPy rolling-window recomputation of the same features (the straightforward design:
  keep the last 24 h of raw samples in a ring and recompute floor (p10), CV, load factor,
  night/evening ratio and jitter from the window at every sample); state = the ring's bytes.

Targets (issues 3 and 18): >= 1,000,000 samples/s under CPython at 1-s sampling,
>= 150,000 at 30-min sampling, < 2 KB state.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.signature import Detector, default_settings  # noqa: E402

T0 = 1704031200.0  # 2024-01-01 00:00 at UTC+10
TZ_S = 36000.0
MINER_FROM = 2 * 86400


def stream(n: int) -> tuple[list[float], list[float], list[float]]:
    """n one-second samples: home (daily shape + noise) + a miner after two days."""
    ts, ps, pfs = [], [], []
    x = 12345
    for i in range(n):
        x = (1103515245 * x + 12345) & 0x7FFFFFFF
        u = x / 2147483648.0
        h = ((i + TZ_S) % 86400) / 3600.0
        home = 250.0 + 300.0 * (17.0 <= h < 22.0) + 100.0 * u
        miner = 1372.0 * (1.0 + 0.02 * (u - 0.5)) if i >= MINER_FROM else 0.0
        ts.append(T0 + i)
        ps.append(home + miner)
        pfs.append(0.98)
    return ts, ps, pfs


def stream_30min(n: int) -> tuple[list[float], list[float]]:
    """n half-hourly means of the same home and miner (miner from day 2)."""
    ts, ps = [], []
    x = 12345
    for i in range(n):
        x = (1103515245 * x + 12345) & 0x7FFFFFFF
        u = x / 2147483648.0
        t = i * 1800.0
        h = ((t + TZ_S) % 86400) / 3600.0
        home = 250.0 + 300.0 * (17.0 <= h < 22.0) + 100.0 * u
        miner = 1372.0 * (1.0 + 0.01 * (u - 0.5)) if t >= MINER_FROM else 0.0
        ts.append(T0 + t)
        ps.append(home + miner)
    return ts, ps


def bench_cpython_30min(n: int) -> dict:
    ts, ps = stream_30min(n)
    s = default_settings()
    s["tz_offset_s"] = TZ_S
    d = Detector(s)
    upd = d.update
    c0 = time.process_time()
    for t, p in zip(ts, ps):
        upd(t, p)
    cpu = time.process_time() - c0
    return {"samples": n, "cpu_s": cpu, "per_s": n / cpu, "state_bytes": len(json.dumps(
        d.state())), "score": d.score}


def bench_cpython(ts: list[float], ps: list[float], pfs: list[float]) -> dict:
    s = default_settings()
    s["tz_offset_s"] = TZ_S
    d = Detector(s)
    upd = d.update
    c0 = time.process_time()
    w0 = time.perf_counter()
    for t, p, pf in zip(ts, ps, pfs):
        upd(t, p, pf)
    cpu = time.process_time() - c0
    wall = time.perf_counter() - w0
    return {"samples": len(ts), "cpu_s": cpu, "wall_s": wall, "per_s": len(ts) / cpu,
            "state_bytes": len(json.dumps(d.state())), "score": d.score}


MICROPYTHON_SCRIPT = r"""
import time, json
from array import array
from agent.signature import Detector, default_settings
N = %(n)d
T0 = %(t0)r
ts = array("d")
ps = array("d")
x = 12345
for i in range(N):
    x = (1103515245 * x + 12345) & 0x7FFFFFFF
    u = x / 2147483648.0
    h = ((i + %(tz)r) %% 86400) / 3600.0
    p = 250.0 + (300.0 if 17.0 <= h < 22.0 else 0.0) + 100.0 * u
    if i >= %(mf)d:
        p += 1372.0 * (1.0 + 0.02 * (u - 0.5))
    ts.append(T0 + i)
    ps.append(p)
s = default_settings()
s["tz_offset_s"] = %(tz)r
d = Detector(s)
upd = d.update
t0 = time.ticks_us()
for i in range(N):
    upd(ts[i], ps[i], 0.98)
total = time.ticks_diff(time.ticks_us(), t0) / 1e6
t0 = time.ticks_us()
for i in range(N):
    ts[i]
    ps[i]
loop = time.ticks_diff(time.ticks_us(), t0) / 1e6
print(json.dumps({"samples": N, "loop_s": loop, "total_s": total,
                  "state_bytes": len(json.dumps(d.state())), "score": d.score}))
"""


def bench_micropython(n: int) -> dict:
    exe = Path(sys.executable).with_name("micropython")
    if not exe.exists():
        return {"error": "no micropython binary at %s" % exe}
    code = MICROPYTHON_SCRIPT % {"n": n, "tz": TZ_S, "t0": T0, "mf": MINER_FROM}
    env = dict(os.environ, MICROPYPATH=str(ROOT))
    r = subprocess.run([str(exe), "-X", "heapsize=64M", "-c", code], capture_output=True,
                       text=True, env=env, timeout=600)
    if r.returncode != 0:
        return {"error": (r.stderr or r.stdout).strip()[-400:]}
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["net_s"] = max(1e-9, out["total_s"] - out["loop_s"])
    out["gross_per_s"] = out["samples"] / out["total_s"]
    out["per_s"] = out["samples"] / out["net_s"]
    return out


def bench_hst(ts: list[float], ps: list[float]) -> dict:
    from river.anomaly import HalfSpaceTrees

    hst = HalfSpaceTrees(n_trees=10, height=8, window_size=250, seed=1,
                         limits={"kw": (0.0, 10.0), "h": (0.0, 24.0)})
    score_one, learn_one = hst.score_one, hst.learn_one
    c0 = time.process_time()
    for t, p in zip(ts, ps):
        x = {"kw": p / 1000.0, "h": ((t + TZ_S) % 86400.0) / 3600.0}
        score_one(x)
        learn_one(x)
    cpu = time.process_time() - c0
    return {"samples": len(ts), "cpu_s": cpu, "per_s": len(ts) / cpu,
            "state_bytes": len(pickle.dumps(hst))}


def bench_numpy(ts: list[float], ps: list[float], n_scored: int) -> dict:
    """Keep 24 h of raw 1-s samples, recompute the features from the window per sample."""
    import numpy as np

    win = 86400
    ring_p = np.zeros(win)
    ring_t = np.zeros(win)
    hours = None
    # fill the window with the first day (not timed: this is the warm-up)
    ring_p[:] = ps[:win]
    ring_t[:] = ts[:win]
    pos = 0
    c0 = time.process_time()
    for k in range(win, win + n_scored):
        ring_p[pos] = ps[k]
        ring_t[pos] = ts[k]
        pos = (pos + 1) % win
        floor = np.percentile(ring_p, 10)
        mean = ring_p.mean()
        cv = ring_p.std() / mean if mean > 0 else 0.0
        lf = mean / ring_p.max()
        hours = ((ring_t + TZ_S) % 86400.0) / 3600.0
        night = ring_p[(hours >= 1) & (hours < 5)].mean()
        evening = ring_p[(hours >= 17) & (hours < 22)].mean()
        low = ring_p[ring_p <= floor]
        jitter = low.std() / low.mean() if low.size and low.mean() > 0 else 0.0
        _ = (cv, lf, night / evening if evening > 0 else 0.0, jitter)
    cpu = time.process_time() - c0
    return {"samples": n_scored, "cpu_s": cpu, "per_s": n_scored / cpu,
            "state_bytes": int(ring_p.nbytes + ring_t.nbytes)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="signature core speed and state, vs peers")
    ap.add_argument("--samples", type=int, default=1_000_000,
                    help="1-s samples for the CPython run (default 1,000,000 = 11.6 days)")
    ap.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    a = ap.parse_args(argv)
    n = 300_000 if a.quick else a.samples
    n = max(n, 3 * 86400 + 1000)
    n_mpy = min(n, 300_000 if a.quick else 1_000_000)
    n_hst = 20_000 if a.quick else 100_000
    n_np = 200 if a.quick else 1000
    t_run = time.monotonic()
    ts, ps, pfs = stream(n)
    cp = bench_cpython(ts, ps, pfs)
    c30 = bench_cpython_30min(20_000 if a.quick else 200_000)
    mp = bench_micropython(n_mpy)
    hs = bench_hst(ts[:n_hst], ps[:n_hst])
    npy = bench_numpy(ts, ps, n_np)
    rows = [("Loadwatch, CPython %s" % sys.version.split()[0], cp),
            ("Loadwatch, CPython, 30-min samples", c30),
            ("Loadwatch, MicroPython unix port", mp),
            ("river HalfSpaceTrees (CPython)", hs),
            ("NumPy 24 h rolling window", npy)]
    base = cp["per_s"]
    print("1-s samples, one core; ratios against Loadwatch under CPython (same run)")
    print("%-36s %12s %16s %12s %10s" % ("", "samples", "samples/s/core", "x Loadwatch",
                                         "state B"))
    for name, r in rows:
        if "error" in r:
            print("%-36s %s" % (name, r["error"]))
            continue
        print("%-36s %12d %16.0f %12.3g %10d" % (name, r["samples"], r["per_s"],
                                                 r["per_s"] / base, r["state_bytes"]))
    ok_speed = cp["per_s"] >= 1e6
    ok_30 = c30["per_s"] >= 150e3
    ok_state = cp["state_bytes"] < 2048
    print()
    print("target >= 1,000,000 samples/s CPython: %s (%.0f)" % (
        "met" if ok_speed else "NOT met", cp["per_s"]))
    print("target >= 150,000 samples/s CPython at 30-min sampling: %s (%.0f)" % (
        "met" if ok_30 else "NOT met", c30["per_s"]))
    print("target < 2 KB state per meter: %s (%d bytes)" % (
        "met" if ok_state else "NOT met", cp["state_bytes"]))
    print("final score on the stream (miner from day 2): CPython %.1f%s; 30-min stream %.1f" % (
        cp["score"], "" if "error" in mp else ", MicroPython %.1f" % mp["score"],
        c30["score"]))
    if not math.isclose(cp["score"], mp.get("score", cp["score"]), abs_tol=1e-6) \
            and "error" not in mp and mp["samples"] == cp["samples"]:
        print("NOTE: the two runtimes disagree on the final score")
    print("run time %.0f s" % (time.monotonic() - t_run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
