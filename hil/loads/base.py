"""The Load protocol, seeded hash noise, and the combinators every model is built from.

A load is anything with ``power(t) -> (p_w, pf)``: active power in watts and a (lagging)
power factor at UNIX time ``t``. It must be a *pure* function of ``t``: a simulated meter
polled at arbitrary, out-of-order times and the detection benchmark sampling the same load
must see the same values. So there is no ``random.Random`` state anywhere in hil/loads:
every random-looking quantity is a hash of (seed, integer bucket of time), as in
counter-based generators (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
SC 2011); the mixer is SplitMix64 (Steele, Lea & Flood, OOPSLA 2014).

Caches (e.g. a household's appliance events for one day) are allowed because they only
memoise a pure function; they never change what a later call returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable

M64 = (1 << 64) - 1
DAY = 86400.0


def mix64(x: int) -> int:
    """SplitMix64 finaliser: a bijective 64-bit scramble with good avalanche."""
    x &= M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


_SEED_MIX: dict[int, int] = {}


def _seed_mix(seed: int) -> int:
    h = _SEED_MIX.get(seed)
    if h is None:
        h = mix64(seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019)
        if len(_SEED_MIX) > 4096:
            _SEED_MIX.clear()
        _SEED_MIX[seed] = h
    return h


def hash_u01(seed: int, *keys: int) -> float:
    """A uniform number in [0, 1) determined only by ``seed`` and the integer ``keys``.

    The SplitMix64 rounds are inlined (this is the hot spot of every model); the seed's
    own mix is memoised (a pure function, so the cache cannot change any value).
    """
    h = _seed_mix(seed)
    for k in keys:
        x = h ^ ((k * 0xD1B54A32D192ED03) & M64)
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
        h = x ^ (x >> 31)
    return (h >> 11) * (1.0 / 9007199254740992.0)


def hash_normal(seed: int, *keys: int) -> float:
    """A standard normal number determined only by ``seed`` and ``keys`` (Box-Muller)."""
    u1 = hash_u01(seed, 1, *keys)
    u2 = hash_u01(seed, 2, *keys)
    return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)


_KNOTS: dict[tuple[int, int], float] = {}


def _knot(seed: int, k: int) -> float:
    """Value-noise knot in [-1, 1) (memoised: a pure function of its arguments)."""
    key = (seed, k)
    v = _KNOTS.get(key)
    if v is None:
        v = 2.0 * hash_u01(seed, 77, k) - 1.0
        if len(_KNOTS) > 8192:
            _KNOTS.clear()
        _KNOTS[key] = v
    return v


def smooth_noise(seed: int, t: float, period: float) -> float:
    """Value noise in about [-1, 1]: hashed knots every ``period`` s, cosine-interpolated.

    Used for slow drifts (temperature, occupancy) that must be continuous in t.
    """
    x = t / period
    k = math.floor(x)
    f = x - k
    a = _knot(seed, k)
    b = _knot(seed, k + 1)
    w = 0.5 - 0.5 * math.cos(math.pi * f)
    return a + (b - a) * w


def local_hour(t: float, tz_hours: float) -> float:
    """Hour of day 0..24 in a fixed-offset local time."""
    return ((t + tz_hours * 3600.0) % DAY) / 3600.0


def local_day(t: float, tz_hours: float) -> int:
    """Integer local day number (days since 1970-01-01 local)."""
    return math.floor((t + tz_hours * 3600.0) / DAY)


class Load:
    """Base class: ``power(t) -> (p_w, pf)``, pure in ``t``. ``description`` is for humans."""

    description = "load"

    def power(self, t: float) -> tuple[float, float]:
        raise NotImplementedError

    def mean_power(self, t0: float, t1: float, step: float = 300.0) -> tuple[float, float]:
        """Mean P over [t0, t1) and the pf of the mean P and mean Q (midpoint sampling).

        What an interval energy meter (SGSC's half-hourly kWh) would report for this load.
        """
        n = max(1, round((t1 - t0) / step))
        h = (t1 - t0) / n
        sp = sq = 0.0
        for i in range(n):
            p, pf = self.power(t0 + (i + 0.5) * h)
            sp += p
            sq += reactive(p, pf)
        sp /= n
        sq /= n
        return sp, power_factor(sp, sq)

    def __add__(self, other: Load) -> Sum:
        return Sum(self, other)

    def __repr__(self) -> str:
        return "<%s %s>" % (type(self).__name__, self.description)


def reactive(p_w: float, pf: float) -> float:
    """Reactive power (var, lagging positive) of ``p_w`` at power factor ``pf``."""
    if pf >= 1.0 or p_w == 0.0:
        return 0.0
    pf = max(pf, 1e-3)
    return abs(p_w) * math.sqrt(1.0 - pf * pf) / pf


def power_factor(p_w: float, q_var: float) -> float:
    """|P| / S; 1.0 for a load drawing nothing (an idle meter shows pf 1 on most displays)."""
    s = math.hypot(p_w, q_var)
    if s <= 0.0:
        return 1.0
    return abs(p_w) / s


class Constant(Load):
    """A fixed draw, e.g. a standby base load or a test fixture."""

    def __init__(self, p_w: float, pf: float = 1.0, description: str = ""):
        self.p_w = float(p_w)
        self.pf = float(pf)
        self.description = description or "constant %.0f W pf %.2f" % (p_w, pf)

    def power(self, t: float) -> tuple[float, float]:
        return self.p_w, self.pf


class Sum(Load):
    """Loads on one meter: P adds, Q adds (all lagging), pf = P / sqrt(P^2 + Q^2).

    Averaging power factors would be wrong: 1 kW at pf 1.0 plus 1 kW at pf 0.6 is
    2 kW + 1.33 kvar, pf 0.83, not 0.8.
    """

    def __init__(self, *loads: Load):
        flat: list[Load] = []
        for ld in loads:
            flat.extend(ld.loads if isinstance(ld, Sum) else [ld])
        self.loads = flat
        self.description = " + ".join(ld.description for ld in flat)

    def power(self, t: float) -> tuple[float, float]:
        sp = sq = 0.0
        for ld in self.loads:
            p, pf = ld.power(t)
            sp += p
            sq += reactive(p, pf)
        return sp, power_factor(sp, sq)


class Window(Load):
    """A load switched on only in [start, end) (UNIX s; None = unbounded): "miner from day 5"."""

    def __init__(self, load: Load, start: float | None = None, end: float | None = None):
        # A model that keeps time from its own onset (a miner's ramp-up) and was built
        # without one takes the window's start: Window(miner, day 5) ramps from day 5.
        if start is not None and getattr(load, "start", 0.0) is None \
                and hasattr(load, "with_start"):
            load = load.with_start(start)
        self.load = load
        self.start = start
        self.end = end
        self.description = "%s (from %s)" % (load.description, start) if start is not None \
            else load.description

    def power(self, t: float) -> tuple[float, float]:
        if (self.start is not None and t < self.start) or (self.end is not None and t >= self.end):
            return 0.0, 1.0
        return self.load.power(t)


class Shifted(Load):
    """``load`` played ``offset_s`` later: power(t) = load.power(t - offset_s)."""

    def __init__(self, load: Load, offset_s: float):
        self.load = load
        self.offset_s = float(offset_s)
        self.description = load.description

    def power(self, t: float) -> tuple[float, float]:
        return self.load.power(t - self.offset_s)


class Scaled(Load):
    """``load`` with P multiplied by ``factor`` (pf unchanged)."""

    def __init__(self, load: Load, factor: float):
        self.load = load
        self.factor = float(factor)
        self.description = "%g x %s" % (factor, load.description)

    def power(self, t: float) -> tuple[float, float]:
        p, pf = self.load.power(t)
        return p * self.factor, pf


class Function(Load):
    """Wrap a pure ``f(t) -> (p_w, pf)`` (tests, one-off scenario shapes)."""

    def __init__(self, f: Callable[[float], tuple[float, float]], description: str = "function"):
        self.f = f
        self.description = description

    def power(self, t: float) -> tuple[float, float]:
        return self.f(t)


def sample(load: Load, times: Sequence[float]) -> list[tuple[float, float]]:
    """``load.power`` at each time (convenience for tests and benchmarks)."""
    return [load.power(t) for t in times]
