"""The install a new user runs first is quiet and complete (issue 13 item 17).

``pip install`` used to print about 130 lines of setuptools warnings ("Package
'firmware_bridge.device' is absent from the packages configuration") before the demo,
because the MicroPython sources shipped as data live in folders without ``__init__.py``;
and the shipped hil scenarios were left out of the wheel altogether.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

# Deploy: builds the wheel: `make test` only.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_builds_without_warnings_and_ships_every_data_file(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "absent from the `packages` configuration" not in out, out[-3000:]
    assert "BuildBackendWarning" not in out, out[-3000:]
    wheel = next(tmp_path.glob("loadwatch-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in ("firmware_bridge/device/app.py", "firmware_bridge/device/shims/machine.py",
                "hil/scenarios/village-bus.toml", "agent/profiles/sdm630.toml",
                "agent/publish/schemas/alert.json"):
        assert rel in names, rel
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]
