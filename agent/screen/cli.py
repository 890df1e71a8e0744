"""``loadwatch screen INPUT... --out DIR``: score AMI history with the gateway's detector.

See agent/screen/__init__.py for the why; README "Screening AMI history" for the how.
Exit 0 when the run finished (bad rows and bad meters are counted, not fatal), 2 when the
input cannot be screened as given (unreadable file, unknown layout, a unit mistake found in
the data without --force, bad settings).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import TYPE_CHECKING, TextIO

from agent.screen.layout import Layout, LayoutError, Units, normalize
from agent.screen.meter import MeterResult, Settings
from agent.screen.output import Outputs
from agent.screen.problems import Problems
from agent.screen.sources import InputError, Source, batches, estimate_rows, open_source

if TYPE_CHECKING:
    from agent.screen.local import Workers
    from agent.screen.spark import SparkJob

UNIT_SAMPLE = 200_000  # samples looked at for unit mistakes before anything is scored
# Wide "kW" values whose median, as watts, is above this are watts written as kW (no
# home's median draw is 200 kW).
WIDE_W_MEDIAN = 200_000.0


def add_screen_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="CSV, CSV.gz or Parquet: meter,timestamp,p_w[,pf] or meter,date,p1..p96")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output directory (alerts.parquet/.csv, meters.parquet, summary.json)")
    p.add_argument("--engine", choices=("local", "spark"), default="local",
                   help="local process pool (default) or PySpark (pip install loadwatch[spark])")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="local engine: processes (default: all cores)")
    p.add_argument("--master", default=None, metavar="URL",
                   help="spark engine: master URL (default: local[*], or spark-submit's)")
    p.add_argument("--tz", type=float, default=None, metavar="HOURS",
                   help="local time offset east of UTC: the detector's day, and the zone of "
                   "wide-layout dates (default: the config's tz_offset_hours, else 0)")
    p.add_argument("--kwh", action="store_true",
                   help="wide layout: values are energy per interval (kWh), not mean kW")
    p.add_argument("--power-unit", choices=("W", "kW"), default=None,
                   help="unit of the power values (default: W for p_w, kW for p1..pN)")
    p.add_argument("--time-unit", choices=("s", "ms"), default="s",
                   help="unit of numeric timestamps (default: s)")
    p.add_argument("--force", action="store_true",
                   help="screen even when the data look like a unit mistake")
    p.add_argument("--top", type=int, default=20, metavar="N",
                   help="meters in the ranked list printed at the end (default 20)")
    p.add_argument("-c", "--config", default=None, metavar="FILE",
                   help="take [detector] and [policy] settings from this loadwatch config")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _fail(msg: str) -> int:
    print("loadwatch screen: %s" % msg, file=sys.stderr)
    return 2


def _settings(args: argparse.Namespace) -> Settings:
    from agent.settings import replay_settings

    detector, policy = replay_settings(args.config, args.tz)
    return Settings(detector, dict(policy))


def _units(args: argparse.Namespace, layout: Layout, settings: Settings) -> Units:
    tz_s = float(settings.detector.get("tz_offset_s", 0.0))
    if layout.kind == "wide":
        return Units(kwh=args.kwh, wide_scale=1.0 if args.power_unit == "W" else 1000.0,
                     tz_s=tz_s)
    return Units(time_scale=1e-3 if args.time_unit == "ms" else 1.0,
                 power_scale=1000.0 if args.power_unit == "kW" else 1.0, tz_s=tz_s)


def _first_samples(sources: list[Source], units: Units) -> tuple[list[float], list[float]]:
    """Up to UNIT_SAMPLE (t, p) of the first input, as screen would score them."""
    ts: list[float] = []
    ps: list[float] = []
    src = sources[0]
    for b in batches(src, Problems()):
        lb = normalize(b, src.layout, units, Problems())
        ts.extend(lb.t[:UNIT_SAMPLE - len(ts)].tolist())
        ps.extend(lb.p[:UNIT_SAMPLE - len(ps)].tolist())
        if len(ts) >= UNIT_SAMPLE:
            break
    return ts, ps


def unit_problems(layout: Layout, ts: list[float], ps: list[float]) -> list[str]:
    """Unit mistakes the first samples show; messages, or [].

    Millisecond timestamps and kW in p_w are judged by ``replay.unit_mistake`` (one rule
    for both commands), on the values as screen would score them, so a declared
    --time-unit/--power-unit passes. Wide curves can also be watts in a kW layout, which
    replay's long layout never is: checked here.
    """
    from agent.replay import unit_mistake

    found = unit_mistake(ts, ps, ["%.0f" % t for t in ts])
    if found:
        return [found + " (or declare the units: --time-unit ms, --power-unit kW)"]
    if layout.kind == "wide" and ps:
        med = sorted(ps)[len(ps) // 2]
        if med > WIDE_W_MEDIAN:
            return ["the curve values have a median of %.6g kW: no home draws that; they "
                    "look like W (say --power-unit W)" % (med / 1000.0)]
    return []


def _driver_reads(paths: list[str]) -> bool:
    """Spark's inputs are files this process can open too, in the format Spark will read
    them as (it decides by the name: agent/screen/spark.py)."""
    from agent.screen.spark import reads_as_parquet

    if any("://" in p or not os.path.isfile(p) for p in paths):
        return False
    try:
        with open(paths[0], "rb") as f:
            parquet = f.read(4) == b"PAR1"
    except OSError:
        return False
    return parquet == reads_as_parquet(paths)


def _unit_check(layout: Layout, ts: list[float], ps: list[float], where: str,
                force: bool) -> list[str] | None:
    """The unit warnings to record, or None (said on stderr) when the run must stop."""
    err = sys.stderr
    found = unit_problems(layout, ts, ps)
    if found and not force:
        for m in found:
            err.write("loadwatch screen: %s: %s\n" % (where, m))
        err.write("loadwatch screen: nothing screened (pass --force to screen as given)\n")
        return None
    for m in found:
        err.write("loadwatch screen: warning (--force): %s\n" % m)
    return found


class Progress:
    """Meters done, samples/s and ETA on stderr: rewritten in place on a terminal, a line
    every 10 s otherwise (logs)."""

    def __init__(self, stream: TextIO, quiet: bool) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self.t0 = time.monotonic()
        self.last = 0.0

    def show(self, msg: str, force: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if not force and now - self.last < (1.0 if self.tty else 10.0):
            return
        self.last = now
        if self.tty:
            self.stream.write("\r\x1b[K" + msg)
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()

    def done(self) -> None:
        if not self.quiet and self.tty:
            self.stream.write("\n")


def _rate(n: float) -> str:
    return "%.0f k" % (n / 1e3) if n < 1e6 else "%.2f M" % (n / 1e6)


def _eta(s: float) -> str:
    if s != s or s < 0 or s > 1e7:
        return "?"
    return "%d s" % s if s < 120 else "%d min" % (s / 60) if s < 7200 else "%.1f h" % (s / 3600)


def screen_main(args: argparse.Namespace) -> int:
    if args.tz is not None and not -14.0 <= args.tz <= 14.0:
        return _fail("--tz %g is not a UTC offset (-14..14 hours)" % args.tz)
    if args.workers < 1:
        return _fail("--workers must be at least 1")
    try:
        settings = _settings(args)
    except (ValueError, OSError) as e:  # ConfigError is a ValueError
        msg = str(e)
        if args.config and args.config not in msg:
            msg = "%s: %s" % (args.config, msg)
        return _fail(msg)
    job = None
    pool = None
    try:
        if args.engine == "local":
            from agent.screen.local import Workers

            # Started first: the workers' own start-up runs while this process reads the
            # header and the unit-check rows.
            pool = Workers(args.workers)
        sources: list[Source] = []
        if args.engine == "local" or _driver_reads(args.inputs):
            # Files on this machine: the header and the unit check are read here, before
            # Spark's JVM starts (seconds of start-up not spent on a file with a unit
            # mistake, and two Spark jobs fewer).
            sources = [open_source(p) for p in args.inputs]
            layout = sources[0].layout
            for src in sources[1:]:
                if src.layout != layout:
                    return _fail("%s: layout differs from %s (all inputs of one run share "
                                 "a layout)" % (src.path, sources[0].path))
            units = _units(args, layout, settings)
            found = _unit_check(layout, *_first_samples(sources, units), sources[0].path,
                                args.force)
            if found is None:
                return 2
        if args.engine == "spark":
            from agent.screen.spark import SparkJob, SparkUnavailable

            try:
                job = SparkJob(args.inputs, args.master)
                if not sources:  # hdfs://, s3a://, directories: only Spark reads them
                    layout = job.layout()
            except SparkUnavailable as e:
                return _fail(str(e))
            if not sources:
                units = _units(args, layout, settings)
                found = _unit_check(layout, *job.sample(layout, units, UNIT_SAMPLE),
                                    args.inputs[0], args.force)
                if found is None:
                    return 2
            sources = []  # Spark reads the data itself
        return _run(args, settings, layout, units, sources, job, pool, found)
    except (InputError, LayoutError) as e:
        return _fail(str(e))
    finally:
        if job is not None:
            job.stop()
        if pool is not None:
            pool.close()


def _run(args: argparse.Namespace, settings: Settings, layout: Layout, units: Units,
         sources: list[Source], job: SparkJob | None, pool: Workers | None,
         found: list[str]) -> int:
    err = sys.stderr
    try:
        out = Outputs(args.out, args.top)
    except OSError as e:
        return _fail("%s: cannot write: %s" % (args.out, e.strerror or e))
    progress = Progress(err, args.quiet)
    t0 = time.monotonic()
    est = sum(estimate_rows(s) for s in sources) if sources else 0
    read_problems = Problems()

    def on_result(r: MeterResult, total: list[int]) -> None:
        out.add(r)
        el = time.monotonic() - t0
        rate = out.samples / el if el > 0 else 0.0
        left = (total[0] - out.samples) / rate if rate > 0 else float("nan")
        progress.show("screen: %d meters, %s samples, %s samples/s, ETA %s"
                      % (out.meters, _rate(out.samples), _rate(rate), _eta(left)))

    try:
        total = [0]
        workers = 0
        if job is not None:
            # (Spark does not say how many rows it will read: no ETA.)
            def waiting(done: int, parts: int) -> None:
                progress.show("screen: spark: %d of %d partitions scored, %.0f s"
                              % (done, parts, time.monotonic() - t0))

            for r in job.results(layout, units, settings, read_problems, waiting):
                on_result(r, total)
        elif pool is not None:
            workers = args.workers
            spill_dir = tempfile.mkdtemp(prefix=".spill-", dir=args.out)

            def on_part(results: list[MeterResult]) -> None:
                for r in results:
                    on_result(r, total)

            try:
                parts = _partition(pool, sources, units, est, spill_dir, read_problems,
                                   progress, total)
                pool.run(parts, settings, on_part)
            finally:
                shutil.rmtree(spill_dir, ignore_errors=True)
    except InputError as e:
        progress.done()
        return _fail(str(e))
    progress.done()
    elapsed = time.monotonic() - t0
    out.problems.add(read_problems)
    if out.samples == 0:
        out.close({"inputs": list(args.inputs), "time_s": round(elapsed, 3)})
        return _fail("%s: no usable samples (%d rows could not be read)"
                     % (", ".join(args.inputs), out.problems.bad_rows))
    ranked = out.ranked()
    summary = {
        "inputs": list(args.inputs), "layout": layout.kind,
        "points_per_day": layout.points or None, "engine": args.engine,
        "workers": workers or None, "master": args.master,
        "time_s": round(elapsed, 3),
        "samples_per_s": round(out.samples / elapsed, 1) if elapsed > 0 else None,
        "unit_warnings": found,
        "settings": {"detector": settings.detector, "policy": settings.policy},
    }
    out.close(summary)
    _report(out, ranked, elapsed, args, err)
    return 0


def _partition(pool: Workers, sources: list[Source], units: Units, est: int,
               spill_dir: str, problems: Problems, progress: Progress, total: list[int]
               ) -> list[list[str]]:
    from agent.screen.local import part_count

    def on_rows(path: str, rows: int) -> None:
        progress.show("screen: reading %s: %s samples" % (path, _rate(rows)))
        total[0] = rows

    return pool.partition(sources, units, part_count(est, pool.workers), spill_dir,
                          problems, on_rows)


def _report(out: Outputs, ranked: list[MeterResult], elapsed: float,
            args: argparse.Namespace, err: TextIO) -> None:
    from agent.replay import iso_utc

    w = sys.stdout.write
    w("screened %d meters, %d samples in %.1f s (%s samples/s): %d meters raised alerts\n"
      % (out.meters, out.samples, elapsed, _rate(out.samples / elapsed if elapsed else 0),
         out.alerted))
    if ranked:
        w("%-4s %-20s %6s %-20s %6s  %s\n" % ("rank", "meter", "max", "at", "alerts",
                                             "evidence at the maximum"))
        for i, r in enumerate(ranked, 1):
            at = iso_utc(r.max_score_t) if r.max_score_t == r.max_score_t else "-"
            w("%-4d %-20s %6.1f %-20s %6d  %s\n" % (i, r.meter[:20], r.max_score, at,
                                                   r.alerts_raised, r.summary[:90]))
    w("outputs in %s: alerts.parquet, alerts.csv, meters.parquet, summary.json\n" % args.out)
    for m in out.problems.messages():
        err.write("loadwatch screen: input: %s\n" % m)
