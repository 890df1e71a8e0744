"""Throughput, scaling and memory of ``loadwatch screen`` (figures in README, "Screening").

    .venv/bin/python bench/screen.py                      # rates and ratios, ~3 min idle
    .venv/bin/python bench/screen.py --meters 200 --days 60 --no-spark   # a quick look
    .venv/bin/python bench/screen.py --memory             # 10,000 meters x 1 year (long)
    .venv/bin/python bench/screen.py --memory --fraction 0.1   # a stated tenth of it

Every figure is measured here, side by side in one run, on generated 30-min AMI data
(households with a morning and an evening peak and noise; one meter in 20 gets a miner
of 0.5-3 kW from a random day on): ``replay`` for reference, the local engine on 1 and
on 2 worker processes (alternating, ``--repeat`` times each, the best wall of each
compared), and Spark ``local[2]`` on the same file; then each engine's start-up, on a
2-meter input. Rates are samples scored per second of wall time, reading and writing
included, and per second of CPU time used by the command's process tree (what one core
delivers, whatever else the machine is doing; for Spark, its JVM and Python workers as
sampled from /proc, since the command does not wait for them).
Peak RSS is the sum over the command's process tree (parent and workers, and for Spark
its JVM and Python workers), sampled every 0.2 s from /proc; shared pages count once per
process, so the figure errs high.

The input is generated day by day straight to disk (a Parquet row group per day, meters
interleaved as an AMI export by day is), so a year of 10,000 meters never sits in memory
here either.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
STEP = 1800.0
T0 = 1_704_067_200.0  # 2024-01-01T00:00:00Z


def generate(path: Path, meters: int, days: int, seed: int = 1, csv: bool = False,
             step: float = STEP) -> int:
    """Write ``meters`` x ``days`` of ``step``-second samples (long layout, default 30 min);
    returns the samples."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(np.log(150.0), 0.5, meters)
    evening = rng.uniform(200.0, 1500.0, meters)
    morning = rng.uniform(100.0, 800.0, meters)
    miner = np.where(rng.random(meters) < 0.05, rng.uniform(500.0, 3000.0, meters), 0.0)
    onset = rng.integers(10, max(11, days), meters)
    names = pa.array(["m%06d" % i for i in range(meters)])
    per_day = int(86400 / step)
    h = (np.arange(per_day) * step / 3600.0)
    shape_e = np.exp(-((h - 19.5) / 2.0) ** 2)
    shape_m = np.exp(-((h - 7.5) / 1.2) ** 2)
    meter_idx = pa.array(np.repeat(np.arange(meters), per_day))
    col_meter = names.take(meter_idx)
    writer = None
    fcsv = None
    n = 0
    try:
        for d in range(days):
            p = (base[:, None] + evening[:, None] * shape_e[None, :] * rng.uniform(
                0.5, 1.5, (meters, 1)) + morning[:, None] * shape_m[None, :]
                + rng.gamma(2.0, 40.0, (meters, per_day)))
            p += np.where(d >= onset, miner, 0.0)[:, None]
            p = np.round(p, 1).ravel()
            t = np.tile(T0 + d * 86400.0 + np.arange(per_day) * step, meters)
            table = pa.table({"meter": col_meter, "timestamp": t, "p_w": p})
            if csv:
                if fcsv is None:
                    fcsv = open(path, "w")
                    fcsv.write("meter,timestamp,p_w\n")
                m = np.repeat(np.array(names.to_pylist()), per_day)
                fcsv.write("".join("%s,%d,%.1f\n" % x for x in zip(m, t, p)))
            else:
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema, compression="zstd")
                writer.write_table(table)
            n += len(p)
    finally:
        if writer is not None:
            writer.close()
        if fcsv is not None:
            fcsv.close()
    return n


def _tree(root: int) -> tuple[int, dict[int, float]]:
    """Resident bytes of ``root`` and all its descendants, and each one's CPU seconds so
    far (user + system, its own), from /proc."""
    kids: dict[int, list[int]] = {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % e) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(e))
    total, todo = 0, [root]
    cpu: dict[int, float] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, []))
        try:
            with open("/proc/%d/statm" % pid) as f:
                total += int(f.read().split()[1]) * page
            with open("/proc/%d/stat" % pid) as f:
                st = f.read().rsplit(")", 1)[1].split()
            cpu[pid] = (int(st[11]) + int(st[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total, cpu


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(args: list[str]) -> tuple[float, int, str, float]:
    """Run ``loadwatch ARGS``; (wall s, peak tree RSS bytes, stdout, CPU s of the tree).

    The CPU time is the larger of two counts: the kernel's for every process the command
    waited for (exact for the local engine's workers), and the sum over every process
    seen in the tree of its CPU time when last sampled (Spark's JVM and its Python
    workers, which the command does not wait for; misses at most the last 0.2 s)."""
    t0 = time.perf_counter()
    c0 = _cpu()
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    seen: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss, cpu = _tree(proc.pid)
            peak[0] = max(peak[0], rss)
            seen.update(cpu)
            done.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    done.set()
    th.join()
    wall = time.perf_counter() - t0
    cpu = max(_cpu() - c0, sum(seen.values()))
    if proc.returncode != 0:
        raise SystemExit("loadwatch %s failed (%d):\n%s" % (" ".join(args), proc.returncode,
                                                            err[-2000:]))
    return wall, peak[0], out, cpu


def screen(inp: Path, out: Path, *extra: str) -> dict:
    wall, rss, _, cpu = run(["screen", str(inp), "--out", str(out), "--quiet", *extra])
    with open(out / "summary.json") as f:
        s = json.load(f)
    s["wall_s"] = wall
    s["cpu_s"] = cpu
    s["peak_rss_mb"] = rss / 1e6
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # 2.88 M samples: Spark's ~10-17 s start-up is still visible in its ratio, the local
    # engine's ~1 s no longer dominates the 2-worker run.
    ap.add_argument("--meters", type=int, default=1000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--no-spark", action="store_true")
    ap.add_argument("--repeat", type=int, default=2,
                    help="runs of the local engine on 1 and on 2 workers, alternating")
    ap.add_argument("--memory", action="store_true",
                    help="the 10,000 meters x 365 days run (local engine, 2 workers)")
    ap.add_argument("--fraction", type=float, default=1.0,
                    help="--memory: screen this fraction of the meters (stated in the output)")
    ap.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    a = ap.parse_args()
    work = Path(a.dir or tempfile.mkdtemp(prefix="bench-screen-"))
    work.mkdir(parents=True, exist_ok=True)
    print("bench/screen.py on %d cores, load average %s" % (os.cpu_count() or 0,
                                                            " ".join("%.2f" % x for x in
                                                                     os.getloadavg())))
    if a.memory:
        meters = round(10_000 * a.fraction)
        inp = work / ("year_%d.parquet" % meters)
        if inp.exists():  # made by an earlier run with the same --dir (same seed)
            n = pq.ParquetFile(inp).metadata.num_rows
            print("reusing %s: %d samples" % (inp, n))
        else:
            t0 = time.perf_counter()
            n = generate(inp, meters, 365)
            print("generated %d meters x 365 days = %d samples (%.0f MB Parquet) in %.0f s"
                  % (meters, n, inp.stat().st_size / 1e6, time.perf_counter() - t0))
        s = screen(inp, work / "out_year", "--workers", "2")
        print("| memory run | meters | samples | wall | samples/s | peak RSS (tree) |")
        print("|---|---|---|---|---|---|")
        print("| local, 2 workers%s | %d | %d | %.0f s | %.0f | %.0f MB |"
              % ("" if a.fraction == 1.0 else " (%.0f%% of the 10,000)" % (a.fraction * 100),
                 s["meters"], s["samples"], s["wall_s"], s["samples"] / s["wall_s"],
                 s["peak_rss_mb"]))
        return
    rates(a, work)


def _load() -> str:
    return "load %.2f" % os.getloadavg()[0]


def _best(runs: list[dict]) -> dict:
    """The run with the shortest wall time: the one the neighbours disturbed least."""
    return min(runs, key=lambda s: s["wall_s"])


def rates(a: argparse.Namespace, work: Path) -> None:
    """Rates and ratios, every engine on the same file. The 1- and 2-worker runs alternate
    (1, 2, 1, 2, ...) so that a change in the machine's load hits both alike; each side's
    best wall time is the one compared."""
    inp = work / "bench.parquet"
    n = generate(inp, a.meters, a.days)
    small = work / "replay.csv"
    k = max(1, a.meters // 10)
    generate(small, k, a.days, csv=True)
    tiny = work / "tiny.parquet"  # 2 meters x 3 days: what a run costs before any work
    generate(tiny, 2, 3)
    print("input: %d meters x %d days of 30-min data = %d samples" % (a.meters, a.days, n))
    wall, _, _, rcpu = run(["replay", str(small)])
    replay_rate = k * a.days * 48 / wall
    ones: list[dict] = []
    twos: list[dict] = []
    for i in range(a.repeat):
        for w, runs in (("1", ones), ("2", twos)):
            s = screen(inp, work / ("o%s_%d" % (w, i)), "--workers", w)
            runs.append(s)
            print("  %s worker(s), run %d: %.2f s wall, %.2f CPU-s (%s)"
                  % (w, i + 1, s["wall_s"], s["cpu_s"], _load()))
    one, two = _best(ones), _best(twos)
    q = work / "bench15.parquet"  # the province's 96-point curves, as long samples
    n15 = generate(q, a.meters, max(1, a.days // 2), step=900.0)
    one15 = screen(q, work / "o15", "--workers", "1")
    start = {w: screen(tiny, work / ("t%s" % w), "--workers", w)["wall_s"] for w in "12"}
    rows = [("replay (1 core, %d meters of the same kind, CSV)" % k, replay_rate,
             k * a.days * 48 / rcpu, None, None),
            ("screen local, 1 worker", n / one["wall_s"], n / one["cpu_s"],
             one["peak_rss_mb"], None),
            ("screen local, 2 workers", n / two["wall_s"], n / two["cpu_s"],
             two["peak_rss_mb"], "%.2fx vs 1 worker" % (one["wall_s"] / two["wall_s"])),
            ("screen local, 1 worker, 15-min data (%d samples)" % n15, n15 / one15["wall_s"],
             n15 / one15["cpu_s"], one15["peak_rss_mb"], None)]
    if not a.no_spark:
        sp = screen(inp, work / "os", "--engine", "spark", "--master", "local[2]")
        print("  spark local[2]: %.2f s wall, %.2f CPU-s (%s)" % (sp["wall_s"], sp["cpu_s"],
                                                                _load()))
        start["spark"] = screen(tiny, work / "ts", "--engine", "spark", "--master",
                                "local[2]")["wall_s"]
        rows.append(("screen spark local[2]", n / sp["wall_s"], n / sp["cpu_s"],
                     sp["peak_rss_mb"],
                     "%.2fx vs local 2 workers" % (two["wall_s"] / sp["wall_s"])))
        same = (pq.read_table(work / "o1_0" / "alerts.parquet").sort_by("event_id")
                .equals(pq.read_table(work / "os" / "alerts.parquet").sort_by("event_id")))
        print("spark and local alerts identical: %s" % same)
    print("| engine | samples/s (wall, reading included) | samples per CPU-second | "
          "peak RSS (process tree) | ratio (wall) |")
    print("|---|---|---|---|---|")
    for name, rate, per_cpu, rss, ratio in rows:
        print("| %s | %.0f | %s | %s | %s |" % (name, rate,
                                                "%.0f" % per_cpu if per_cpu else "-",
                                                "%.0f MB" % rss if rss else "-",
                                                ratio or "-"))
    print("start-up (the same command on a 2-meter, 3-day input), wall: %s"
          % ", ".join("%s %.1f s" % (k2 if k2 == "spark" else "local %s worker(s)" % k2, v)
                      for k2, v in start.items()))
    print("alerts raised: %d meters of %d; load average at the end %s"
          % (one["meters_alerted"], one["meters"],
             " ".join("%.2f" % x for x in os.getloadavg())))


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # progress visible when piped to a file
    main()
