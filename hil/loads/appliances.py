"""Physical confounders: loads that are *not* miners but share some of a miner's traits.

A detector that only looks for "a high floor" or "no diurnal rhythm" would flag every one of
these; the scenarios use them to prove it does not. Each model is a ``Load`` in the sense
of contracts.md: ``power(t) -> (p_w, pf)`` is a pure, deterministic function of the UNIX time
``t`` and the model's seed, so a meter polled at arbitrary times, in any order, and the
benchmark see exactly the same curve. There is no hidden state: anything that "remembers"
(a thermostat, a charging session) is rebuilt from the day's seeded schedule on each call,
with a small per-day cache that only saves work (same answer with or without it).

- ``HeatPump``: hours of continuous kW-level load, 24/7 in cold weather. Built on the OPSD
  DE_KN_residential4 heat-pump circuit (Konstanz, 2015-17): winter monthly means
  0.6-1.04 kW, hourly peaks 2.0-2.66 kW, nothing in summer.
- ``EVCharger``: a flat, high, rectangular block of several kW for hours. IEC 61851 mode 3:
  7.4 kW = 230 V x 32 A single-phase, 11 kW = 3 x 230 V x 16 A.
- ``WaterHeater``: a constant element power at night on controlled-load tariffs. Storage
  heaters with a 3.6 kW element and 1.5-2.5 kWh/day standing loss; Ausgrid controlled
  load 1 (22:00-07:00).
- ``GrowLights``: a near-flat block 12 or 18 h a day, often at night, plus 24/7 fans. HPS
  600 W fixtures with electronic ballasts (PF 0.95-0.99, ~1% ripple); photoperiods 18/6
  (vegetative) and 12/12 (flowering).
- ``HomeServer``: a small, flat, 24/7 floor of 50-150 W with ~1% jitter. Measured idle of
  NAS and tower servers 30-150 W; 80 PLUS supplies with active PFC, PF 0.9-0.99.
- ``NightStorageHeater``: a resistive element (1.7-3.4 kW: Dimplex XLS/Quantum ratings)
  charging a brick core in the off-peak window (23:00-07:00, as Economy 7 or a valley
  tariff), for as many hours as tomorrow's weather needs (automatic charge control), with
  the core thermostat cycling the element as the core nears full. Nothing in mild weather.
- ``PoolPump``: a single-speed pool pump (0.75-1.5 kW, 1-2 HP induction motor, PF
  0.78-0.85) on a mechanical timer, 4-8 h a day at the same clock times, only in the
  swimming season (from the onset), a few % of load wander with filter pressure.

Local hour of day comes from ``tz_hours`` (hours east of UTC), as in the agent's config.
"""

from __future__ import annotations

import math

from hil.loads.base import DAY, Load, hash_u01, local_day, local_hour, reactive

HOUR = 3600.0
MINUTE = 60.0


def noise(seed: int, t: float, step_s: float, stream: int) -> float:
    """Zero-mean noise in [-1, 1) held constant for ``step_s`` seconds of ``t``."""
    return 2.0 * hash_u01(seed, stream, math.floor(t / step_s)) - 1.0


def _day_start_utc(day: int, tz_hours: float) -> float:
    return day * DAY - tz_hours * HOUR


class _DayCache:
    """Per-day schedules, rebuilt deterministically from (seed, day); bounded size."""

    def __init__(self, build, size: int = 8):
        self._build = build
        self._size = size
        self._data: dict[int, list] = {}

    def get(self, day: int) -> list:
        got = self._data.get(day)
        if got is None:
            if len(self._data) >= self._size:
                self._data.pop(next(iter(self._data)))
            got = self._build(day)
            self._data[day] = got
        return got


def _in_intervals(t: float, intervals: list) -> tuple | None:
    for iv in intervals:
        if iv[0] <= t < iv[1]:
            return iv
    return None


# --------------------------------------------------------------------------- weather


class Weather:
    """Outdoor temperature (deg C) as a pure function of time.

    Seasonal mean ``mean_c`` plus a diurnal swing (minimum near 06:00 local, maximum near
    15:00, half-amplitude ``diurnal_c``) plus multi-day weather fronts (three incommensurate
    sinusoids of 3.7, 7.3 and 16.9 days with seeded phases, total amplitude about
    ``fronts_c``). Defaults are a central-European winter (Konstanz, January: mean about
    1 deg C, daily range about 6-8 deg C, fronts of +-5 deg C), the climate of the OPSD house
    whose heat-pump circuit calibrates ``HeatPump``.
    """

    def __init__(self, mean_c: float = 1.0, diurnal_c: float = 3.5, fronts_c: float = 5.0,
                 seed: int = 0, tz_hours: float = 1.0):
        self.mean_c = mean_c
        self.diurnal_c = diurnal_c
        self.fronts_c = fronts_c
        self.seed = seed
        self.tz_hours = tz_hours
        self._phases = [2.0 * math.pi * hash_u01(seed, 7001, k) for k in range(3)]

    def temperature(self, t: float) -> float:
        hour = local_hour(t, self.tz_hours)
        # cos peaks at 15:00 local, trough at 03:00; a skew term pulls the minimum to ~06:00.
        diurnal = self.diurnal_c * math.cos(2.0 * math.pi * (hour - 15.0) / 24.0)
        diurnal += 0.25 * self.diurnal_c * math.cos(4.0 * math.pi * (hour - 9.0) / 24.0)
        d = t / DAY
        fronts = 0.0
        for period, weight, phase in zip((3.7, 7.3, 16.9), (0.45, 0.35, 0.2), self._phases):
            fronts += weight * math.sin(2.0 * math.pi * d / period + phase)
        return self.mean_c + diurnal + self.fronts_c * fronts


# --------------------------------------------------------------------------- heat pump


class HeatPump(Load):
    """Air-source heat pump (space heating) with weather-driven cycling and defrost.

    Physics, simplified to what shapes the meter curve:
    - heat demand rises linearly as the outdoor temperature falls below the balance point
      ``balance_c`` (14 deg C: internal and solar gains cover the rest), reaching full
      design load at ``design_c``;
    - an inverter compressor modulates down to ``min_modulation`` of its rated input;
      below that demand it cycles on/off, at most three starts an hour (the usual
      compressor-protection limit, so cycles of 20-40 min), which is the thermostat-like
      switching a miner does not show;
    - COP falls with temperature, so electrical input per unit of heat rises in the cold
      (folded into ``rated_w`` at the design point);
    - between -10 and +5 deg C the outdoor coil frosts; every ~75 min of clock the unit
      runs a 4-8 min reverse-cycle defrost at about full input (a spike, then recovery);
    - circulation pump ~45 W whenever heating is on, crankcase heater / controls 15-40 W.

    Calibration: with the default ``Weather`` (1 deg C mean) the model averages about
    0.9-1.1 kW with minute peaks near ``rated_w``; the OPSD DE_KN_residential4 heat-pump
    circuit averaged 0.72 kW in January 2016 and 1.04 kW in January 2017, with hourly
    peaks of 2.45-2.57 kW (Open Power System Data, Household Data 2017, CC BY 4.0).
    """

    def __init__(self, rated_w: float = 2000.0, weather: Weather | None = None,
                 balance_c: float = 14.0, design_c: float = -15.0,
                 min_modulation: float = 0.35, seed: int = 0, tz_hours: float = 1.0):
        self.rated_w = rated_w
        self.weather = weather if weather is not None else Weather(seed=seed,
                                                                   tz_hours=tz_hours)
        self.balance_c = balance_c
        self.design_c = design_c
        self.min_modulation = min_modulation
        self.seed = seed
        self.tz_hours = tz_hours
        self.description = "heat pump %.1f kW rated (weather-driven, with defrost)" % (
            rated_w / 1000.0)

    def demand(self, t: float) -> float:
        """Heat demand as a fraction of design load (0..1) at outdoor temperature T(t)."""
        temp = self.weather.temperature(t)
        f = (self.balance_c - temp) / (self.balance_c - self.design_c)
        return min(1.0, max(0.0, f))

    def power(self, t: float) -> tuple[float, float]:
        temp = self.weather.temperature(t)
        f = self.demand(t)
        standby = 40.0 if temp < 5.0 else 15.0
        if f <= 0.0:
            return standby, 0.6
        pump = 45.0
        # Defrost: one 4-8 min reverse cycle per 75-min period, only in frosting weather.
        # Real units start it from coil temperature and run time, never on the clock: its
        # place in each period is hashed, so a poller on a round grid (every 15 or 30 min
        # from the hour) does not alias onto it; it stays inside its period, so the
        # function stays pure.
        period = 75.0 * MINUTE
        k = math.floor(t / period)
        length = (4.0 + 4.0 * hash_u01(self.seed, 11, k)) * MINUTE
        start = k * period + (period - length) * hash_u01(self.seed, 14, k)
        t_start = self.weather.temperature(start)
        if -10.0 <= t_start <= 5.0 and f > 0.2 and start <= t < start + length:
            return 0.95 * self.rated_w + pump + standby, 0.95
        jitter = 1.0 + 0.03 * noise(self.seed, t, MINUTE, 12)
        if f >= self.min_modulation:
            # Modulating: continuous running, input roughly proportional to demand.
            return f * self.rated_w * jitter + pump + standby, 0.97
        # Cycling: on for a fraction f/min_modulation of each cycle.
        # Cycle length drifts every 2 h; the cycles' phase is hashed per 2-h block too, so
        # they are not aligned to the UNIX epoch (and to a poller's round-minute grid).
        block = math.floor(t / (2 * HOUR))
        cycle = (20.0 + 20.0 * hash_u01(self.seed, 13, block)) * MINUTE
        x = (t + cycle * hash_u01(self.seed, 15, block)) / cycle
        phase = x - math.floor(x)
        duty = f / self.min_modulation
        if phase < duty:
            return self.min_modulation * self.rated_w * jitter + pump + standby, 0.96
        return pump + standby, 0.7


# --------------------------------------------------------------------------- EV charger


class EVCharger(Load):
    """Home EV charging sessions (IEC 61851 mode 3 wallbox).

    ``rated_w`` 7400 (230 V x 32 A, single-phase) or 11000 (3 x 230 V x 16 A). On a
    fraction ``days_per_week``/7 of days the car is plugged in; with ``schedule = "evening"``
    the session starts on arrival between 17:30 and 20:30 local, with ``"offpeak"`` the
    wallbox waits for the tariff window and starts at 00:00-00:30 local (a night-time flat
    block: the confounder for a night-only miner). Energy per session 6-24 kWh (daily
    commute of 30-120 km at ~0.2 kWh/km), delivered at full current and tapering for the
    last ~15 min as the battery nears full (constant-voltage phase). PF 0.99 (on-board
    charger with PFC). The OPSD DE_KN_residential4 EV circuit shows the same rectangular
    blocks (mean ~1.2 kW over charging hours at 60-min resolution, peak hour 3.2 kWh).
    """

    def __init__(self, rated_w: float = 7400.0, days_per_week: float = 4.0,
                 schedule: str = "evening", seed: int = 0, tz_hours: float = 0.0):
        if schedule not in ("evening", "offpeak"):
            raise ValueError("EV schedule must be 'evening' or 'offpeak', got %r" % schedule)
        self.rated_w = rated_w
        self.days_per_week = days_per_week
        self.schedule = schedule
        self.seed = seed
        self.tz_hours = tz_hours
        self._cache = _DayCache(self._sessions)
        self.description = "EV charging %.1f kW (%s, %g days/week)" % (
            rated_w / 1000.0, schedule, days_per_week)

    def _sessions(self, day: int) -> list:
        if hash_u01(self.seed, 21, day) >= self.days_per_week / 7.0:
            return []
        base = _day_start_utc(day, self.tz_hours)
        if self.schedule == "evening":
            start = base + (17.5 + 3.0 * hash_u01(self.seed, 22, day)) * HOUR
        else:
            start = base + DAY + 0.5 * hash_u01(self.seed, 22, day) * HOUR
        energy_wh = (6.0 + 18.0 * hash_u01(self.seed, 23, day)) * 1000.0
        duration = energy_wh / self.rated_w * HOUR
        return [(start, start + duration)]

    def power(self, t: float) -> tuple[float, float]:
        day = local_day(t, self.tz_hours)
        # An off-peak session of day d runs after midnight, i.e. on day d+1: look back too.
        for d in (day, day - 1):
            iv = _in_intervals(t, self._cache.get(d))
            if iv is not None:
                left = iv[1] - t
                taper = min(1.0, 0.3 + 0.7 * left / (15.0 * MINUTE))
                return self.rated_w * taper * (1.0 + 0.005 * noise(self.seed, t, MINUTE, 24)), \
                    0.99
        return 3.0, 0.5  # wallbox standby electronics


# --------------------------------------------------------------------------- water heater


class WaterHeater(Load):
    """Electric storage water heater with a thermostat.

    A ``element_w`` (3600 W) element in a tank losing ``standing_kwh_day`` (1.5-2.5 kWh/day
    for 160-315 L tanks, AS/NZS 4692.2 maximum standing-loss tables) reheats after each hot
    water draw (showers 06:00-08:30 and 18:00-22:00 local, 2-6 kWh a day of draws) and, for
    standing loss alone, for a few minutes every few hours. With ``controlled = True`` the
    element is only powered 22:00-07:00 local (Ausgrid "controlled load 1"): all the day's
    reheat then lands as one or two multi-hour flat blocks at night - a floor-like load that
    is present only at night. Resistive: PF 1.0.
    """

    def __init__(self, element_w: float = 3600.0, standing_kwh_day: float = 2.0,
                 draws_kwh_day: float = 4.0, controlled: bool = False, seed: int = 0,
                 tz_hours: float = 0.0):
        self.element_w = element_w
        self.standing_kwh_day = standing_kwh_day
        self.draws_kwh_day = draws_kwh_day
        self.controlled = controlled
        self.seed = seed
        self.tz_hours = tz_hours
        self._cache = _DayCache(self._heating)
        self.description = "water heater %.1f kW%s" % (
            element_w / 1000.0, " (controlled load, night only)" if controlled else "")

    def _heating(self, day: int) -> list:
        base = _day_start_utc(day, self.tz_hours)
        scale = 0.7 + 0.6 * hash_u01(self.seed, 31, day)
        draws = self.draws_kwh_day * scale * 1000.0
        standing = self.standing_kwh_day * 1000.0
        if self.controlled:
            # Everything used "today" is reheated from 22:00 local until done (before 07:00).
            need = (draws + standing) / self.element_w * HOUR
            start = base + (22.0 + 0.25 * hash_u01(self.seed, 32, day)) * HOUR
            return [(start, start + min(need, 9.0 * HOUR))]
        out = []
        # Morning and evening draws: the thermostat switches on as the cold water comes in.
        for i, (lo, width, share) in enumerate(((6.0, 2.5, 0.45), (18.0, 4.0, 0.55))):
            start = base + (lo + width * hash_u01(self.seed, 33 + i, day)) * HOUR
            out.append((start, start + draws * share / self.element_w * HOUR))
        # Standing loss: a short top-up every 4-6 h (a 2-3 deg C thermostat dead band).
        k = 0
        t = base + (1.0 + 3.0 * hash_u01(self.seed, 35, day)) * HOUR
        top_up = standing / 5.0 / self.element_w * HOUR
        while t < base + DAY:
            if _in_intervals(t, out) is None:
                out.append((t, t + top_up))
            k += 1
            t += (4.0 + 2.0 * hash_u01(self.seed, 36, day, k)) * HOUR
        return out

    def power(self, t: float) -> tuple[float, float]:
        day = local_day(t, self.tz_hours)
        for d in (day, day - 1):
            if _in_intervals(t, self._cache.get(d)) is not None:
                # Element resistance drifts with temperature and mains voltage: +-1%.
                return self.element_w * (1.0 + 0.01 * noise(self.seed, t, MINUTE, 37)), 1.0
        return 0.0, 1.0


# --------------------------------------------------------------------------- grow lights


class GrowLights(Load):
    """Indoor grow room: lights on a 12/12 or 18/6 photoperiod, plus 24/7 ventilation.

    ``fixtures`` x ``fixture_w`` (600 W HPS with electronic ballast, PF ~0.97, ~1% ripple)
    switched on at ``lights_on_hour`` local for ``photoperiod_h`` hours (18 vegetative, 12
    flowering). Growers often run the lights at night (cheaper tariff, cooler room), which
    is why the default start is 20:00. Inline fans and a dehumidifier add ``fans_w``
    around the clock, with the dehumidifier cycling (compressor, 30-min cycles) - a 24/7
    floor of a few hundred watts that only the cycling tells apart from a small miner.
    """

    def __init__(self, fixtures: int = 2, fixture_w: float = 600.0,
                 photoperiod_h: float = 18.0, lights_on_hour: float = 20.0,
                 fans_w: float = 120.0, seed: int = 0, tz_hours: float = 0.0):
        if photoperiod_h not in (12.0, 18.0, 12, 18):
            raise ValueError("photoperiod_h must be 12 or 18, got %r" % (photoperiod_h,))
        self.fixtures = fixtures
        self.fixture_w = fixture_w
        self.photoperiod_h = float(photoperiod_h)
        self.lights_on_hour = lights_on_hour
        self.fans_w = fans_w
        self.seed = seed
        self.tz_hours = tz_hours
        self.description = "grow lights %d x %.0f W, %d/%d from %02d:00" % (
            fixtures, fixture_w, photoperiod_h, 24 - photoperiod_h, lights_on_hour)

    def lights_on(self, t: float) -> bool:
        since = (local_hour(t, self.tz_hours) - self.lights_on_hour) % 24.0
        return since < self.photoperiod_h

    def power(self, t: float) -> tuple[float, float]:
        p = self.fans_w * (1.0 + 0.02 * noise(self.seed, t, MINUTE, 41))
        q = reactive(p, 0.85)
        # Dehumidifier compressor: ~30-min cycles at a seeded phase (not on the hour).
        cycle = 30.0 * MINUTE
        x = (t + cycle * hash_u01(self.seed, 44)) / cycle
        if x - math.floor(x) < 0.4 + 0.2 * hash_u01(self.seed, 42, math.floor(x)):
            dehum = 350.0
            p += dehum
            q += reactive(dehum, 0.9)
        if self.lights_on(t):
            lights = self.fixtures * self.fixture_w * (1.0 + 0.01 * noise(self.seed, t,
                                                                          MINUTE, 43))
            p += lights
            q += reactive(lights, 0.97)
        return p, p / math.hypot(p, q)


# --------------------------------------------------------------------------- home server


class HomeServer(Load):
    """A server closet: NAS / home lab running 24/7 at ``idle_w`` to ``peak_w``.

    Idle 50 W rising towards ``peak_w`` (150 W) with use in the evening, a nightly backup
    (02:00-03:00 local, +40% of the idle-to-peak span) and ~1% minute-to-minute jitter
    from disk and CPU activity. PF 0.93 (80 PLUS PSU, active PFC at light load). The
    signature a floor feature sees is a miner's, only ten times smaller than a 1.4 kW
    ASIC: it tests that the detector scales its verdict with the size of the floor.
    """

    def __init__(self, idle_w: float = 50.0, peak_w: float = 150.0, seed: int = 0,
                 tz_hours: float = 0.0):
        self.idle_w = idle_w
        self.peak_w = peak_w
        self.seed = seed
        self.tz_hours = tz_hours
        self.description = "home server %.0f-%.0f W" % (idle_w, peak_w)

    def power(self, t: float) -> tuple[float, float]:
        hour = local_hour(t, self.tz_hours)
        span = self.peak_w - self.idle_w
        use = max(0.0, math.cos(2.0 * math.pi * (hour - 21.0) / 24.0)) ** 2
        use *= 0.6 + 0.4 * hash_u01(self.seed, 51, local_day(t, self.tz_hours))
        if 2.0 <= hour < 3.0:
            use = max(use, 0.4)
        p = (self.idle_w + span * use) * (1.0 + 0.01 * noise(self.seed, t, MINUTE, 52))
        return p, 0.93


# --------------------------------------------------------------------------- storage heater


class NightStorageHeater(Load):
    """Night storage heating: a flat block of element power from 23:00, as long as the
    weather asks for.

    Physics: a storage heater's element (``element_w``; 1.7-3.4 kW for Dimplex XLS 18-50
    class units) heats a brick core during the off-peak window. An automatic charge
    controller sets the charge from the outdoor temperature (here: the next day's mean
    of ``weather``): full ``window_h`` hours at the design temperature, none above the
    balance point. Near full charge the core thermostat cycles the element (10-min on/off
    for the last ``cycle_h`` hours), so the end of the block is soft and moves with the
    weather from night to night. Resistive: PF 1.0, no ripple.
    """

    def __init__(self, element_w: float = 2550.0, weather: Weather | None = None,
                 window_from_h: float = 23.0, window_h: float = 8.0,
                 balance_c: float = 15.0, design_c: float = -5.0, cycle_h: float = 1.0,
                 seed: int = 0, tz_hours: float = 1.0):
        self.element_w = element_w
        self.weather = weather if weather is not None else Weather(seed=seed,
                                                                   tz_hours=tz_hours)
        self.window_from_h = window_from_h
        self.window_h = window_h
        self.balance_c = balance_c
        self.design_c = design_c
        self.cycle_h = cycle_h
        self.seed = seed
        self.tz_hours = tz_hours
        self._cache = _DayCache(self._charge)
        self.description = "night storage heater %.2f kW from %02d:00 (weather-controlled)" % (
            element_w / 1000.0, window_from_h)

    def _charge(self, day: int) -> list:
        base = _day_start_utc(day, self.tz_hours)
        # tomorrow's mean temperature, sampled every 3 h of the next local day
        temps = [self.weather.temperature(base + DAY + (k + 0.5) * 3 * HOUR)
                 for k in range(8)]
        mean_c = sum(temps) / len(temps)
        f = (self.balance_c - mean_c) / (self.balance_c - self.design_c)
        hours = self.window_h * min(1.0, max(0.0, f))
        if hours <= 0.25:
            return []
        start = base + self.window_from_h * HOUR
        return [(start, start + hours * HOUR)]

    def power(self, t: float) -> tuple[float, float]:
        day = local_day(t, self.tz_hours)
        for d in (day, day - 1):
            iv = _in_intervals(t, self._cache.get(d))
            if iv is not None:
                left = iv[1] - t
                if left < self.cycle_h * HOUR:
                    # core thermostat: 10-min cycles, on for a shrinking share
                    k = math.floor(t / (10 * MINUTE))
                    if hash_u01(self.seed, 61, k) > left / (self.cycle_h * HOUR):
                        return 0.0, 1.0
                return self.element_w, 1.0
        return 0.0, 1.0


# --------------------------------------------------------------------------- pool pump


class PoolPump(Load):
    """A single-speed pool pump on a timer: the same 4-8 h block at the same clock times.

    ``rated_w`` 750-1500 W (1-2 HP induction motor), PF ``pf`` 0.78-0.85 (motor at part
    load); the mechanical timer switches it on at ``on_hour`` local for ``hours`` hours
    every day of the swimming season (the case's onset is the season's start). Filter
    loading and water level move the draw by a few % over days (smooth), with ~0.5 %
    minute-to-minute wander. With the default arguments the seed picks a typical set-up.
    """

    def __init__(self, rated_w: float | None = None, hours: float | None = None,
                 on_hour: float | None = None, pf: float | None = None, seed: int = 0,
                 tz_hours: float = 0.0):
        u = [hash_u01(seed, 71, k) for k in range(4)]
        self.rated_w = rated_w if rated_w is not None else 750.0 + 750.0 * u[0]
        self.hours = hours if hours is not None else float(4 + math.floor(5.0 * u[1]))
        if on_hour is None:
            # most timers run in the day; some owners move them to the cheap night hours
            on_hour = 22.0 if u[2] < 0.3 else float(8 + math.floor(4.0 * u[3]))
        self.on_hour = on_hour
        self.pf = pf if pf is not None else 0.78 + 0.07 * u[3]
        self.seed = seed
        self.tz_hours = tz_hours
        self.description = "pool pump %.2f kW, %d h from %02d:00, pf %.2f" % (
            self.rated_w / 1000.0, self.hours, self.on_hour, self.pf)

    def power(self, t: float) -> tuple[float, float]:
        since = (local_hour(t, self.tz_hours) - self.on_hour) % 24.0
        if since >= self.hours:
            return 0.0, 1.0
        from hil.loads.base import smooth_noise

        k = 1.0 + 0.03 * smooth_noise(self.seed + 73, t, 4.0 * DAY) \
            + 0.005 * noise(self.seed, t, MINUTE, 74)
        return self.rated_w * k, self.pf


APPLIANCES = {
    "heat_pump": HeatPump,
    "ev": EVCharger,
    "water_heater": WaterHeater,
    "grow_lights": GrowLights,
    "home_server": HomeServer,
    "storage_heater": NightStorageHeater,
    "pool_pump": PoolPump,
}
