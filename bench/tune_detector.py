"""Quick tuning harness for the signature detector and policy on the real SGSC homes.

Not the reporting benchmark (bench/detection.py, loads room): this is the detector room's
own loop for choosing defaults, on the TUNING split only (SGSC customers with an even index
in sorted id order; odd ones are kept for reporting). Negatives are the real homes; hard
negatives are the OPSD heat pump and EV circuits and UCI sub-meter 3 (water heater + A/C)
added onto them, plus grow lights (12/12, 18/6), a 120 W home server and two vacant weeks.
Positives are the same homes with a constant miner (1 % noise) from an onset.

    .venv/bin/python bench/tune_detector.py [--data ../shared/data] [--split tune|report]
        [--set key=value ...]

Sources: SGSC Customer Trial (data.gov.au, CC BY), OPSD household data DE_KN_residential4
(CC BY 4.0), UCI Individual Household Electric Power Consumption (CC BY 4.0).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import io
import random
import sys
import time
import zipfile
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.policy import Policy, default_policy_settings  # noqa: E402
from agent.signature import Detector, default_settings  # noqa: E402

TZ = 10 * 3600.0  # SGSC is NSW local time (DST ignored)
HALF = 1800.0
DAY = 86400.0


def load_sgsc(data: Path) -> list[tuple[str, list[float], list[float]]]:
    homes: dict[str, list[tuple[float, float]]] = {}
    with gzip.open(data / "sgsc25_halfhourly.csv.gz", "rt") as f:
        r = csv.reader(f)
        next(r)
        for cid, ts, kwh in r:
            try:
                v = float(kwh)
            except ValueError:
                continue
            t = dt.datetime.strptime(ts, "%Y-%m-%d %H:%M:%S").replace(
                tzinfo=dt.timezone.utc).timestamp() - TZ
            homes.setdefault(cid, []).append((t, 2000.0 * v))
    out = []
    for cid in sorted(homes):
        rows = sorted(homes[cid])
        out.append((cid, [r[0] for r in rows], [r[1] for r in rows]))
    return out


def load_opsd(data: Path) -> dict[str, list[float]]:
    """Hourly kW of the heat pump and EV circuits (first differences of kWh registers)."""
    out: dict[str, list[float]] = {"heat_pump": [], "ev": []}
    prev: dict[str, float] = {}
    with gzip.open(data / "opsd_de_kn_residential4_60min.csv.gz", "rt") as f:
        for row in csv.DictReader(f):
            for k in out:
                v = row["DE_KN_residential4_" + k]
                if v:
                    x = float(v)
                    out[k].append(max(0.0, x - prev[k]) if k in prev else 0.0)
                    prev[k] = x
                else:
                    out[k].append(0.0)
    return out


def load_uci_sub3(data: Path) -> list[float]:
    """Half-hourly mean W of UCI sub-meter 3 (Wh per minute * 60)."""
    z = zipfile.ZipFile(data / "uci_household_2007h1.zip")
    name = z.namelist()[0]
    out = []
    acc = 0.0
    n = 0
    with z.open(name) as raw:
        f = io.TextIOWrapper(raw)
        next(f)
        for line in f:
            parts = line.rstrip().split(",")
            try:
                acc += float(parts[9]) * 60.0
                n += 1
            except (ValueError, IndexError):
                pass
            if n == 30:
                out.append(acc / 30.0)
                acc = 0.0
                n = 0
    return out


def local_hour(t: float) -> float:
    return ((t + TZ) % DAY) / 3600.0


def confounders(opsd, uci3):
    """name -> function(ts) -> added W per sample."""

    def hourly(series):
        def add(ts):
            t0 = ts[0]
            return [series[int((t - t0) // 3600) % len(series)] * 1000.0 for t in ts]
        return add

    def halfhourly(series):
        def add(ts):
            t0 = ts[0]
            return [series[int((t - t0) // HALF) % len(series)] for t in ts]
        return add

    def grow(on_from, on_hours, watts):
        def add(ts):
            out = []
            for t in ts:
                h = (local_hour(t) - on_from) % 24.0
                out.append(watts if h < on_hours else 0.0)
            return out
        return add

    def server(ts):
        return [120.0 for _ in ts]

    # The heat pump starts its winter in the middle of the series, as it would in a home.
    return {
        "heat_pump": hourly(opsd["heat_pump"]),
        "ev": hourly(opsd["ev"]),
        "water_heater_ac": halfhourly(uci3),
        "grow_12_12": grow(18.0, 12.0, 600.0),
        "grow_18_6": grow(0.0, 18.0, 600.0),
        "server_120w": server,
    }


def vacant(ts, ps, start_day=120, days=14):
    """Two weeks away: only the fridge-and-standby floor remains."""
    t0 = ts[0] + start_day * DAY
    t1 = t0 + days * DAY
    prev = sorted(p for t, p in zip(ts, ps) if t0 - 7 * DAY <= t < t0)
    floor = prev[len(prev) // 10] if prev else 100.0
    rnd = random.Random(1)
    return [floor * (1.0 + 0.05 * rnd.random()) if t0 <= t < t1 else p for t, p in zip(ts, ps)]


def run(ts, ps, dset, pset, meter="m"):
    d = Detector(dset)
    pol = Policy(meter, pset)
    raised = []
    scores = []
    for t, p in zip(ts, ps):
        sc = d.update(t, p)
        for ev in pol.update(d.verdict(t)):
            if ev.kind == "raised":
                raised.append((t, ev.evidence.get("summary", "")))
        scores.append(sc)
    return raised, scores


def miner_series(ts, ps, onset, kw, mode, seed):
    rnd = random.Random(seed)
    out = []
    for t, p in zip(ts, ps):
        add = 0.0
        if t >= onset:
            on = True
            if mode == "night_only":
                h = local_hour(t)
                on = h >= 22.0 or h < 6.0
            elif mode == "duty_20h":
                on = local_hour(t) >= 4.0
            if on:
                add = kw * 1000.0 * (1.0 + rnd.gauss(0.0, 0.01))
        out.append(p + add)
    return out


def job(args):
    kind, name, ts, ps, extra, dset, pset = args
    if kind == "neg":
        raised, scores = run(ts, ps, dset, pset)
        days = (ts[-1] - ts[0]) / DAY
        # Window maxima (3 days) for the AUC.
        win = []
        w = int(3 * DAY / HALF)
        for i in range(0, len(scores), w):
            win.append(max(scores[i:i + w]))
        return kind, name, {"raised": raised, "days": days, "win": win}
    onset, kw, mode = extra
    i0 = 0
    while i0 < len(ts) and ts[i0] < onset - 45 * DAY:
        i0 += 1
    i1 = i0
    while i1 < len(ts) and ts[i1] < onset + 5 * DAY:
        i1 += 1
    tsub = ts[i0:i1]
    psub = miner_series(tsub, ps[i0:i1], onset, kw, mode, hash((name, onset)) & 0xFFFF)
    raised, scores = run(tsub, psub, dset, pset)
    first = None
    pre_fa = 0
    for t, _s in raised:
        if t >= onset:
            first = t
            break
        pre_fa += 1
    mx = max([s for t, s in zip(tsub, scores) if onset <= t < onset + 3 * DAY] or [0.0])
    return kind, name, {"kw": kw, "mode": mode, "ttd_h": (first - onset) / 3600.0
                        if first is not None else None, "max72": mx, "pre_fa": pre_fa}


def auc(pos, neg):
    allv = sorted([(v, 1) for v in pos] + [(v, 0) for v in neg])
    # Mann-Whitney with ties averaged.
    ranks = {}
    i = 0
    while i < len(allv):
        j = i
        while j < len(allv) and allv[j][0] == allv[i][0]:
            j += 1
        ranks[allv[i][0]] = (i + j + 1) / 2.0
        i = j
    rp = sum(ranks[v] for v in pos)
    n1, n0 = len(pos), len(neg)
    return (rp - n1 * (n1 + 1) / 2.0) / (n1 * n0) if n1 and n0 else float("nan")


def corpus_job(args):
    case, dset, pset = args
    s = dict(dset)
    s["tz_offset_s"] = case.tz_hours * 3600.0
    d = Detector(s)
    pol = Policy(case.meter, pset)
    raised = []
    ts = []
    scores = []
    for t, p, pf in case.samples():
        sc = d.update(t, p, pf)
        for ev in pol.update(d.verdict(t)):
            if ev.kind == "raised" and t >= case.eval_from:
                raised.append((t, ev.evidence.get("summary", "")))
        ts.append(t)
        scores.append(sc)
    out = {"kind": case.kind, "cls": case.cls, "home": case.home, "raised": raised,
           "days": (ts[-1] - case.eval_from) / DAY, "size": case.size_kw,
           "schedule": case.schedule}
    if case.kind == "miner":
        first = [t for t, _ in raised if t >= case.onset]
        out["ttd_h"] = (first[0] - case.onset) / 3600.0 if first else None
        out["max72"] = max([sc for t, sc in zip(ts, scores)
                            if case.onset <= t < case.onset + 3 * DAY] or [0.0])
    else:
        win = []
        cur = None
        start = case.onset if case.onset is not None else case.eval_from
        for t, sc in zip(ts, scores):
            if t < start:
                continue
            k = int((t - start) // (3 * DAY))
            if k != cur:
                win.append(sc)
                cur = k
            elif sc > win[-1]:
                win[-1] = sc
        out["win"] = win
    return out


def main_corpus(a, dset, pset) -> None:
    """Tune on bench/corpus.py (the loads room's corpus, its tune split)."""
    from bench.corpus import build_corpus

    start = time.time()
    cases = build_corpus(a.data, a.split, 1)
    with Pool(a.jobs) as pool:
        results = pool.map(corpus_job, [(c, dset, pset) for c in cases], chunksize=1)
    print("corpus split=%s cases=%d settings=%s (%.0f s)" % (a.split, len(cases), a.set,
                                                            time.time() - start))
    days: dict[str, float] = {}
    fa: dict[str, int] = {}
    neg_win: list[float] = []
    pos: dict[tuple, list] = {}
    pos_max = []
    pos_all: list[float] = []
    for r in results:
        if r["kind"] != "miner":
            days[r["cls"]] = days.get(r["cls"], 0.0) + r["days"]
            fa[r["cls"]] = fa.get(r["cls"], 0) + len(r["raised"])
            neg_win.extend(r["win"])
            if a.verbose:
                for t, summ in r["raised"][:3]:
                    print("   FA %s %s %s %s" % (r["cls"], r["home"], dt.datetime.utcfromtimestamp(
                        t).isoformat(), summ))
        else:
            pos.setdefault((r["size"], r["schedule"]), []).append(r)
            if r["schedule"] == "constant" and r["size"] >= 1.0:
                pos_max.append(r["max72"])
            pos_all.append(r["max72"])
    for c in sorted(days):
        print("  neg %-16s days %7.0f  raised %3d  per 1000 meter-days %.2f"
              % (c, days[c], fa[c], 1000.0 * fa[c] / max(days[c], 1e-9)))
    td = sum(days.values())
    tf = sum(fa.values())
    print("  neg ALL              days %7.0f  raised %3d  per 1000 meter-days %.2f"
          % (td, tf, 1000.0 * tf / td))
    for key in sorted(pos):
        rs = pos[key]
        hits = [r["ttd_h"] for r in rs if r["ttd_h"] is not None and r["ttd_h"] <= 72.0]
        med = sorted(hits)[len(hits) // 2] if hits else float("nan")
        print("  pos %5.2f kW %-10s recall72 %5.1f%%  median ttd %5.1f h  (n=%d)"
              % (key[0], key[1], 100.0 * len(hits) / len(rs), med, len(rs)))
    print("  AUC (>=1 kW constant, 72-h max vs every 3-day window of non-miners): %.4f"
          % auc(pos_max, neg_win))
    print("  AUC (every miner size and schedule, 72-h max vs every 3-day window):  %.4f"
          % auc(pos_all, neg_win))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--split", choices=("tune", "report"), default="tune")
    ap.add_argument("--set", action="append", default=[], help="detector/policy key=value")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--own", action="store_true",
                    help="use this file's own quick injections instead of bench/corpus.py")
    a = ap.parse_args()
    data = Path(a.data)
    dset = {"tz_offset_s": TZ} if a.own else {}
    pset = {}
    dkeys, pkeys = default_settings(), default_policy_settings()
    for kv in a.set:
        k, v = kv.split("=", 1)
        if k in dkeys:
            dset[k] = float(v)
        elif k in pkeys:
            pset[k] = float(v)
        else:
            raise SystemExit("unknown setting %s" % k)
    if not a.own:
        main_corpus(a, dset, pset)
        return
    start = time.time()
    homes = load_sgsc(data)
    homes = [h for i, h in enumerate(homes) if (i % 2 == 0) == (a.split == "tune")]
    conf = confounders(load_opsd(data), load_uci_sub3(data))
    jobs = []
    for cid, ts, ps in homes:
        jobs.append(("neg", "home", ts, ps, None, dset, pset))
        for cname, fn in conf.items():
            add = fn(ts)
            jobs.append(("neg", cname, ts, [p + x for p, x in zip(ps, add)], None, dset, pset))
        jobs.append(("neg", "vacant", ts, vacant(ts, ps), None, dset, pset))
        span = ts[-1] - ts[0]
        for k, frac in enumerate((0.15, 0.45, 0.8)):
            onset = ts[0] + max(50 * DAY, frac * span) + 3.3 * 3600 * k
            # Put the onset where the trace has data for the 3 days that follow.
            i = 0
            while i < len(ts) and ts[i] < onset:
                i += 1
            while i + 144 < len(ts) and ts[i + 144] - ts[i] > 3.2 * DAY:
                i += 1
            if i + 144 >= len(ts):
                continue
            onset = ts[i] + 3.3 * 3600 * k % HALF
            for kw in (0.3, 0.5, 1.0, 1.4, 3.25):
                jobs.append(("pos", cid, ts, ps, (onset, kw, "constant"), dset, pset))
            for mode in ("night_only", "duty_20h"):
                jobs.append(("pos", cid, ts, ps, (onset, 1.4, mode), dset, pset))
    with Pool(a.jobs) as pool:
        results = pool.map(job, jobs, chunksize=1)
    neg_days: dict[str, float] = {}
    neg_fa: dict[str, int] = {}
    neg_win: list[float] = []
    fa_examples = []
    pos: dict[tuple, list] = {}
    pos_max: list[float] = []
    for kind, name, r in results:
        if kind == "neg":
            neg_days[name] = neg_days.get(name, 0.0) + r["days"]
            neg_fa[name] = neg_fa.get(name, 0) + len(r["raised"])
            neg_win.extend(r["win"])
            for t, s in r["raised"][:2]:
                fa_examples.append((name, dt.datetime.utcfromtimestamp(t + TZ).isoformat(), s))
        else:
            pos.setdefault((r["kw"], r["mode"]), []).append(r)
            if r["mode"] == "constant" and r["kw"] >= 1.0:
                pos_max.append(r["max72"])
            neg_fa["pre_onset"] = neg_fa.get("pre_onset", 0) + r["pre_fa"]
    print("split=%s homes=%d settings=%s %s (%.0f s)" % (a.split, len(homes), a.set, "",
                                                         time.time() - start))
    tot_fa = sum(v for k, v in neg_fa.items() if k != "pre_onset")
    tot_days = sum(neg_days.values())
    for name in neg_days:
        print("  neg %-16s days %6.0f  raised %3d  per 1000 meter-days %.2f"
              % (name, neg_days[name], neg_fa[name], 1000.0 * neg_fa[name] / neg_days[name]))
    print("  neg ALL              days %6.0f  raised %3d  per 1000 meter-days %.2f"
          % (tot_days, tot_fa, 1000.0 * tot_fa / tot_days))
    print("  raised before onset in positive runs: %d" % neg_fa.get("pre_onset", 0))
    for key in sorted(pos):
        rs = pos[key]
        hits = [r["ttd_h"] for r in rs if r["ttd_h"] is not None and r["ttd_h"] <= 72.0]
        med = sorted(hits)[len(hits) // 2] if hits else float("nan")
        print("  pos %5.2f kW %-10s recall72 %5.1f%%  median ttd %5.1f h  (n=%d)"
              % (key[0], key[1], 100.0 * len(hits) / len(rs), med, len(rs)))
    print("  AUC (>=1 kW constant, 72-h max vs 3-day windows of negatives): %.4f"
          % auc(pos_max, neg_win))
    if a.verbose:
        for e in fa_examples[:30]:
            print("   FA", e)


if __name__ == "__main__":
    main()
