"""One way to run a MicroPython-safe check file on both runtimes.

A check file (``tests/signature/checks.py``, ``tests/pipeline/checks.py``,
``tests/dlt/codec_checks.py``) defines ``check_*`` functions and, run as a script, runs
them all with ``checkkit.run`` (tests/checkkit.py), which prints
``N checks passed, M failed``. Pytest runs each check on CPython by name; the whole file then
runs once under the real MicroPython unix port, which must pass exactly the same checks.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path
from types import ModuleType

from checkkit import all_checks

ROOT = Path(__file__).resolve().parents[1]


def load_checks(path: Path, name: str) -> ModuleType:
    """Import a check file by path (the tests folders are not packages)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check_names(mod: ModuleType) -> list[str]:
    return [name for name, _ in all_checks(vars(mod))]


def passed_on_micropython(micropython_bin: str, path: Path, timeout_s: float = 120) -> int:
    """Run the check file under MicroPython; return how many checks passed (none may fail)."""
    # The repo root for agent/, tests/ for checkkit (the check files' runner).
    env = dict(os.environ, MICROPYPATH="%s:%s" % (ROOT, ROOT / "tests"))
    proc = subprocess.run([micropython_bin, str(path)], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    m = re.search(r"(\d+) checks passed, 0 failed", out)
    assert m is not None, out
    return int(m.group(1))
