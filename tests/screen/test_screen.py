"""``loadwatch screen``: same events as replay on every engine and layout, bad input counted.

The engines run as the user runs them (``python -m agent.cli screen`` in a subprocess: a
process pool and a Spark JVM are the command's own children, not this test's). Inputs are
the golden replay cases (a miner among homes, with power factor) and, where present, the
real SGSC homes converted here to the long and the wide layouts (never committed).
"""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent.screen import local
from agent.screen.meter import Settings, screen_meter

# Whole screening runs on real homes (local engine and Spark): `make test` only.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STREET = ROOT / "tests" / "golden" / "replay" / "street-s9" / "input.csv"


def cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", *argv], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)


def replay_events(path: Path, *extra: str) -> list[dict]:
    r = cli("replay", str(path), *extra)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def screen(path: Path | list[Path], out: Path, *extra: str) -> tuple[list[dict], dict]:
    paths = [str(p) for p in (path if isinstance(path, list) else [path])]
    # Spark's JVM start alone took minutes on a saturated 2-core machine: a generous bound.
    r = cli("screen", *paths, "--out", str(out), "--quiet", *extra, timeout=900)
    assert r.returncode == 0, r.stderr
    table = pq.read_table(out / "alerts.parquet").to_pylist()
    events = [{"kind": e["kind"], "meter": e["meter"], "t": e["time"], "score": e["score"],
               "evidence": json.loads(e["evidence"])} for e in table]
    with open(out / "summary.json") as f:
        return events, json.load(f)


def norm(events: list[dict]) -> list[tuple]:
    """Events in one order, evidence compared as JSON values (replay prints them sorted
    by meter only as they happen)."""
    return sorted((e["meter"], e["t"], e["kind"], e["score"],
                   json.dumps(e["evidence"], sort_keys=True, default=str)) for e in events)


def write_milliseconds(rows: list[dict], path: Path) -> Path:
    """The rows again with UNIX timestamps in milliseconds (a unit mistake screen stops on)."""
    with open(path, "w") as f:
        f.write("meter,timestamp,p_w\n")
        for x in rows:
            t = datetime.fromisoformat(x["timestamp"].replace("Z", "+00:00"))
            f.write("%s,%d,%s\n" % (x["meter"], int(t.timestamp()) * 1000, x["p_w"]))
    return path


@pytest.mark.slow
def test_replay_local_and_spark_give_identical_events(tmp_path: Path) -> None:
    want = replay_events(STREET)
    assert {e["kind"] for e in want} >= {"raised"}  # the miner is there to be found
    one, s1 = screen(STREET, tmp_path / "one", "--workers", "1")
    two, s2 = screen(STREET, tmp_path / "two", "--workers", "2")
    spark, s3 = screen(STREET, tmp_path / "spark", "--engine", "spark", "--master", "local[2]")
    assert norm(one) == norm(want)
    assert norm(two) == norm(want)
    assert norm(spark) == norm(want)
    assert s1["samples"] == s2["samples"] == s3["samples"] == 3072
    assert s3["engine"] == "spark"
    meters = pq.read_table(tmp_path / "spark" / "meters.parquet").to_pylist()
    local_meters = pq.read_table(tmp_path / "one" / "meters.parquet").to_pylist()
    assert sorted(meters, key=lambda m: m["meter"]) == \
        sorted(local_meters, key=lambda m: m["meter"])


def test_spark_reads_what_the_driver_cannot_open(tmp_path: Path) -> None:
    """A directory of Parquet part files (as Spark and Hive write them) is read by Spark
    alone, header, unit-check rows and data, and gives replay's events; a local file with
    a unit mistake is refused before Spark's JVM is started at all."""
    want = norm(replay_events(STREET))
    rows = list(csv.DictReader(open(STREET, newline="")))
    parts = tmp_path / "export"
    parts.mkdir()
    half = len(rows) // 2
    for i, chunk in enumerate((rows[:half], rows[half:])):
        pq.write_table(pa.table({"meter": [x["meter"] for x in chunk],
                                 "timestamp": [x["timestamp"] for x in chunk],
                                 "p_w": [float(x["p_w"]) for x in chunk],
                                 "pf": [float(x["pf"]) for x in chunk]}),
                       parts / ("part-%05d.parquet" % i))
    got, summary = screen(parts, tmp_path / "o", "--engine", "spark", "--master", "local[2]")
    assert norm(got) == want and summary["samples"] == len(rows)
    ms = write_milliseconds(rows, tmp_path / "ms.csv")
    r = cli("screen", str(ms), "--out", str(tmp_path / "m"), "--engine", "spark",
            "--master", "local[2]")
    assert r.returncode == 2 and "look like milliseconds" in r.stderr
    assert "log4j" not in r.stderr and "Spark" not in r.stderr  # no JVM was started


def test_outputs_and_ranked_list(tmp_path: Path) -> None:
    r = cli("screen", str(STREET), "--out", str(tmp_path), "--workers", "1", "--top", "5")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("screened 2 meters, 3072 samples")
    assert lines[2].split()[:2] == ["1", "home-miner"]  # ranked first
    meters = {m["meter"]: m for m in pq.read_table(tmp_path / "meters.parquet").to_pylist()}
    miner = meters["home-miner"]
    assert miner["max_score"] >= 72 and miner["alerts_raised"] == 1
    assert miner["schedule"] == "24/7" and miner["interval_s"] == 900.0
    assert miner["coverage"] == 1.0 and miner["days_scored"] > 5
    assert meters["home-plain"]["alerts_raised"] == 0
    with open(tmp_path / "alerts.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [x["kind"] for x in rows] == \
        [e["kind"] for e in pq.read_table(tmp_path / "alerts.parquet").to_pylist()]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["meters_alerted"] == 1 and summary["events"]["raised"] == 1
    assert summary["samples_per_s"] > 0 and summary["layout"] == "long"


def test_parquet_and_partitioned_spill_give_replays_events(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Long Parquet input, and the external partition cut into many small spill files."""
    want = norm(replay_events(STREET))
    rows = list(csv.DictReader(open(STREET, newline="")))
    table = pa.table({"meter": [x["meter"] for x in rows],
                      "timestamp": [x["timestamp"] for x in rows],
                      "p_w": [float(x["p_w"]) for x in rows],
                      "pf": [float(x["pf"]) for x in rows]})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=500)
    got, _ = screen(tmp_path / "in.parquet", tmp_path / "pq", "--workers", "1")
    assert norm(got) == want
    # In-process, with a spill file per 100 rows: every meter still lands in one file.
    monkeypatch.setattr(local, "ROWS_PER_PART", 100)
    import argparse

    from agent.screen.cli import add_screen_arguments, screen_main

    p = argparse.ArgumentParser()
    add_screen_arguments(p)
    assert screen_main(p.parse_args([str(STREET), "--out", str(tmp_path / "k"),
                                     "--workers", "1", "--quiet"])) == 0
    ev = pq.read_table(tmp_path / "k" / "alerts.parquet").to_pylist()
    assert norm([{"kind": e["kind"], "meter": e["meter"], "t": e["time"],
                  "score": e["score"], "evidence": json.loads(e["evidence"])}
                 for e in ev]) == want


def test_pass_one_in_the_workers_keeps_every_meters_rows_in_input_order(
        tmp_path: Path) -> None:
    """Parquet with several row groups and two workers: the workers partition row-group
    ranges side by side, and each part, its files read in order, still holds every row
    of a meter in the input's order (out-of-order rows included: screen sorts them later,
    keeping the first of two equal times, so the order decides which one is kept)."""
    rows = list(csv.DictReader(open(STREET, newline="")))
    rows[10], rows[300] = rows[300], rows[10]  # out of time order within a meter
    table = pa.table({"meter": [x["meter"] for x in rows],
                      "timestamp": [x["timestamp"] for x in rows],
                      "p_w": [float(x["p_w"]) + i * 1e-6 for i, x in enumerate(rows)]})
    path = tmp_path / "in.parquet"
    pq.write_table(table, path, row_group_size=400)  # 8 row groups
    spill = tmp_path / "spill"
    spill.mkdir()
    # In a process of its own, as screen runs it (a process pool leaves multiprocessing's
    # resource tracker behind in the process that made it).
    script = (
        "import json, sys\n"
        "from agent.screen import local\n"
        "from agent.screen.layout import Units\n"
        "from agent.screen.problems import Problems\n"
        "from agent.screen.sources import open_source\n"
        "if __name__ == '__main__':\n"
        "    with local.Workers(2) as pool:\n"
        "        parts = pool.partition([open_source(sys.argv[1])], Units(), 3, sys.argv[2],\n"
        "                               Problems(), lambda path, rows: None)\n"
        "    print(json.dumps(parts))\n")
    r = subprocess.run([sys.executable, "-c", script, str(path), str(spill)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    parts = json.loads(r.stdout)
    assert any(len(files) > 1 for files in parts)  # several workers' jobs wrote a part
    want: dict[str, list[float]] = defaultdict(list)
    for x in table.to_pylist():
        want[x["meter"]].append(x["p_w"])
    got: dict[str, list[float]] = defaultdict(list)
    for files in parts:
        for f in files:
            with pa.OSFile(f, "rb") as fh:
                for x in pa.ipc.open_stream(fh).read_all().to_pylist():
                    got[x["meter"]].append(x["p"])
    assert got == want


BAD_CSV = """meter,timestamp,p_w,pf
a,1000,100,0.9
a,3000,100,0.9
a,2000,100,0.9
a,2000,150,0.9
a,4000,-5,0.9
a,5000,5e7,0.9
a,6000,100,1.7
a,400000,100,0.9
a,x,100,0.9
a,7000,lots,0.9
,8000,100,0.9
a,9000
single,1000,200,
"""


def test_bad_input_is_counted_and_the_run_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    r = cli("screen", str(path), "--out", str(tmp_path / "o"), "--workers", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["problems"] == {
        "bad_rows": 4,  # x, lots, empty meter id, too few fields
        "bad_points": 0, "unsorted_rows": 1, "unsorted_meters": 1,
        "duplicate_rows": 1,  # the second 2000
        "negative_values": 1, "absurd_values": 1, "bad_pf": 1, "dst_days": 0,
        "missing_days": 4,  # 7000 -> 400000 s is 4.6 days without data
        "short_meters": 1, "failed_meters": 0}
    assert summary["meters"] == 2 and summary["samples"] == 5 + 1
    assert "1 rows repeating a meter's timestamp" in r.stderr
    assert "rows that could not be read" in r.stderr


def test_a_failing_meter_is_reported_not_raised() -> None:
    from agent.policy import default_policy_settings
    from agent.signature import default_settings

    s = Settings(default_settings(), default_policy_settings())
    r = screen_meter("m", np.array([0.0, 900.0]), np.array([1.0, -1.0, 2.0]), None, s)
    assert r.error.startswith("IndexError") and r.problems.failed_meters == 1


def test_unit_mistakes_stop_unless_forced_or_declared(tmp_path: Path) -> None:
    rows = list(csv.DictReader(open(STREET, newline="")))
    ms = write_milliseconds(rows, tmp_path / "ms.csv")
    kw = tmp_path / "kw.csv"
    with open(kw, "w") as f:
        f.write("meter,timestamp,p_w\n")
        for x in rows:
            f.write("%s,%s,%r\n" % (x["meter"], x["timestamp"], float(x["p_w"]) / 1000.0))
    r = cli("screen", str(ms), "--out", str(tmp_path / "a"))
    assert r.returncode == 2
    assert "look like milliseconds" in r.stderr and "--time-unit ms" in r.stderr
    assert not (tmp_path / "a" / "summary.json").exists()
    r = cli("screen", str(kw), "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "looks like kW" in r.stderr and "--power-unit kW" in r.stderr
    # Declared, they give the right events; forced, the run goes on and says so.
    want = {(e["meter"], e["kind"]) for e in replay_events(STREET)}
    got, _ = screen(ms, tmp_path / "c", "--time-unit", "ms", "--workers", "1")
    assert {(e["meter"], e["kind"]) for e in got} == want
    got, _ = screen(kw, tmp_path / "d", "--power-unit", "kW", "--workers", "1")
    assert {(e["meter"], e["kind"]) for e in got} == want
    r = cli("screen", str(kw), "--out", str(tmp_path / "e"), "--force", "--quiet")
    assert r.returncode == 0 and "warning (--force): p_w has a median" in r.stderr


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    r = cli("screen", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.strip().endswith("nope.csv: no such file")
    bad = tmp_path / "bad.csv"
    bad.write_text("customer,when,kwh\n1,2,3\n")
    r = cli("screen", str(bad), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "neither meter,timestamp,p_w[,pf] nor meter,date,p1..p96" \
        in r.stderr and "Traceback" not in r.stderr


def _wide_rows(long_rows: list[tuple[str, float, float]], points: int
               ) -> list[list[str]]:
    """(meter, t, kW) -> meter,date,p1..pN rows in kW (UTC dates)."""
    step = 86400 // points
    days: dict[tuple[str, int], list[str]] = defaultdict(lambda: [""] * points)
    for m, t, kw in long_rows:
        days[(m, int(t // 86400))][int(t % 86400) // step] = repr(kw)
    out = []
    for (m, d), vals in sorted(days.items()):
        date = datetime.fromtimestamp(d * 86400, timezone.utc).strftime("%Y-%m-%d")
        out.append([m, date, *vals])
    return out


def test_wide_daily_curves_match_the_long_layout(tmp_path: Path) -> None:
    rows = list(csv.DictReader(open(STREET, newline="")))
    long_rows = []
    for x in rows:
        t = datetime.fromisoformat(x["timestamp"].replace("Z", "+00:00")).timestamp()
        long_rows.append((x["meter"], t, float(x["p_w"]) / 1000.0))
    lp = tmp_path / "long.csv"
    with open(lp, "w") as f:
        f.write("meter,timestamp,p_w\n")
        for m, t, kw in long_rows:
            f.write("%s,%d,%r\n" % (m, t, kw * 1000.0))
    wp = tmp_path / "wide.csv.gz"
    wide = _wide_rows(long_rows, 96)
    wide[3] = wide[3][:-4] + ["", "", "", ""]  # a 92-point day (clock change)
    with gzip.open(wp, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(["meter", "date", *["p%d" % i for i in range(1, 97)]])
        w.writerows(wide)
    want, s_long = screen(lp, tmp_path / "l", "--workers", "1")
    got, s_wide = screen(wp, tmp_path / "w", "--workers", "1")
    assert s_wide["layout"] == "wide" and s_wide["points_per_day"] == 96
    assert s_wide["problems"]["dst_days"] == 1
    assert s_wide["samples"] == s_long["samples"] - 4
    assert {(e["meter"], e["kind"]) for e in got} == {(e["meter"], e["kind"]) for e in want}
    watts = tmp_path / "watts.csv"  # the same curves in W under a kW layout
    with open(watts, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["meter", "date", *["p%d" % i for i in range(1, 97)]])
        w.writerows([r[:2] + [repr(float(v) * 1000.0) if v else "" for v in r[2:]]
                     for r in wide])
    r = cli("screen", str(watts), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "look like W (say --power-unit W)" in r.stderr
    got, _ = screen(watts, tmp_path / "y", "--power-unit", "W", "--workers", "1")
    assert {(e["meter"], e["kind"]) for e in got} == {(e["meter"], e["kind"]) for e in want}


def _sgsc(data_dir: Path, limit_meters: int, days: int) -> list[tuple[str, float, float]]:
    """SGSC homes as (meter, UNIX s, kWh), de-duplicated and in time order per meter."""
    per: dict[str, dict[float, float]] = defaultdict(dict)
    with gzip.open(data_dir / "sgsc25_halfhourly.csv.gz", "rt", newline="") as f:
        r = csv.reader(f)
        next(r)
        for m, ts, kwh in r:
            if m not in per and len(per) >= limit_meters:
                continue
            t = datetime.fromisoformat(ts).replace(tzinfo=timezone.utc).timestamp()
            per[m].setdefault(t, float(kwh))
    out = []
    for m, d in per.items():
        ts = sorted(d)
        for t in ts:
            if t < ts[0] + days * 86400:
                out.append((m, t, d[t]))
    return out


def test_real_homes_long_and_wide(tmp_path: Path, shared_data: Path) -> None:
    """Real SGSC homes (30-min kWh): replay, screen long and screen wide (--kwh) agree."""
    data = _sgsc(shared_data, 5, 150)
    lp = tmp_path / "sgsc_long.csv"
    with open(lp, "w") as f:
        f.write("meter,timestamp,p_w\n")
        for m, t, kwh in data:
            f.write("%s,%s,%r\n" % (m, datetime.fromtimestamp(t, timezone.utc)
                                    .strftime("%Y-%m-%dT%H:%M:%SZ"), kwh * 2000.0))
    wp = tmp_path / "sgsc_wide.csv"
    with open(wp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["meter", "date", *["p%d" % i for i in range(1, 49)]])
        w.writerows(_wide_rows(data, 48))
    want = replay_events(lp, "--summary")
    summary = {e["meter"]: e for e in want if e["kind"] == "summary"}
    events = [e for e in want if e["kind"] != "summary"]
    got_long, s_long = screen(lp, tmp_path / "l", "--workers", "2")
    got_wide, s_wide = screen(wp, tmp_path / "w", "--kwh", "--workers", "2")
    assert norm(got_long) == norm(events)
    assert norm(got_wide) == norm(events)
    assert s_long["samples"] == s_wide["samples"] == len(data)
    meters = {m["meter"]: m for m in pq.read_table(tmp_path / "w" / "meters.parquet")
              .to_pylist()}
    assert set(meters) == set(summary) and len(meters) == 5
    for mid, m in meters.items():
        assert m["max_score"] == summary[mid]["max_score"]
        assert m["samples"] == summary[mid]["samples"] and m["interval_s"] == 1800.0
