"""Runs the shared detector checks under pytest, and the same file under MicroPython."""

from __future__ import annotations

from pathlib import Path

import pytest
from dual_runtime import check_names, load_checks, passed_on_micropython

HERE = Path(__file__).resolve().parent
CHECKS = load_checks(HERE / "checks.py", "signature_checks")
NAMES = check_names(CHECKS)


@pytest.mark.parametrize("name", NAMES)
def test_check_on_cpython(name: str) -> None:
    getattr(CHECKS, name)()  # raises CheckFailed with the reason on failure


def test_whole_suite_on_micropython(micropython_bin: str) -> None:
    """The same checks on the unix port: the detector must not need anything CPython-only."""
    assert passed_on_micropython(micropython_bin, HERE / "checks.py") == len(NAMES) >= 15
