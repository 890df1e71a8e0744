"""The firmware's README footprint targets, measured by bench/footprint.py itself on the
real MicroPython unix port: < 64 KB of .mpy for every build it reports, < 2 KB of heap per
meter at every meter count past the first (the first also holds the tables meters of one
class share, and is reported as such)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_footprint_bench_meets_the_readme_targets():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "footprint.py"),
                           "--meters", "1,8,32"], capture_output=True, text=True,
                          timeout=600, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    mpy = re.findall(r"^\.mpy total, (.+?) \(core \d+ B\)\s+(\d+) B", out, re.M)
    assert len(mpy) == 4, out
    assert all(int(b) < 64 * 1024 for _, b in mpy), out
    heap = {int(n): int(b) for n, b in
            re.findall(r"^heap per meter, (\d+) meters?(?: \(\+shared\))?\s+(\d+) B",
                       out, re.M)}
    assert sorted(heap) == [1, 8, 32], out
    assert heap[8] < 2048 and heap[32] < 2048, out
    serial = re.search(r"same, serial uplink \(no slots\)\s+(\d+) B", out)
    assert serial and int(serial.group(1)) < 2048, out
    boot = re.search(r"^heap per meter as the app boots \(fresh\)\s+(\d+) B", out, re.M)
    assert boot and int(boot.group(1)) < 2048, out
