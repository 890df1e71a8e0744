"""``loadwatch replay FILE.csv``: run the agent's detector and policy over a CSV of readings.

So anyone can score their own data with exactly what the agent runs: every meter in the
file goes through its own ``agent.signature.Detector`` and ``agent.policy.Policy`` (default
settings, or the ``[detector]`` / ``[policy]`` tables of ``--config``), and every alert
event is printed as one JSON object per line::

    {"kind": "raised", "meter": "m1", "t": "2024-03-02T04:00:00Z", "score": 71.3,
     "evidence": {"summary": "...", ...}}

Input: a header ``meter,timestamp,p_w`` plus an optional ``pf`` column (any order).
``timestamp`` is ISO-8601 (``2024-03-02T04:00:00Z``, ``...+10:00``, or naive = UTC) or UNIX
seconds. Meters may be interleaved or grouped; within a meter rows must be in time order.
``FILE`` may be ``-`` (stdin) or gzip-compressed (``.gz``).

Malformed rows are reported on stderr with their line number and skipped; a missing
file, a bad header, a file with no valid row, or values in the wrong units (millisecond
timestamps, kW in ``p_w``, found from the first rows; ``--force`` scores anyway) stop the
run (exit 2). ``--summary`` adds one line per meter:
``{"kind": "summary", "meter": ..., "max_score": ..., "samples": ...}``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import itertools
import json
import math
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import IO, Any, TextIO

REQUIRED = ("meter", "timestamp", "p_w")
OPTIONAL = ("pf",)
MAX_REPORTED = 100  # malformed rows reported one by one; the rest are counted
SNIFF_ROWS = 5000  # rows read ahead to check the file's units before scoring
# UNIX seconds after 2100-01-01: a millisecond (or microsecond) timestamp read as seconds.
T_FUTURE = 4102444800.0
# A household's median draw is hundreds of watts; a median below this, with decimals,
# is kilowatts written into the p_w column.
KW_MEDIAN_W = 20.0


def unit_mistake(times: list[float], powers: list[float], time_texts: list[str]) -> str:
    """The unit mistake the data shows ("" if none): millisecond timestamps, or kW in
    ``p_w``. Decided from the values, never from the column names."""
    if not times:
        return ""
    late = sum(1 for t in times if t >= T_FUTURE)
    if late * 2 > len(times):
        sample = next(x for x, t in zip(time_texts, times) if t >= T_FUTURE)
        return ("timestamps such as %s fall after the year 2100: they look like "
                "milliseconds (divide by 1000) where UNIX seconds are expected"
                % sample)
    ordered = sorted(powers)
    median = ordered[len(ordered) // 2]
    fractional = sum(1 for p in powers if p != int(p))
    if len(powers) >= 10 and 0 < median < KW_MEDIAN_W and fractional * 2 > len(powers):
        return ("p_w has a median of %.3g with decimals: that looks like kW, but p_w is "
                "in watts (multiply by 1000)" % median)
    return ""


def add_replay_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.csv",
                   help="CSV with header meter,timestamp,p_w[,pf]; '-' = stdin; .gz ok")
    p.add_argument("--summary", action="store_true",
                   help="also print max score and sample count per meter at the end")
    p.add_argument("--tz", type=float, default=None, metavar="HOURS",
                   help="local time offset east of UTC for the night/evening features "
                   "(default: the config's tz_offset_hours, else 0)")
    p.add_argument("-c", "--config", default=None, metavar="FILE",
                   help="take [detector] and [policy] settings from this loadwatch config")
    p.add_argument("--plot", default=None, metavar="DIR",
                   help="write one SVG chart per meter that raised an alert into DIR "
                   "(load, floor, baseline, score, alert spans; as on the status page)")
    p.add_argument("--force", action="store_true",
                   help="score the file even when its values look like the wrong units "
                   "(millisecond timestamps, kW in p_w)")


def iso_utc(t: float) -> str:
    """UNIX seconds -> ``YYYY-MM-DDTHH:MM:SS[.fff]Z``."""
    whole = math.floor(t)
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    frac = t - whole
    if frac >= 0.0005:
        s += (".%03d" % min(999, round(frac * 1000)))
    return s + "Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_time(s: str) -> float:
    """UNIX seconds or ISO-8601 (offset optional, naive = UTC) -> UNIX seconds.

    Raises ValueError with a short reason.
    """
    s = s.strip()
    if not s:
        raise ValueError("empty timestamp")
    try:
        t = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(t):
            raise ValueError("timestamp %r is not finite" % s)
        return t
    iso = s[:-1] + "+00:00" if s[-1] in "Zz" else s
    try:
        d = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError("timestamp %r is neither ISO-8601 nor UNIX seconds" % s) from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return (d - _EPOCH).total_seconds()


def _open(path: str) -> IO[str]:
    if path == "-":
        raw = sys.stdin.buffer
        head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
        if head == b"\x1f\x8b":
            return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8", newline="")
        return io.TextIOWrapper(raw, encoding="utf-8", newline="")
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _event_line(ev: Any) -> str:
    return json.dumps({"kind": ev.kind, "meter": ev.meter, "t": iso_utc(ev.t),
                       "score": round(ev.score, 2), "evidence": ev.evidence},
                      separators=(", ", ": "), default=str)


class _Rows:
    """The CSV being replayed: its header checked once, then its valid rows, each bad
    row reported (the first ``MAX_REPORTED``) and counted, never scored."""

    def __init__(self, reader: Any, name: str, err: TextIO):
        self.reader = reader
        self.name = name
        self.err = err
        self.bad = 0

    def header(self) -> bool:
        """Read and check the header line; False (said on stderr) when it is unusable."""
        name, err = self.name, self.err
        try:
            header = next(self.reader)
        except StopIteration:
            print("loadwatch replay: %s: empty file (expected a header line "
                  "meter,timestamp,p_w[,pf])" % name, file=err)
            return False
        except (UnicodeDecodeError, OSError, EOFError, csv.Error) as e:
            print("loadwatch replay: %s: cannot read: %s" % (name, e), file=err)
            return False
        cols = [h.strip().lower() for h in header]
        if cols and cols[0].startswith("\ufeff"):
            cols[0] = cols[0][1:]
        missing = [c for c in REQUIRED if c not in cols]
        unknown = [c for c in cols if c not in REQUIRED + OPTIONAL]
        if missing or unknown or len(set(cols)) != len(cols):
            why = []
            if missing:
                why.append("missing %s" % ", ".join(missing))
            if unknown:
                why.append("unknown column %s" % ", ".join(repr(c) for c in unknown))
            if len(set(cols)) != len(cols):
                why.append("a column appears twice")
            print("loadwatch replay: %s: line 1: bad header %r (%s); expected "
                  "meter,timestamp,p_w with an optional pf column"
                  % (name, ",".join(header), "; ".join(why)), file=err)
            return False
        self.i_m, self.i_t, self.i_p = (cols.index("meter"), cols.index("timestamp"),
                                        cols.index("p_w"))
        self.i_pf = cols.index("pf") if "pf" in cols else -1
        self.width = len(cols)
        return True

    def malformed(self, line: int, why: str) -> None:
        self.bad += 1
        if self.bad <= MAX_REPORTED:
            self.err.write("loadwatch replay: %s: line %d: %s; skipped\n"
                           % (self.name, line, why))

    def __iter__(self) -> Iterator[tuple[str, float, float, float | None, int, str]]:
        for row in self.reader:
            line = self.reader.line_num
            if len(row) != self.width:
                if row:  # a blank line is not an error
                    self.malformed(line, "%d fields, expected %d" % (len(row), self.width))
                continue
            parsed = self._parse(row, line)
            if parsed is not None:
                yield parsed

    def _parse(self, row: list[str],
               line: int) -> tuple[str, float, float, float | None, int, str] | None:
        mid = row[self.i_m].strip()
        if not mid:
            self.malformed(line, "empty meter id")
            return None
        try:
            t = parse_time(row[self.i_t])
        except ValueError as e:
            self.malformed(line, str(e))
            return None
        try:
            p = float(row[self.i_p])
        except ValueError:
            self.malformed(line, "p_w %r is not a number" % row[self.i_p])
            return None
        if not math.isfinite(p):
            self.malformed(line, "p_w %r is not a finite number" % row[self.i_p])
            return None
        pf = None
        if self.i_pf >= 0 and row[self.i_pf].strip():
            try:
                pf = float(row[self.i_pf])
            except ValueError:
                self.malformed(line, "pf %r is not a number" % row[self.i_pf])
                return None
            if not 0.0 <= pf <= 1.0:
                self.malformed(line, "pf %r is outside 0..1" % row[self.i_pf])
                return None
        return mid, t, p, pf, line, row[self.i_t].strip()


def _usage_error(args: argparse.Namespace, err: TextIO) -> tuple[dict, dict] | None:
    """The detector and policy settings, or None (said on stderr) when the arguments or
    the config are unusable: settings the core rejects are a usage error, not a crash."""
    if args.tz is not None and not -14.0 <= args.tz <= 14.0:
        print("loadwatch replay: --tz %g is not a UTC offset (-14..14 hours)" % args.tz,
              file=err)
        return None
    from agent.settings import replay_settings

    try:
        return replay_settings(args.config, args.tz)
    except ValueError as e:  # ConfigError is a ValueError
        print("loadwatch replay: %s" % e, file=err)
        return None


def replay_main(args: argparse.Namespace) -> int:
    """Run the replay; 0 when the file was read (malformed rows only warn), 2 on bad input."""
    name = "stdin" if args.file == "-" else args.file
    err = sys.stderr
    settings = _usage_error(args, err)
    if settings is None:
        return 2
    try:
        f = _open(args.file)
    except FileNotFoundError:
        print("loadwatch replay: %s: no such file" % name, file=err)
        return 2
    except OSError as e:
        print("loadwatch replay: %s: cannot read: %s" % (name, e.strerror or e), file=err)
        return 2
    meters: dict = {}
    plots: dict = {}  # meter -> (MeterPlot, detector), only with --plot
    rows = _Rows(csv.reader(f), name, err)
    try:
        with f:
            if not rows.header():
                return 2
            if not _score(args, rows, settings, meters, plots):
                return 2
    except BrokenPipeError:  # `loadwatch replay big.csv | head`: the reader has gone
        _quiet_stdout()
        return 0
    except (UnicodeDecodeError, OSError, EOFError, csv.Error) as e:
        # A truncated .gz or binary garbage part way: report, keep what was scored.
        print("loadwatch replay: %s: read error after %d meters: %s" % (name, len(meters), e),
              file=err)
        rows.bad += 1
    return _finish(args, rows, settings, meters, plots)


def _score(args: argparse.Namespace, rows: _Rows, settings: tuple[dict, dict],
           meters: dict, plots: dict) -> bool:
    """Score every valid row, printing alert events as they happen; False when the file's
    units are wrong (said on stderr) and --force was not given."""
    from agent.scoring import MeterScorer

    if args.plot:
        from agent.web.plot import MeterPlot
    name, err = rows.name, rows.err
    valid = iter(rows)
    # The first rows decide whether the file's units are what replay expects: a unit
    # mistake scores every meter 0, which looks like a clean bill of health.
    head = list(itertools.islice(valid, SNIFF_ROWS))
    mistake = unit_mistake([r[1] for r in head], [r[2] for r in head], [r[5] for r in head])
    if mistake and not args.force:
        print("loadwatch replay: %s: %s; fix the file, or run with --force to score "
              "it as it is" % (name, mistake), file=err)
        return False
    if mistake:
        print("loadwatch replay: %s: warning: %s (--force: scoring anyway)"
              % (name, mistake), file=err)
    write = sys.stdout.write
    for mid, t, p, pf, line, ts_text in itertools.chain(head, valid):
        m = meters.get(mid)
        if m is None:
            m = meters[mid] = MeterScorer(mid, settings[0], settings[1])
            if args.plot:
                plots[mid] = (MeterPlot(), m.detector)
        if t < m.last_t:
            rows.malformed(line, "timestamp %s is earlier than the previous row of meter %s "
                           "(rows must be in time order per meter)" % (ts_text, mid))
            continue
        events = m.feed(t, p, pf)
        for ev in events:
            write(_event_line(ev) + "\n")
        if args.plot:
            plot = plots[mid][0]
            plot.add(t, p, m.detector)
            for ev in events:
                plot.on_event(ev)
    return True


def _finish(args: argparse.Namespace, rows: _Rows, settings: tuple[dict, dict],
            meters: dict, plots: dict) -> int:
    """The counts of what was skipped, the charts (--plot) and the summaries."""
    name, err, out = rows.name, rows.err, sys.stdout
    if rows.bad > MAX_REPORTED:
        err.write("loadwatch replay: %s: %d malformed rows in all (first %d shown)\n"
                  % (name, rows.bad, MAX_REPORTED))
    if not meters:
        print("loadwatch replay: %s: no valid row (%d malformed): nothing was scored"
              % (name, rows.bad), file=err)
        return 2
    if args.plot:
        from agent.web.plot import write_plots

        try:
            written = write_plots(args.plot, plots, settings[0].get("tz_offset_s", 0.0),
                                  float(settings[1]["raise_at"]))
        except OSError as e:
            print("loadwatch replay: --plot %s: %s" % (args.plot, e.strerror or e), file=err)
            return 1
        err.write("loadwatch replay: %d chart(s) written to %s\n" % (len(written), args.plot))
    try:
        if args.summary:
            for mid, m in meters.items():
                out.write(json.dumps({"kind": "summary", "meter": mid,
                                      "max_score": round(m.max_score, 2),
                                      "samples": m.samples}, separators=(", ", ": ")) + "\n")
        out.flush()
    except BrokenPipeError:
        _quiet_stdout()
    return 0


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
