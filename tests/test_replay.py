"""``loadwatch replay``: golden cases, malformed rows, summary, gzip and stdin, bad input.

Golden cases live in tests/golden/replay/<case>/ (input.csv made by generate.py from the
seeded load models, expected.jsonl from a reviewed run). The comparison is deliberately
robust to detector retuning: the same meters must raise (and nothing else may), each first
``raised`` within 24 h of the recorded one, every event must carry the evidence summary, and
the per-meter sample counts must match exactly. Regenerate with
``.venv/bin/python tests/golden/replay/generate.py --expected`` after a deliberate change.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.replay import add_replay_arguments, iso_utc, parse_time, replay_main

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "replay"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input.csv").is_file())


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, list[dict], str]:
    p = argparse.ArgumentParser()
    add_replay_arguments(p)
    rc = replay_main(p.parse_args(list(argv)))
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines() if line.strip()], err


def first_raised(lines: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for d in lines:
        if d["kind"] == "raised" and d["meter"] not in out:
            out[d["meter"]] = parse_time(d["t"])
    return out


def test_golden_cases_exist() -> None:
    assert len(CASES) >= 3


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, capsys: pytest.CaptureFixture) -> None:
    d = GOLDEN / case
    expected = [json.loads(x) for x in (d / "expected.jsonl").read_text().splitlines() if x]
    rc, got, err = run(capsys, str(d / "input.csv"), "--summary", "--tz", "10")
    assert rc == 0, err
    assert err == ""
    want_raised, got_raised = first_raised(expected), first_raised(got)
    assert want_raised, "a golden case must contain a clear miner"
    assert set(got_raised) == set(want_raised)
    for meter, t in want_raised.items():
        assert abs(got_raised[meter] - t) <= 24 * 3600.0, (meter, iso_utc(got_raised[meter]))
    summaries = {x["meter"]: x for x in got if x["kind"] == "summary"}
    want_summaries = {x["meter"]: x for x in expected if x["kind"] == "summary"}
    assert list(summaries) == list(want_summaries)  # first-appearance order
    for meter, s in want_summaries.items():
        assert summaries[meter]["samples"] == s["samples"]
        assert 0.0 <= summaries[meter]["max_score"] <= 100.0
    # the clear non-miner in each case stays quiet
    quiet = set(want_summaries) - set(want_raised)
    assert quiet
    for d2 in got:
        assert d2["kind"] in ("raised", "updated", "cleared", "summary")
        if d2["kind"] != "summary":
            assert d2["meter"] not in quiet
            assert set(d2) == {"kind", "meter", "t", "score", "evidence"}
            assert d2["t"].endswith("Z")
            assert isinstance(d2["evidence"].get("summary"), str) and d2["evidence"]["summary"]


def test_without_summary_only_events(capsys: pytest.CaptureFixture) -> None:
    rc, got, _ = run(capsys, str(GOLDEN / "street-s9" / "input.csv"), "--tz", "10")
    assert rc == 0
    assert got and all(d["kind"] != "summary" for d in got)


def test_malformed_rows_reported_with_line_numbers(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    rows = ["meter,timestamp,p_w,pf",                  # line 1
            "m1,2024-01-01T00:00:00Z,500,0.95",         # 2 ok
            "m1,2024-01-01T00:15:00Z,500",              # 3 too few fields
            "m1,yesterday,500,0.9",                     # 4 bad timestamp
            "m1,2024-01-01T00:30:00Z,abc,0.9",          # 5 p_w not a number
            "m1,2024-01-01T00:45:00Z,500,1.5",          # 6 pf out of range
            ",2024-01-01T01:00:00Z,500,0.9",            # 7 empty meter
            "m1,2023-12-31T23:00:00Z,500,0.9",          # 8 backwards in time
            "m1,2024-01-01T01:15:00Z,nan,0.9",          # 9 not finite
            "m1,1704071700,510,",                       # 10 ok (UNIX seconds, no pf)
            "m2,2024-01-01T01:30:00+10:00,300,0.99"]    # 11 ok
    f = tmp_path / "bad.csv"
    f.write_text("\n".join(rows) + "\n")
    rc, got, err = run(capsys, str(f), "--summary")
    assert rc == 0
    for line in (3, 4, 5, 6, 7, 8, 9):
        assert "line %d:" % line in err, err
    for line in (2, 10, 11):
        assert "line %d:" % line not in err
    assert "earlier than the previous row" in err
    summ = {d["meter"]: d["samples"] for d in got if d["kind"] == "summary"}
    assert summ == {"m1": 2, "m2": 1}


def test_missing_file_and_bad_header_exit_2(tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    rc, _, err = run(capsys, str(tmp_path / "nope.csv"))
    assert rc == 2 and "no such file" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("meter,time,p_kw\nm1,0,1\n")
    rc, _, err = run(capsys, str(bad))
    assert rc == 2 and "line 1: bad header" in err and "missing timestamp, p_w" in err
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    rc, _, err = run(capsys, str(empty))
    assert rc == 2 and "empty file" in err


def test_config_settings_are_used(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from agent.policy import default_policy_settings

    cfg = tmp_path / "replay.toml"
    # an alert would need a score above 100: nothing may raise
    cfg.write_text("tz_offset_hours = 10.0\n[policy]\nraise_at = 100.5\nclear_at = %r\n"
                   % default_policy_settings()["clear_at"])
    rc, got, err = run(capsys, str(GOLDEN / "street-s9" / "input.csv"), "--config", str(cfg),
                       "--summary")
    assert rc == 0, err
    assert [d["kind"] for d in got] == ["summary", "summary"]
    bad = tmp_path / "typo.toml"
    bad.write_text("[policy]\nraise_att = 50\n")
    rc, _, err = run(capsys, str(GOLDEN / "street-s9" / "input.csv"), "--config", str(bad))
    assert rc == 2 and "raise_att" in err
    odd = tmp_path / "odd.toml"
    odd.write_text("[detector]\nslot_s = 7.0\n")  # a valid number the core rejects
    rc, _, err = run(capsys, str(GOLDEN / "street-s9" / "input.csv"), "--config", str(odd))
    assert rc == 2 and "slot_s" in err


def test_gzip_input_matches_plain(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = GOLDEN / "unix-seconds" / "input.csv"
    gz = tmp_path / "in.csv.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    rc1, plain, _ = run(capsys, str(src), "--summary", "--tz", "10")
    rc2, zipped, _ = run(capsys, str(gz), "--summary", "--tz", "10")
    assert rc1 == rc2 == 0
    assert plain == zipped and plain


def test_stdin_via_cli(tmp_path: Path) -> None:
    src = GOLDEN / "unix-seconds" / "input.csv"
    args = [sys.executable, "-m", "agent.cli", "replay", "-", "--summary", "--tz", "10"]
    with open(src, "rb") as f:
        r = subprocess.run(args, stdin=f, capture_output=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    gz = gzip.compress(src.read_bytes())
    r2 = subprocess.run(args, input=gz, capture_output=True, cwd=ROOT, timeout=60)
    assert r2.returncode == 0, r2.stderr
    lines = [json.loads(x) for x in r.stdout.decode().splitlines()]
    assert lines == [json.loads(x) for x in r2.stdout.decode().splitlines()]
    expected = [json.loads(x) for x in (src.parent / "expected.jsonl").read_text().splitlines()]
    assert [(d["meter"], d["samples"]) for d in lines if d["kind"] == "summary"] == \
        [(d["meter"], d["samples"]) for d in expected if d["kind"] == "summary"]


def test_timestamps() -> None:
    assert parse_time("1704067200") == 1704067200.0
    assert parse_time("1704067200.5") == 1704067200.5
    assert parse_time("2024-01-01T00:00:00Z") == 1704067200.0
    assert parse_time("2024-01-01T00:00:00") == 1704067200.0  # naive = UTC
    assert parse_time("2024-01-01 10:00:00+10:00") == 1704067200.0
    assert parse_time("2024-01-01T00:00:00.250Z") == 1704067200.25
    for bad in ("", "soon", "nan", "2024-13-01T00:00:00Z"):
        with pytest.raises(ValueError):
            parse_time(bad)
    assert iso_utc(1704067200.0) == "2024-01-01T00:00:00Z"
    assert iso_utc(1704067200.25) == "2024-01-01T00:00:00.250Z"


def test_throughput_is_far_from_a_minute_per_million(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    # 100,000 rows of 20 interleaved meters at 1 s; the 1,000,000-row figure is in README.
    lines = ["meter,timestamp,p_w,pf"]
    t0 = 1704067200
    for i in range(5000):
        for m in range(20):
            lines.append("m%d,%d,%.1f,0.98" % (m, t0 + i, 400.0 + (i * 7 + m * 13) % 50))
    f = tmp_path / "big.csv"
    f.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    rc, got, _ = run(capsys, str(f), "--summary")
    elapsed = time.monotonic() - start
    assert rc == 0
    assert sum(d["samples"] for d in got if d["kind"] == "summary") == 100000
    assert elapsed < 15.0  # ~0.5 s unloaded; generous for a shared, loaded machine


def test_plot_writes_one_chart_per_meter_that_raised(capsys: pytest.CaptureFixture,
                                                    tmp_path: Path) -> None:
    d = GOLDEN / "street-s9"
    expected = [json.loads(x) for x in (d / "expected.jsonl").read_text().splitlines() if x]
    raised = set(first_raised(expected))
    plain = run(capsys, str(d / "input.csv"), "--tz", "10")
    rc, lines, err = run(capsys, str(d / "input.csv"), "--tz", "10", "--plot",
                         str(tmp_path / "plots"))
    assert rc == 0 and "%d chart(s) written" % len(raised) in err
    assert lines == plain[1], "--plot must not change the events"
    files = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert files == sorted("%s.svg" % m for m in raised)
    svg = (tmp_path / "plots" / files[0]).read_text()
    assert svg.startswith("<svg") and svg.count('class="alert-span"') >= 1
    load = svg.split('class="load" d="', 1)[1].split('"', 1)[0]
    assert load.count("L") > 300  # a week of 15-min slot means
    assert 'class="floor" d="M' in svg and 'class="raise-at"' in svg
    assert 'class="schedule-block"' in svg and "24/7" in svg  # the S9's block, named


def test_plot_file_names_are_safe_and_unique() -> None:
    from agent.web.plot import file_names

    names = file_names(["../etc/passwd", "a/b", "a_b", ".hidden", "A_B", ""])
    assert all("/" not in n and not n.startswith(".") for n in names.values())
    assert len(set(n.lower() for n in names.values())) == 6


def test_plot_into_an_unwritable_place_is_one_line(capsys: pytest.CaptureFixture,
                                                   tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    rc, _, err = run(capsys, str(GOLDEN / "street-s9" / "input.csv"), "--tz", "10", "--plot",
                     str(tmp_path / "file" / "plots"))
    assert rc == 1 and err.strip().splitlines()[-1].startswith("loadwatch replay: --plot ")


def _write(path: Path, rows: list[str]) -> str:
    path.write_text("meter,timestamp,p_w\n" + "".join(r + "\n" for r in rows))
    return str(path)


def test_unit_mistakes_stop_the_run_unless_forced(capsys, tmp_path) -> None:
    """Millisecond timestamps and kW in p_w used to score 0 silently (issue 13 item 10)."""
    ms = _write(tmp_path / "ms.csv", ["m1,%d,%.1f" % (1_700_000_000_000 + 60_000 * i, 400.0)
                                      for i in range(200)])
    rc, lines, err = run(capsys, ms)
    assert rc == 2 and not lines
    assert "look like milliseconds (divide by 1000)" in err and "--force" in err
    kw = _write(tmp_path / "kw.csv", ["m1,%d,%.3f" % (1_700_000_000 + 60 * i, 0.4 + i % 7 / 10)
                                      for i in range(200)])
    rc, lines, err = run(capsys, kw)
    assert rc == 2 and "looks like kW" in err and "multiply by 1000" in err
    rc, lines, err = run(capsys, kw, "--force", "--summary")
    assert rc == 0 and lines[-1]["samples"] == 200 and "warning: p_w has a median" in err
    # Watts with decimals, and an idle meter at 0 W: not a mistake.
    watts = _write(tmp_path / "w.csv", ["m1,%d,%.2f" % (1_700_000_000 + 60 * i, 350.25 + i)
                                        for i in range(200)])
    assert run(capsys, watts)[0] == 0
    idle = _write(tmp_path / "idle.csv", ["m1,%d,0" % (1_700_000_000 + 60 * i)
                                          for i in range(200)])
    assert run(capsys, idle)[0] == 0


def test_a_file_without_one_valid_row_exits_non_zero(capsys, tmp_path) -> None:
    rc, _, err = run(capsys, _write(tmp_path / "h.csv", []))
    assert rc == 2 and "no valid row" in err
    rc, _, err = run(capsys, _write(tmp_path / "bad.csv", ["m1,yesterday,5", "m1,1,abc"]))
    assert rc == 2 and "no valid row (2 malformed)" in err
