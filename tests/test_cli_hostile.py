"""Every ``loadwatch`` subcommand, fed what a user in the field really types wrong.

Each case runs the real command line in a subprocess and must end with a non-zero exit
code and a one-line error (argparse's usage block plus its ``error:`` line counts as one
error): never a traceback, and never the last-resort "internal error" line of cli.main,
which would mean the command itself did not handle the mistake.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agent.cli import DELEGATED, EXAMPLES, LOCAL_HELP

ROOT = Path(__file__).resolve().parents[1]
LOADWATCH = [sys.executable, "-m", "agent.cli"]


def _run(args: list[str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([*LOADWATCH, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def _hostile_cases(tmp: Path, busy_port: int) -> dict[str, list[list[str]]]:
    afile = tmp / "afile"
    afile.write_text("x")
    garbage = tmp / "garbage.toml"
    garbage.write_bytes(b"\x00\xff[[[ not toml")
    header_only = tmp / "header.csv"
    header_only.write_text("meter,timestamp,p_w\n")
    bad_state = tmp / "state"
    bad_state.mkdir()
    (bad_state / "status.json").write_text("{half a file")
    nonempty = tmp / "nonempty"
    nonempty.mkdir()
    (nonempty / "keep.txt").write_text("precious")
    return {
        "": [[], ["nosuch-command"]],
        "run": [["run"], ["run", "/nonexistent/lw.toml"], ["run", str(garbage)],
                ["run", str(tmp)], ["run", "a.toml", "-c", "b.toml"]],
        "check-config": [["check-config"], ["check-config", "-c", str(garbage)],
                         ["check-config", str(tmp)]],
        "profiles": [["profiles", "show", "nosuch"], ["profiles", "show"],
                     ["profiles", "show", str(garbage)], ["profiles", "bogus"]],
        "replay": [["replay", "/nonexistent.csv"], ["replay", str(tmp)],
                   ["replay", str(garbage)], ["replay", str(header_only)],
                   ["replay", str(header_only), "--tz", "99"]],
        "screen": [["screen"], ["screen", "/nonexistent.csv", "--out", str(tmp / "s1")],
                   ["screen", str(tmp), "--out", str(tmp / "s2")],
                   ["screen", str(garbage), "--out", str(tmp / "s3")],
                   ["screen", str(header_only), "--out", str(tmp / "s4")],
                   ["screen", str(header_only), "--out", str(afile)],
                   ["screen", str(header_only), "--out", "/proc/loadwatch-nope"],
                   ["screen", str(header_only), "--out", str(tmp / "s5"), "--tz", "99"],
                   ["screen", str(header_only), "--out", str(tmp / "s6"), "--workers", "0"],
                   ["screen", str(header_only), "--out", str(tmp / "s7"), "-c",
                    str(garbage)]],
        "scan": [["scan"], ["scan", "--serial", "/dev/null", "--units", "1"],
                 ["scan", "--serial", "/dev/ttyNOPE9"], ["scan", "--serial", str(tmp)],
                 ["scan", "--host", "127.0.0.1", "--tcp-port", "1", "--units", "1"],
                 ["scan", "--host", "nosuch.invalid", "--units", "1"],
                 ["scan", "--serial", "/dev/ttyNOPE9", "--units", "abc"],
                 ["scan", "--host", "127.0.0.1", "--tcp-port", "99999", "--units", "1"]],
        "read": [["read", "--serial", "/dev/null", "--unit", "1", "--profile", "sdm630"],
                 ["read", "--serial", "/dev/ttyNOPE9", "--unit", "999", "--profile", "sdm630"],
                 ["read", "--host", "127.0.0.1", "--tcp-port", "1", "--unit", "1",
                  "--profile", str(garbage)],
                 ["read", "--host", "127.0.0.1", "--tcp-port", "1", "--unit", "1",
                  "--profile", "sdm630"],
                 ["read", "--host", "127.0.0.1", "--tcp-port", "1", "--unit", "1",
                  "--profile", "sdm630", "--repeat", "-1"]],
        "status": [["status", "--state-dir", "/nonexistent"], ["status", str(garbage)],
                   ["status", "--state-dir", str(bad_state)],
                   ["status", str(garbage), "--state-dir", str(tmp)]],
        "watch": [["watch", "--prefix", "a/#"],
                  ["watch", "--password-file", "/nonexistent", "--tcp-port", "1"],
                  ["watch", "--tcp-port", "notaport"]],
        "hil": [["hil"], ["hil", "run", "nosuch-scenario"],
                ["hil", "run", "village-bus", "--agent", "none", "--serial", "/dev/ttyNOPE9"],
                ["hil", "run", "village-bus", "--agent", "none", "--serial", str(afile)],
                ["hil", "run", "street-gpu", "--agent", "none", "--tcp-port", str(busy_port)],
                ["hil", "run", "village-bus", "--speed", "-1"],
                ["hil", "run", "village-bus", "--data", "/nonexistent"]],
        "firmware": [["firmware"], ["firmware", "build", "--out", str(afile)],
                     ["firmware", "build", "--out", str(afile / "sub")],
                     ["firmware", "build", "--out", str(nonempty)],
                     ["firmware", "build", "--out", "/proc/loadwatch-nope"],
                     ["firmware", "build", "-c", "/nonexistent.toml"],
                     ["firmware", "flash", "--serial", "/dev/ttyNOPE9", "--build",
                      "/nonexistent"]],
        "demo": [["demo", "--speed", "-1"], ["demo", "--miner-day", "99"],
                 ["demo", "--meters", "1"], ["demo", "--duration", "0"]],
    }


def _check(args: list[str], proc: subprocess.CompletedProcess) -> str:
    """'' when the command failed the way a user deserves, else what went wrong."""
    text = proc.stdout + proc.stderr
    if "Traceback" in text:
        return "traceback"
    if "internal error" in proc.stderr:
        return "unhandled exception reached the last-resort handler"
    if proc.returncode == 0:
        return "exit code 0"
    lines = [ln for ln in proc.stderr.splitlines()
             if ln.strip() and "is deprecated here" not in ln]
    if not lines:
        return "no error message on stderr"
    if lines[0].startswith("usage:"):
        if not lines[-1].startswith("loadwatch") or "error:" not in lines[-1]:
            return "argparse usage without an error line"
    elif len(lines) != 1:
        return "%d lines of error" % len(lines)
    return ""


@pytest.mark.slow
def test_every_subcommand_survives_hostile_arguments(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        cases = _hostile_cases(tmp_path, busy.getsockname()[1])
        commands = set(DELEGATED) | set(LOCAL_HELP)
        assert commands <= set(cases), "no hostile case for %s" % (commands - set(cases))
        flat = [args for group in cases.values() for args in group]
        with ThreadPoolExecutor(max_workers=4) as pool:
            procs = list(pool.map(lambda a: _run(a, tmp_path), flat))
    finally:
        busy.close()
    failures = []
    for args, proc in zip(flat, procs):
        why = _check(args, proc)
        if why:
            failures.append("loadwatch %s: %s\n%s%s" % (" ".join(args), why, proc.stdout[-600:],
                                                        proc.stderr[-1500:]))
    assert not failures, "\n\n".join(failures)
    # The rig's output folder check must not have deleted what it refused to touch.
    assert (tmp_path / "nonempty" / "keep.txt").read_text() == "precious"


@pytest.mark.slow  # starts every subcommand once (~15 s)
def test_every_subcommand_has_a_description_and_examples() -> None:
    for name in set(DELEGATED) | set(LOCAL_HELP):
        proc = _run([name, "--help"], ROOT)
        assert proc.returncode == 0, proc.stderr
        assert "examples:\n  loadwatch %s" % name in proc.stdout, proc.stdout
        assert EXAMPLES[name]


def test_version_verbose_anywhere_and_config_both_ways(tmp_path: Path) -> None:
    proc = _run(["--version"], ROOT)
    assert proc.returncode == 0 and proc.stdout.startswith("loadwatch ")
    # -v after the subcommand, as a technician types it.
    proc = _run(["profiles", "-v"], ROOT)
    assert proc.returncode == 0 and "sdm630" in proc.stdout, proc.stderr
    cfg = ROOT / "deploy" / "loadwatch.example.toml"
    if not cfg.exists():
        cfg = next((ROOT / "deploy").glob("*.toml"))
    for args in (["check-config", str(cfg)], ["check-config", "-c", str(cfg)]):
        proc = _run(args, ROOT)
        assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stderr
    # One meaning per option name; the old spelling still works, with a note.
    proc = _run(["read", "--port", "/dev/ttyNOPE9", "--unit", "1", "--profile", "sdm630"], ROOT)
    assert proc.returncode == 1 and "--port is deprecated here, use --serial" in proc.stderr


def test_output_into_a_closed_pipe_is_quiet() -> None:
    """``loadwatch profiles | head -1``: the reader leaves early; no BrokenPipeError."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([*LOADWATCH, "profiles", "show", "sdm630"], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    finally:
        os.close(w)
    assert "Traceback" not in proc.stderr and "Broken pipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 141 and proc.stderr == ""


def test_demo_refuses_a_miner_the_run_never_reaches() -> None:
    """`demo --miner-day` beyond the simulated run used to run and show nothing."""
    proc = _run(["demo", "--days", "5", "--miner-day", "6"], ROOT)
    assert proc.returncode == 2 and "cannot be caught" in proc.stderr, proc.stderr
    assert "day 0 to 5.0" in proc.stderr
    # --speed sets the simulated span too: 60 s at x3600 is 2.5 days.
    proc = _run(["demo", "--speed", "3600", "--miner-day", "3"], ROOT)
    assert proc.returncode == 2 and "day 0 to 2.5" in proc.stderr, proc.stderr
