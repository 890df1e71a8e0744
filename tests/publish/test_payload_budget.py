"""Issue 17's byte budgets, checked on every run (bench/delivery.py prints them beside the
old payloads and the CPU figures): the same simulated meters and pipeline as the bench,
so a change to the telemetry layout that overspends fails here, not months later."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(ROOT))

from bench import payloads as pl  # noqa: E402

# A day of the SDM630 and the DTSU666 through the pipeline: `make test` only.
pytestmark = pytest.mark.slow

DAY_BUDGET = 40 * 1024  # bytes per meter per day, 15-min slots, 3-phase, all quantities


@pytest.mark.parametrize("profile", ["sdm630", "dtsu666"])
def test_a_three_phase_meters_day_of_15_min_telemetry_fits_40_kb(profile: str) -> None:
    table, rows = pl.readings(profile, 10.0, 8640)  # a day of 10-s polls
    json_bytes, msgs = pl.run_new(table, rows, 900.0)
    cbor_bytes, cbor_msgs = pl.run_new(table, rows, 900.0, "cbor")
    assert msgs == cbor_msgs >= 95
    assert json_bytes * 96 / msgs <= DAY_BUDGET, json_bytes * 96 / msgs
    assert cbor_bytes < 0.7 * json_bytes, (cbor_bytes, json_bytes)


def test_a_1_s_reading_of_a_1_phase_meter_fits_400_b_as_json_and_150_b_as_cbor() -> None:
    table, rows = pl.readings("sdm120", 1.0, 600)
    json_bytes, msgs = pl.run_new(table, rows, 1.0)
    cbor_bytes, _ = pl.run_new(table, rows, 1.0, "cbor")
    assert msgs >= 599
    assert json_bytes / msgs <= 400, json_bytes / msgs
    assert cbor_bytes / msgs <= 150, cbor_bytes / msgs
