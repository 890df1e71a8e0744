"""The real-trace readers against the files in ../shared/data, and Trace's hold/loop rules."""

from __future__ import annotations

import gzip
import math
from array import array
from datetime import datetime, timedelta, timezone

import pytest

from hil.loads.traces import Series, Trace, read_opsd, read_sgsc, read_uci

AEST = timezone(timedelta(hours=10))
CET = timezone(timedelta(hours=1))


def test_sgsc(shared_data) -> None:
    homes = read_sgsc(shared_data)
    assert len(homes) == 25
    s = homes["10006486"]
    # first row: 10006486,2013-02-12 09:30:00,0.036 -> 72 W from 09:30 AEST (start of interval)
    assert s.t[0] == datetime(2013, 2, 12, 9, 30, tzinfo=AEST).timestamp()
    assert s.p_w[0] == pytest.approx(72.0)
    assert s.step_s == 1800.0 and s.pf is None and s.tz_hours == 10.0
    long_homes = [h for h in homes.values() if h.days > 500]
    assert len(long_homes) >= 18  # "~600 days each" for most customers
    for h in homes.values():
        assert all(h.t[i] < h.t[i + 1] for i in range(len(h.t) - 1))
        assert min(h.p_w) >= 0.0
    # the reader does not drop rows: count them in the file
    with gzip.open(shared_data / "sgsc25_halfhourly.csv.gz", "rt") as f:
        n_file = sum(1 for line in f if line.startswith("10006486,"))
    assert len(s) == n_file - 2  # two duplicated timestamps in the file are kept once


def test_uci(shared_data) -> None:
    u = read_uci(shared_data)
    h = u.house
    # first row: 1/1/07,0:00:00, P 2.58 kW, Q 0.136 kW
    assert h.t[0] == datetime(2007, 1, 1, 0, 0, tzinfo=CET).timestamp()
    assert h.p_w[0] == pytest.approx(2580.0)
    assert h.pf[0] == pytest.approx(2.58 / math.hypot(2.58, 0.136))
    assert 250_000 < len(h) < 260_640  # '?' rows (~1.4%) are skipped
    assert h.step_s == 60.0
    pfs = sorted(h.pf)
    assert 0.98 < pfs[len(pfs) // 2] <= 1.0  # README: median pf 0.995
    # both date styles in the file (1/1/07 and 14/1/2007) land in 2007
    assert datetime.fromtimestamp(h.t[-1], CET).year == 2007
    # sub-meter 3 is Wh per minute: W = 60 x Wh; a water heater + AC draws up to a few kW
    assert 1000.0 < max(u.sub3.p_w) < 4000.0 and min(u.sub3.p_w) >= 0.0


def test_opsd(shared_data) -> None:
    c = read_opsd(shared_data)
    for name in ("heat_pump", "ev", "freezer", "refrigerator", "grid_import"):
        s = c[name]
        assert s.step_s == 3600.0 and len(s) > 9000
        assert min(s.p_w) >= 0.0  # first differences of cumulative kWh, resets dropped
    hp = c["heat_pump"]
    assert 2000.0 < max(hp.p_w) < 2700.0  # hourly peaks 2.0-2.66 kW
    assert max(c["ev"].p_w) > 2500.0
    assert max(c["refrigerator"].p_w) < 200.0


def _series() -> Series:
    return Series("test", array("d", [0.0, 10.0, 20.0]), array("d", [100.0, 200.0, 300.0]),
                  array("d", [0.9, 0.8, 0.7]), 10.0, 0.0, "test")


def test_trace_hold_linear_loop_clamp() -> None:
    s = _series()
    hold = Trace(s)
    assert hold.power(0.0) == (100.0, 0.9)
    assert hold.power(9.99) == (100.0, 0.9)
    assert hold.power(15.0) == (200.0, 0.8)
    assert hold.power(29.0) == (300.0, 0.7)
    lin = Trace(s, mode="linear")
    assert lin.power(5.0) == pytest.approx((150.0, 0.85))
    # loop: period = span rounded up to whole days
    assert hold.power(86400.0 + 15.0) == hold.power(15.0)
    assert hold.power(-86400.0 + 15.0) == hold.power(15.0)
    clamp = Trace(s, outside="clamp")
    assert clamp.power(-5.0) == (100.0, 0.9)
    assert clamp.power(1e6) == (300.0, 0.7)
    shifted = Trace(s, offset_s=100.0)
    assert shifted.power(115.0) == hold.power(15.0)
    with pytest.raises(ValueError):
        Trace(s, mode="cubic")
