"""The device app's heap per meter as it boots from config.json, on the real MicroPython
unix port: the meters' tables are shared and their config is not kept twice.

json.load gives every meter its own copy of its field and read tables and settings
(~1 KB a meter on MicroPython: lists, dicts, boxed floats); an app that kept the loaded
config beside the meters held that for good, on top of bench/footprint.py's figure. The
measurement is the bench's own (``app_boot_heap_per_meter``), held here to the target."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(ROOT))

from bench.footprint import app_boot_heap_per_meter  # noqa: E402
from firmware_bridge.build import build  # noqa: E402


def test_app_holds_under_2_kb_a_meter_with_its_config(tmp_path, micropython_bin):
    unix = tmp_path / "unix"
    build("unix", out=unix, everything=True)
    per_meter = app_boot_heap_per_meter(micropython_bin, unix)
    # Fresh meters (nothing learned yet) hold ~1.7 KB; with each meter's loaded config
    # kept too it was ~2.7 KB.
    assert per_meter < 2048, per_meter
