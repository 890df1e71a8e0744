"""The confounder models: pure in t, seeded, and shaped like the figures they cite."""

from __future__ import annotations

import random

import pytest

from hil.loads.appliances import (
    APPLIANCES,
    EVCharger,
    GrowLights,
    HeatPump,
    HomeServer,
    NightStorageHeater,
    PoolPump,
    WaterHeater,
    Weather,
)
from hil.loads.base import Load, local_hour

T0 = 1484006400.0  # 2017-01-10 00:00 UTC, a winter month like the OPSD calibration
MIN = 60.0
DAY = 86400.0


def minutes(load: Load, days: float, t0: float = T0) -> list[tuple[float, float, float]]:
    return [(t0 + i * MIN, *load.power(t0 + i * MIN)) for i in range(int(days * 1440))]


def all_models(seed: int) -> list[Load]:
    return [HeatPump(seed=seed), EVCharger(seed=seed), EVCharger(11000.0, schedule="offpeak",
                                                                 seed=seed),
            WaterHeater(seed=seed), WaterHeater(controlled=True, seed=seed),
            GrowLights(seed=seed), GrowLights(photoperiod_h=12, seed=seed),
            HomeServer(seed=seed), NightStorageHeater(seed=seed), PoolPump(seed=seed)]


@pytest.mark.parametrize("index", range(10))
def test_pure_deterministic_and_seeded(index: int) -> None:
    """Same t -> same value in any call order and from a fresh instance; seeds differ."""
    times = [T0 + i * 397.0 for i in range(2000)]
    a = all_models(5)[index]
    forward = [a.power(t) for t in times]
    shuffled = times[:]
    random.Random(1).shuffle(shuffled)
    b = all_models(5)[index]
    by_t = {t: b.power(t) for t in shuffled}
    assert forward == [by_t[t] for t in times]
    assert forward == [a.power(t) for t in times]  # and again, after the caches filled
    other = [all_models(6)[index].power(t) for t in times]
    assert other != forward
    for p, pf in forward:
        assert p >= 0.0 and 0.0 < pf <= 1.0
    assert isinstance(a, Load) and a.description


def test_registry_names_every_model() -> None:
    assert set(APPLIANCES) == {"heat_pump", "ev", "water_heater", "grow_lights", "home_server",
                               "storage_heater", "pool_pump"}


def test_heat_pump_matches_opsd_winter_and_is_off_in_summer() -> None:
    hp = HeatPump(seed=3)
    rows = minutes(hp, 30)
    mean = sum(p for _, p, _ in rows) / len(rows)
    # OPSD DE_KN_residential4: January means 0.72 kW (2016) and 1.04 kW (2017).
    assert 0.7e3 <= mean <= 1.3e3
    assert max(p for _, p, _ in rows) <= 2.1e3
    summer = HeatPump(seed=3, weather=Weather(mean_c=22.0, seed=3))
    assert max(p for _, p, _ in minutes(summer, 3)) < 100.0


def test_heat_pump_cycles_in_mild_weather_and_defrosts_in_frost() -> None:
    mild = HeatPump(seed=2, weather=Weather(mean_c=8.0, diurnal_c=1.0, fronts_c=0.0, seed=2))
    rows = minutes(mild, 1)
    on = [p > 500.0 for _, p, _ in rows]
    starts = sum(1 for a, b in zip(on, on[1:]) if b and not a)
    # Cycling below minimum modulation, at most 3 compressor starts an hour.
    assert 24 <= starts <= 72
    frost = HeatPump(seed=2, weather=Weather(mean_c=0.0, diurnal_c=1.0, fronts_c=0.0, seed=2))
    spikes = [p for _, p, _ in minutes(frost, 1) if p > 0.9 * frost.rated_w]
    # A 4-8 min defrost every 75 min: about 19 a day, 75-150 min of spikes.
    assert 19 * 4 <= len(spikes) <= 20 * 8


@pytest.mark.parametrize("rated,schedule,hours", [(7400.0, "evening", (17.5, 24.0)),
                                                  (11000.0, "offpeak", (0.0, 8.0))])
def test_ev_sessions_are_rated_blocks_at_the_right_hours(rated, schedule, hours) -> None:
    ev = EVCharger(rated, days_per_week=7.0, schedule=schedule, seed=4)
    rows = minutes(ev, 7)
    charging = [(t, p) for t, p, _ in rows if p > 100.0]
    full = [p for _, p in charging if p > 0.97 * rated]
    assert len(full) > 0.7 * len(charging)
    energy_kwh = sum(p for _, p in charging) / 60.0 / 1000.0
    assert 7 * 6.0 * 0.95 <= energy_kwh <= 7 * 24.0 * 1.05
    for t, _ in charging:
        assert hours[0] <= local_hour(t, 0.0) < hours[1]


def test_water_heater_thermostat_and_controlled_load() -> None:
    free = WaterHeater(seed=1)
    rows = minutes(free, 7)
    on = [p for _, p, _ in rows if p > 0.0]
    assert all(abs(p - 3600.0) <= 40.0 for p in on)
    daily_kwh = sum(on) / 60.0 / 1000.0 / 7
    assert 3.5 <= daily_kwh <= 9.0  # draws (0.7-1.3 x 4 kWh) + 2 kWh standing loss
    ctl = WaterHeater(controlled=True, seed=1)
    for t, p, _ in minutes(ctl, 7):
        if p > 0.0:
            h = local_hour(t, 0.0)
            assert h >= 22.0 or h < 7.0


@pytest.mark.parametrize("period", [12, 18])
def test_grow_lights_photoperiod(period: int) -> None:
    g = GrowLights(fixtures=2, photoperiod_h=period, lights_on_hour=20.0, seed=2)
    lit = sum(1 for t, _, _ in minutes(g, 2) if g.lights_on(t))
    assert lit == period * 60 * 2
    rows = minutes(g, 1)
    assert min(p for _, p, _ in rows) >= 0.9 * g.fans_w  # the 24/7 ventilation floor
    assert max(p for _, p, _ in rows) <= 1.2 * (g.fans_w + 350.0 + 1200.0)
    with pytest.raises(ValueError):
        GrowLights(photoperiod_h=16)


def test_home_server_is_a_small_jittery_floor() -> None:
    rows = minutes(HomeServer(seed=9), 3)
    ps = [p for _, p, _ in rows]
    assert 49.0 <= min(ps) and max(ps) <= 152.0
    assert sum(ps) / len(ps) < 110.0


def test_storage_heater_charges_off_peak_for_as_long_as_the_weather_needs() -> None:
    """Element power only from 23:00 (local) for up to 8 h, longer before colder days,
    nothing in mild weather; resistive (pf 1)."""
    cold = NightStorageHeater(seed=2, tz_hours=1.0, weather=Weather(mean_c=-2.0, seed=2))
    mild = NightStorageHeater(seed=2, tz_hours=1.0, weather=Weather(mean_c=4.0, seed=2))
    rows = minutes(cold, 6)
    on = [(t, p, pf) for t, p, pf in rows if p > 0.0]
    assert on and all(pf == 1.0 and p == cold.element_w for _, p, pf in on)
    assert all(local_hour(t, 1.0) >= 23.0 or local_hour(t, 1.0) < 7.0 for t, _, _ in on)
    hours_cold = sum(1 for _, p, _ in rows if p > 0.0) / 60.0
    hours_mild = sum(1 for _, p, _ in minutes(mild, 6) if p > 0.0) / 60.0
    assert hours_cold > hours_mild + 3.0
    assert not any(p > 0.0 for _, p, _ in minutes(
        NightStorageHeater(seed=2, weather=Weather(mean_c=25.0, seed=2)), 3))


def test_pool_pump_runs_a_fixed_timer_block_at_motor_power_factor() -> None:
    pump = PoolPump(rated_w=1100.0, hours=6.0, on_hour=9.0, pf=0.8, seed=3, tz_hours=10.0)
    for t, p, pf in minutes(pump, 3):
        h = local_hour(t, 10.0)
        if 9.0 <= h < 15.0:
            assert 1000.0 < p < 1200.0 and pf == 0.8
        else:
            assert p == 0.0
    picked = [PoolPump(seed=k) for k in range(40)]
    assert all(750.0 <= x.rated_w <= 1500.0 and 4.0 <= x.hours <= 8.0 and
               0.78 <= x.pf <= 0.85 for x in picked)
    assert any(x.on_hour >= 22.0 for x in picked) and any(x.on_hour < 12.0 for x in picked)
