"""Runs the shared pipeline checks under pytest, and the same file under MicroPython."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _load_checks():
    spec = importlib.util.spec_from_file_location("pipeline_checks", HERE / "checks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CHECKS = _load_checks()
NAMES = [name for name, _ in CHECKS.all_checks()]


@pytest.mark.parametrize("name", NAMES)
def test_check_on_cpython(name: str) -> None:
    getattr(CHECKS, name)()  # raises CheckFailed with the reason on failure


def test_whole_suite_on_micropython(micropython_bin: str) -> None:
    """The same checks on the unix port: the MCU runs this very pipeline."""
    env = dict(os.environ, MICROPYPATH=str(ROOT))
    proc = subprocess.run([micropython_bin, str(HERE / "checks.py")], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    m = re.search(r"(\d+) checks passed, 0 failed", out)
    assert m is not None, out
    assert int(m.group(1)) == len(NAMES) >= 20
