"""``demo_households``: the street of homes ``loadwatch demo`` (and the end-to-end test) serves.

Real SGSC homes when ``data_dir`` holds ``sgsc25_halfhourly.csv.gz``, synthetic households
(hil/loads/synthetic.py) otherwise, so a fresh clone works. One meter gets an Antminer S9
(1.37 kW at the wall, hil/loads/miners.py) from ``miner_day``. Meters alternate between the
shipped profiles "sdm630" (three-phase) and "sdm120" (single-phase) so both register maps
are exercised; the Profile is loaded on first use (agent.profiles).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hil.loads.base import DAY, Load, Sum
from hil.loads.miners import miner_for_size
from hil.loads.synthetic import SyntheticHousehold
from hil.loads.traces import SGSC_FILE, SGSC_TZ_HOURS, Trace, read_sgsc

PROFILES = ("sdm630", "sdm120")
DEMO_WINDOW_DAYS = 30.0
# A local midnight where nearly every SGSC home has data for the next month: 3 June 2013
# (AEST). Homes are ranked by coverage of [day, day + 30 d].
SGSC_DEMO_DAY = 1370181600.0  # 2013-06-03 00:00 UTC+10
SYNTHETIC_DAY = 1704031200.0  # 2024-01-01 00:00 UTC+10


class DemoMeter:
    """One simulated meter: id, profile (loaded lazily by name) and load."""

    def __init__(self, meter: str, profile_name: str, load: Load, home: str):
        self.meter = meter
        self.profile_name = profile_name
        self.load = load
        self.home = home
        self._profile: Any = None

    @property
    def profile(self) -> Any:
        """The agent.profiles Profile (resolved on first use: the demo needs it, tests may not)."""
        if self._profile is None:
            from agent.profiles import load_profile

            self._profile = load_profile(self.profile_name)
        return self._profile

    def __repr__(self) -> str:
        return "<DemoMeter %s %s %s>" % (self.meter, self.profile_name, self.load.description)


class DemoHouseholds:
    """What ``demo_households`` returns: meters, start time, timezone, the miner's meter."""

    def __init__(self, meters: list[DemoMeter], t0: float, tz_hours: float, description: str,
                 miner_meter: str, miner_from: float):
        self.meters = meters
        self.t0 = t0
        self.tz_hours = tz_hours
        self.description = description
        self.miner_meter = miner_meter
        self.miner_from = miner_from


def _coverage(t: Any, a: float, b: float) -> float:
    from bisect import bisect_left

    n = bisect_left(t, b) - bisect_left(t, a)
    return n * 1800.0 / (b - a)


def _lived_in(s: Any, a: float, b: float) -> bool:
    """At least 50 W on average in every week of [a, b): not a vacant home (zeros)."""
    from bisect import bisect_left

    w = a
    while w < b:
        i, j = bisect_left(s.t, w), bisect_left(s.t, min(b, w + 7 * DAY))
        if j <= i or sum(s.p_w[i:j]) / (j - i) < 50.0:
            return False
        w += 7 * DAY
    return True


def demo_households(n: int, data_dir: str | Path | None = None, seed: int = 1,
                    miner_index: int = 0, miner_day: float = 3.0,
                    miner_schedule: str = "constant") -> DemoHouseholds:
    """``n`` meters; meter ``miner_index`` gets an S9 from ``t0 + miner_day`` days, run on
    ``miner_schedule`` (hil/loads/miners.py: constant, duty, night or ramp).

    With SGSC data, ``t0`` is local midnight of 3 June 2013 (a day every long trace covers)
    and the homes are the customers with data and consumption (>= 50 W a week) through the
    next 30 days, rotated by ``seed``; with more
    meters than homes, homes repeat a week apart. Traces loop outside their span.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    if not 0 <= miner_index < n:
        raise ValueError("miner_index must be in 0..n-1")
    meters: list[DemoMeter] = []
    real = data_dir is not None and (Path(data_dir) / SGSC_FILE).is_file()
    if real:
        series = read_sgsc(data_dir)  # type: ignore[arg-type]
        t0 = SGSC_DEMO_DAY
        end = t0 + DEMO_WINDOW_DAYS * DAY
        ranked = sorted(series, key=lambda cid: (-round(_coverage(series[cid].t, t0, end), 2),
                                                 cid))
        good = [cid for cid in ranked if _coverage(series[cid].t, t0, end) > 0.9
                and _lived_in(series[cid], t0, end)] or ranked
        k = seed % len(good)
        good = good[k:] + good[:k]
        tz = SGSC_TZ_HOURS
        homes: list[tuple[str, Load]] = []
        for i in range(n):
            cid = good[i % len(good)]
            repeat = i // len(good)
            homes.append(("sgsc-%s" % cid, Trace(series[cid], offset_s=repeat * 7 * DAY)))
        description = "real SGSC homes, %s" % ", ".join(sorted({h for h, _ in homes}))
    else:
        t0 = SYNTHETIC_DAY
        tz = 10.0
        homes = [("synthetic-%d" % (seed * 1000 + i),
                  SyntheticHousehold(seed=seed * 1000 + i, tz_hours=tz)) for i in range(n)]
        description = "synthetic households (no data files; see hil/loads/synthetic.py)"
    miner_from = t0 + miner_day * DAY
    miner_name = ""
    for i, (home, load) in enumerate(homes):
        name = "home-%02d" % (i + 1)
        if i == miner_index:
            load = Sum(load, miner_for_size(1.4, seed=seed * 7 + 1, tz_hours=tz,
                                            start=miner_from, schedule=miner_schedule))
            miner_name = name
        meters.append(DemoMeter(name, PROFILES[i % 2], load, home))
    return DemoHouseholds(meters, t0, tz, description, miner_name, miner_from)
