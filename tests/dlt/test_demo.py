"""``loadwatch demo --protocol dlt645``: the whole product with DL/T 645 meters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# End to end: the demo with DL/T 645 meters: `make test` only.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_demo_with_dlt645_meters_catches_the_miner() -> None:
    out = subprocess.run(
        # 4 meters over 30 s: each DL/T 645 read is a round trip, and on a loaded machine
        # 6 meters at x25000 left hour-long gaps between samples (the detector's limit)
        [sys.executable, "-m", "agent.cli", "demo", "--protocol", "dlt645", "--duration", "30",
         "--days", "7", "--miner-day", "2", "--meters", "4", "--no-table"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "4 DL/T 645 meters" in out.stdout
    assert "the miner was caught." in out.stdout
    assert '"kind": "raised"' in out.stdout
