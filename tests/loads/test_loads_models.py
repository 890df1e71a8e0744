"""hil/loads: purity (same t -> same value, any order), Sum's power factor, the miners' physical
figures, the synthetic household against the SGSC medians, and demo_households."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.loads import Constant, Scaled, Shifted, Sum, Window, demo_households
from hil.loads.base import hash_normal, hash_u01, local_hour, power_factor, reactive
from hil.loads.miners import (
    MINERS,
    S9_WALL_W,
    S19_WALL_W,
    antminer_s9,
    antminer_s19,
    farm,
    gpu_rig,
    make_miner,
    miner_for_size,
)
from hil.loads.synthetic import SyntheticHousehold

DAY = 86400.0
T0 = 1704031200.0  # 2024-01-01 00:00 at UTC+10


def models() -> list:
    """One of every model kind, with an onset inside the probed span."""
    out = [SyntheticHousehold(seed=3, tz_hours=10.0)]
    for sched in ("constant", "duty", "night", "ramp"):
        out.append(antminer_s9(seed=1, schedule=sched, tz_hours=10.0, start=T0 + DAY))
    out.append(gpu_rig(4, 200.0, 100.0, seed=2, start=T0))
    out.append(antminer_s19(seed=4))
    out.append(farm(10.0, seed=5, start=T0 + 3600.0))
    out.append(Sum(SyntheticHousehold(seed=9), Window(antminer_s9(seed=6), T0 + 2 * DAY)))
    return out


PROBE = [T0 + k * 3907.3 for k in range(120)]  # ~5.4 days, off any grid


def test_pure_and_order_independent() -> None:
    for m in models():
        forward = [m.power(t) for t in PROBE]
        backward = [m.power(t) for t in reversed(PROBE)][::-1]
        assert forward == backward, m.description
        again = [type(m).power(m, t) for t in PROBE]
        assert forward == again
    # a fresh instance with the same seed agrees (no hidden state between instances)
    a, b = models(), models()
    for x, y in zip(a, b):
        assert [x.power(t) for t in PROBE[::7]] == [y.power(t) for t in PROBE[::7]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=1.6e9, max_value=1.8e9), min_size=1, max_size=20))
def test_any_call_order_property(times: list[float]) -> None:
    m = Sum(SyntheticHousehold(seed=1), antminer_s9(seed=2, schedule="duty"))
    first = {t: m.power(t) for t in times}
    fresh = Sum(SyntheticHousehold(seed=1), antminer_s9(seed=2, schedule="duty"))
    for t in sorted(times, reverse=True):
        assert fresh.power(t) == first[t]
        p, pf = first[t]
        assert p >= 0.0 and 0.0 < pf <= 1.0


def test_hash_noise_is_keyed_and_spread() -> None:
    assert hash_u01(1, 2, 3) == hash_u01(1, 2, 3)
    assert hash_u01(1, 2, 3) != hash_u01(1, 2, 4) != hash_u01(2, 2, 3)
    us = [hash_u01(7, k) for k in range(4000)]
    assert 0.0 <= min(us) and max(us) < 1.0
    assert abs(statistics.mean(us) - 0.5) < 0.02
    zs = [hash_normal(7, k) for k in range(4000)]
    assert abs(statistics.mean(zs)) < 0.06 and abs(statistics.pstdev(zs) - 1.0) < 0.06


def test_sum_combines_p_and_q_not_pf() -> None:
    s = Sum(Constant(1000.0, 1.0), Constant(1000.0, 0.6))
    p, pf = s.power(0.0)
    assert p == 2000.0
    # 2 kW + 1.333 kvar -> pf = 2 / sqrt(4 + 1.778) = 0.832 (averaging pfs would give 0.8)
    assert pf == pytest.approx(2000.0 / math.hypot(2000.0, 1000.0 * 0.8 / 0.6), rel=1e-9)
    assert pf == pytest.approx(0.832, abs=1e-3)
    # nested sums flatten; an idle sum reports pf 1
    assert Sum(s, Constant(0.0, 0.5)).power(0.0) == (p, pf)
    assert Sum(Constant(0.0, 0.7)).power(0.0) == (0.0, 1.0)
    assert reactive(1000.0, 1.0) == 0.0
    assert power_factor(3.0, 4.0) == pytest.approx(0.6)


def test_combinators() -> None:
    c = Constant(500.0, 0.9)
    w = Window(c, 100.0, 200.0)
    assert w.power(99.9) == (0.0, 1.0) and w.power(100.0) == (500.0, 0.9)
    assert w.power(200.0) == (0.0, 1.0)
    m = antminer_s9(seed=1)
    sh = Shifted(m, 3600.0)
    assert sh.power(T0 + 3600.0) == m.power(T0)
    assert Scaled(c, 2.0).power(0.0) == (1000.0, 0.9)
    assert (c + c).power(0.0)[0] == 1000.0
    mp, mpf = c.mean_power(0.0, 1800.0)
    assert mp == 500.0 and mpf == pytest.approx(0.9)


def _day_samples(load, start: float, step: float = 10.0) -> list[tuple[float, float]]:
    return [load.power(start + i * step) for i in range(int(DAY / step))]


def test_s9_and_s19_physical_figures() -> None:
    s9 = _day_samples(antminer_s9(seed=3, restarts_per_day=0.0), T0)
    mean9 = statistics.mean(p for p, _ in s9)
    assert 1323.0 <= mean9 <= 1400.0  # Bitmain spec 1323-1372 W +-7%, field 1323-1400 W
    assert all(0.98 <= pf <= 0.99 for _, pf in s9)
    assert S9_WALL_W == 1372.0
    s19 = _day_samples(antminer_s19(seed=3, restarts_per_day=0.0), T0)
    mean19 = statistics.mean(p for p, _ in s19)
    assert abs(mean19 - S19_WALL_W) <= 0.05 * S19_WALL_W  # 3250 W +-5%
    # ~1% jitter: relative spread of 1-s samples within one minute (drift is negligible there)
    m = antminer_s9(seed=8, restarts_per_day=0.0)
    minute = [m.power(T0 + 5 * 3600.0 + i)[0] for i in range(60)]
    rel = statistics.pstdev(minute) / statistics.mean(minute)
    assert 0.005 <= rel <= 0.02


def test_gpu_rigs_and_farms() -> None:
    rig = gpu_rig(6, 145.0, 130.0, restarts_per_day=0.0, noise=0.0)
    assert rig.rated_w == 6 * 145.0 + 130.0
    assert 0.95 <= rig.power(T0)[1] <= 0.99
    for bad in ((4, 90.0, 100.0), (4, 330.0, 100.0), (4, 200.0, 50.0), (4, 200.0, 160.0)):
        with pytest.raises(ValueError):
            gpu_rig(*bad)
    f = farm(40.0, seed=1)
    assert 8000.0 <= f.rated_w <= 50000.0 and len(f.units) == 12
    sizes = {0.3: 300.0, 0.5: 500.0, 1.0: 1000.0, 1.4: S9_WALL_W, 3.25: S19_WALL_W}
    for kw, rated in sizes.items():
        assert miner_for_size(kw).rated_w == rated
    assert set(MINERS) >= {"gpu", "s9", "s19", "farm"}
    assert make_miner("gpu", gpus=6).rated_w == 1000.0
    with pytest.raises(KeyError):
        make_miner("antminer")


def test_restarts_fan_steps_and_drift() -> None:
    m = antminer_s9(seed=12, restarts_per_day=2.0, noise=0.0)
    ps = [m.power(T0 + i * 30.0)[0] for i in range(int(10 * DAY / 30.0))]
    dips = [p for p in ps if p < 200.0]
    assert dips, "two restarts a day over ten days must show"
    # each reboot lasts 2-7 min: the longest run of dipped 30-s samples is at most 14
    run = longest = 0
    for p in ps:
        run = run + 1 if p < 200.0 else 0
        longest = max(longest, run)
    assert 4 <= longest <= 14
    running = [p for p in ps if p > 1000.0]
    # temperature drift and fan steps move the draw by a few % but not more
    assert 0.015 < (max(running) - min(running)) / statistics.mean(running) < 0.12
    levels = {round(m.power(T0 + h * 3600.0)[0]) for h in range(240)}
    assert len(levels) > 3


def test_evasion_schedules() -> None:
    start = T0 + DAY
    night = antminer_s9(seed=1, schedule="night", tz_hours=10.0, start=start,
                        restarts_per_day=0.0)
    for h in range(24):
        p, _ = night.power(start + DAY + h * 3600.0 + 600.0)
        on = h >= 22 or h < 7
        assert (p > 1000.0) == on, h
    duty = antminer_s9(seed=1, schedule="duty", start=start, restarts_per_day=0.0)
    on = [duty.power(start + i * 60.0)[0] > 1000.0 for i in range(int(3 * DAY / 60.0))]
    assert sum(on) / len(on) == pytest.approx(2.0 / 3.0, abs=0.02)
    # the benchmark's duty cycle: off 17:00-21:00 local every day, on the other 20 h
    peak = miner_for_size(1.4, seed=1, schedule="duty", tz_hours=10.0, start=start,
                          restarts_per_day=0.0)
    for k in range(96):
        t = start + DAY + k * 900.0 + 60.0
        h = local_hour(t, 10.0)
        assert (peak.power(t)[0] > 1000.0) == (not 17.0 <= h < 21.0), h
    ramp = gpu_rig(6, 145.0, 130.0, schedule="ramp", start=start, ramp_days=6.0,
                   restarts_per_day=0.0, noise=0.0)
    daily = [ramp.power(start + d * DAY + 43200.0)[0] for d in range(8)]
    assert daily == sorted(daily) and daily[0] < 0.3 * daily[-1]
    assert all(m.power(start - 1.0) == (0.0, 1.0) for m in (night, duty, ramp))
    # a ramp built without an onset (scenarios) ramps from the Window that switches it on
    late = Window(make_miner("gpu", schedule="ramp", noise=0.0, restarts_per_day=0.0),
                  start + 10 * DAY)
    assert late.power(start + 10 * DAY + 3600.0)[0] < 0.3 * late.power(start + 20 * DAY)[0]
    with pytest.raises(ValueError):
        antminer_s9(schedule="sometimes")


def test_synthetic_household_looks_like_sgsc() -> None:
    kwh, cvs, lfs = [], [], []
    for seed in range(4):
        h = SyntheticHousehold(seed=seed, tz_hours=10.0)
        halfhours = []
        for k in range(7 * 48):
            t = T0 + k * 1800.0
            halfhours.append(statistics.mean(h.power(t + j * 120.0)[0] for j in range(15)))
        mean = statistics.mean(halfhours)
        kwh.append(mean * 24.0 / 1000.0)
        cvs.append(statistics.pstdev(halfhours) / mean)
        lfs.append(mean / max(halfhours))
    assert all(4.0 <= k <= 20.0 for k in kwh)  # SGSC 10th-90th percentile 5.4-18.8 kWh/day
    assert 0.6 < statistics.median(cvs) < 2.0  # SGSC median weekly CV 1.38
    assert 0.05 < statistics.median(lfs) < 0.3  # SGSC median load factor 0.11
    # evening above night, as in every residential profile
    h = SyntheticHousehold(seed=1, tz_hours=10.0)
    ev = [h.power(T0 + d * DAY + (18.0 + k / 6.0) * 3600.0)[0] for d in range(14)
          for k in range(24)]
    ni = [h.power(T0 + d * DAY + (2.0 + k / 6.0) * 3600.0)[0] for d in range(14)
          for k in range(18)]
    assert statistics.mean(ev) > 2.0 * statistics.mean(ni)


def test_demo_households_synthetic() -> None:
    hs = demo_households(6, data_dir=None, seed=1, miner_index=3, miner_day=2.0)
    assert len(hs.meters) == 6 and hs.miner_meter == hs.meters[3].meter
    assert local_hour(hs.t0, hs.tz_hours) == 0.0
    assert [m.profile_name for m in hs.meters] == ["sdm630", "sdm120"] * 3
    assert hs.meters[1].profile.name == "sdm120"
    assert "synthetic" in hs.description
    miner = hs.meters[3].load
    before = statistics.mean(miner.power(hs.t0 + DAY + k * 600.0)[0] for k in range(144))
    after = statistics.mean(miner.power(hs.t0 + 3 * DAY + k * 600.0)[0] for k in range(144))
    assert after - before > 1000.0
    with pytest.raises(ValueError):
        demo_households(3, None, 1, miner_index=3)


def test_demo_households_real(shared_data) -> None:
    hs = demo_households(30, data_dir=shared_data, seed=2, miner_index=0, miner_day=3.0)
    assert "SGSC" in hs.description and hs.tz_hours == 10.0
    assert local_hour(hs.t0, hs.tz_hours) == 0.0
    assert len({m.meter for m in hs.meters}) == 30  # more meters than homes: homes repeat
    for m in hs.meters[1:]:
        day = [m.load.power(hs.t0 + k * 1800.0)[0] for k in range(48)]
        assert max(day) > 0.0
