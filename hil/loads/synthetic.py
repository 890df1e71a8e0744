"""A synthetic household for runs without the real traces (fresh clones, CI, scenarios).

Built from appliance events so the curve has the traits real homes have and miners lack:
a low standby floor, a cycling fridge, morning and evening peaks, kW-level spikes (kettle,
cooking, washing), and day-to-day variation. Figures it is grounded in:

- SGSC (the 25 homes in ../shared/data, measured on the file): median daily consumption
  9.5 kWh (10th-90th percentile 5.4-18.8), median weekly coefficient of variation of
  half-hourly power 1.38, median load factor (mean / peak) 0.11 (data README). The defaults
  aim at 6-14 kWh/day; tests/loads checks the daily kWh and that the weekly CV and load
  factor fall in the ranges real homes show (CV > 0.6, load factor < 0.3).
- Typical national figures: an Australian (NSW) home uses ~15-18 kWh/day (AER residential
  benchmarks 2020), an EU home ~10 kWh/day (~3,600 kWh/yr, Odyssee-Mure).
- Always-on / standby base load: median 164 W in measured Californian homes (Delforge et
  al., NRDC 2015, "Home Idle Load"), 50-150 W in European homes; here 40-160 W, pf ~0.9.
- Fridge-freezer: compressor 90-150 W running 30-50% of the time in cycles of 40-70 min
  (typical 1-1.5 kWh/day appliances), pf ~0.75 (single-phase induction motor).
- Peaks: kettle 2-2.4 kW for 3-4 min, cooking 1.5-2.5 kW for 20-60 min around 18:00,
  lighting/TV 100-400 W in the evening, washing machine / dishwasher 1-2 kW heating phases
  on some days; evening peak 17:00-22:00 as in every residential load profile.

Pure in t: each day's events are hashed from (seed, local day); a small cache only saves
rebuilding them.
"""

from __future__ import annotations

import math

from hil.loads.base import DAY, Load, hash_u01, local_day, power_factor, reactive, smooth_noise

HOUR = 3600.0


class SyntheticHousehold(Load):
    """One synthetic home. ``scale`` multiplies every appliance (1.0 = ~6-14 kWh/day)."""

    def __init__(self, seed: int = 0, tz_hours: float = 10.0, scale: float | None = None):
        self.seed = int(seed)
        self.tz_hours = float(tz_hours)
        self.scale = 0.6 + 0.8 * hash_u01(self.seed, 1) if scale is None else float(scale)
        self.base_w = 40.0 + 120.0 * hash_u01(self.seed, 2)
        self.fridge_w = 90.0 + 60.0 * hash_u01(self.seed, 3)
        self.fridge_period = 2400.0 + 1800.0 * hash_u01(self.seed, 4)
        self.description = "synthetic household #%d (x%.2f)" % (self.seed, self.scale)
        self._days: dict[int, list[tuple[float, float, float, float]]] = {}

    # -- events of one local day: (start, end, watts, pf)
    def _events(self, day: int) -> list[tuple[float, float, float, float]]:
        got = self._days.get(day)
        if got is not None:
            return got
        s = self.seed
        d0 = day * DAY - self.tz_hours * HOUR  # local midnight in UTC

        def u(*k: int) -> float:
            return hash_u01(s, 100, day, *k)

        ev: list[tuple[float, float, float, float]] = []
        away = u(0) < 0.08  # some days nobody is home: only base load and fridge
        if not away:
            # kettle: 2-5 boils, mostly morning and evening
            for k in range(2 + int(4 * u(1))):
                h = (6.5 + 2.0 * u(2, k)) if u(3, k) < 0.5 else (15.0 + 6.0 * u(4, k))
                ev.append((d0 + h * HOUR, d0 + h * HOUR + 180.0 + 60.0 * u(5, k),
                           2000.0 + 400.0 * u(6, k), 1.0))
            # cooking around 18:00 (most days)
            if u(7) < 0.85:
                h = 17.0 + 2.5 * u(8)
                ev.append((d0 + h * HOUR, d0 + h * HOUR + (20.0 + 40.0 * u(9)) * 60.0,
                           1500.0 + 1000.0 * u(10), 0.99))
            # morning routine: toaster, hair dryer, shower pump
            h = 6.0 + 2.5 * u(11)
            ev.append((d0 + h * HOUR, d0 + h * HOUR + (15.0 + 30.0 * u(12)) * 60.0,
                       300.0 + 900.0 * u(13), 0.95))
            # evening lighting / TV / computer, 17:00-23:00
            h = 17.0 + 1.5 * u(14)
            ev.append((d0 + h * HOUR, d0 + (h + 4.0 + 2.0 * u(15)) * HOUR,
                       100.0 + 300.0 * u(16), 0.9))
            # daytime occupancy on some days
            if u(17) < 0.4:
                h = 9.0 + 3.0 * u(18)
                ev.append((d0 + h * HOUR, d0 + (h + 2.0 + 4.0 * u(19)) * HOUR,
                           80.0 + 250.0 * u(20), 0.92))
            # washing machine / dishwasher heating phase
            for k, p_day in ((0, 0.35), (1, 0.45)):
                if u(21, k) < p_day:
                    h = (9.0 + 10.0 * u(22, k)) if k == 0 else (19.0 + 2.5 * u(22, k))
                    ev.append((d0 + h * HOUR, d0 + h * HOUR + (20.0 + 25.0 * u(23, k)) * 60.0,
                               1000.0 + 1000.0 * u(24, k), 0.97))
            # space conditioning on some days (afternoon/evening, 1-2 kW, hours)
            if u(25) < 0.15:
                h = 14.0 + 5.0 * u(26)
                ev.append((d0 + h * HOUR, d0 + (h + 1.0 + 3.0 * u(27)) * HOUR,
                           800.0 + 1200.0 * u(28), 0.93))
        if len(self._days) > 16:
            self._days.pop(next(iter(self._days)))
        self._days[day] = ev
        return ev

    def power(self, t: float) -> tuple[float, float]:
        sc = self.scale
        # standby base with a slow drift (+-10%)
        p = self.base_w * sc * (1.0 + 0.1 * smooth_noise(self.seed + 9, t, 2.0 * DAY))
        q = reactive(p, 0.9)
        # fridge: compressor on for the first `duty` of each cycle; duty rises in the afternoon
        phase = (t + self.fridge_period * hash_u01(self.seed, 5)) % self.fridge_period
        hour = ((t + self.tz_hours * HOUR) % DAY) / HOUR
        duty = 0.38 + 0.08 * math.cos(2.0 * math.pi * (hour - 15.0) / 24.0)
        if phase < duty * self.fridge_period:
            p += self.fridge_w
            q += reactive(self.fridge_w, 0.75)
        day = local_day(t, self.tz_hours)
        for d in (day, day - 1):
            for a, b, w, pf in self._events(d):
                if a <= t < b:
                    p += w * sc
                    q += reactive(w * sc, pf)
        return p, power_factor(p, q)
