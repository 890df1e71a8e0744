"""Physical models of crypto-mining loads: GPU rigs, ASIC miners, farms, and evasion.

What a miner looks like on a meter, and the figures each part is built on:

- **GPU rig**: N cards at a tuned mining power of 100-320 W each plus a platform (board,
  CPU, risers, fans, PSU losses) of 60-150 W. Typical tuned Ethash-era figures: RX 580
  ~100-135 W, RTX 3060 Ti ~120-130 W, RTX 3080 ~220-240 W, RTX 3090 ~290-320 W
  (whattomine.com / hashrate.no tuned profiles). PSUs are 80 PLUS units with active PFC
  (80 PLUS requires pf >= 0.9 at 100% load; Gold/Platinum units measure 0.95-0.99), so pf
  ~0.97 here.
- **Antminer S9** (Bitmain spec sheet, 13.5-14 TH/s): 1323 W +-7% at the wall on the APW3++
  PSU; units in the field measure ~1323-1400 W; APW3++ pf ~0.98-0.99. Three hash boards,
  two 12 cm fans.
- **Antminer S19** (Bitmain spec sheet, 95 TH/s): 3250 W +-5% at the wall (APW12), pf ~0.99;
  four fans.
- **Farms**: 8-50 kW, i.e. 3-15 S19-class units on one service, each restarting on its own.

Common physics, all as pure functions of t (see hil/loads/base.py):
- ~1% per-second jitter (hash noise) around the rated draw: hashing load is nearly constant,
  the jitter is PSU ripple, fan control and share-submission bursts.
- temperature drift: chip leakage and fan speed follow ambient temperature (daily cycle
  peaking mid-afternoon plus multi-day weather), +-1.5% of rated power;
- fan steps: fan controllers move in discrete duty steps as temperature crosses thresholds,
  so the draw steps by a few % of rated power (S9: 2 fans ~30 W each at full speed);
- restarts: firmware watchdog/pool reconnects reboot the unit a few times a week; the draw
  falls to control board + fans (~5-10% of rated) for 2-7 minutes.

Evasion modes (what a miner who knows about load monitoring might do):
``constant`` (24/7); ``duty`` (on ``duty_on_s``, off ``duty_off_s``, default 2 h / 1 h;
with a 24-h period the off part is pinned to the clock from ``duty_off_from_h`` local, the
price peak of a time-of-use tariff: the benchmark's 20 h on / 4 h off from 17:00);
``night`` (only 22:00-07:00 local, when a night floor hides in fridge/heating load);
``ramp`` (capacity added in steps over ``ramp_days``, e.g. one GPU or hash board at a time,
so no single big step appears).
"""

from __future__ import annotations

import copy
import math

from hil.loads.base import (
    DAY,
    Load,
    hash_normal,
    hash_u01,
    local_hour,
    power_factor,
    reactive,
    smooth_noise,
)

SCHEDULES = ("constant", "duty", "night", "ramp")

S9_WALL_W = 1372.0  # Bitmain S9 14 TH/s spec; 13.5 TH/s variant 1323 W; +-7%
S9_PF = 0.985
S19_WALL_W = 3250.0  # Bitmain S19 95 TH/s spec, +-5%
S19_PF = 0.99
GPU_PF = 0.97


class Miner(Load):
    """One mining unit (an ASIC or a GPU rig) with jitter, drift, fan steps and restarts.

    ``rated_w`` is the steady wall draw; ``idle_w`` the draw while rebooting; ``fan_w`` the
    fan power at full speed (part of rated); ``stages`` how many independently added parts
    (GPUs, hash boards) the ``ramp`` mode brings up one by one. ``start`` (UNIX s) is the
    onset; before it the unit draws nothing.
    """

    def __init__(self, rated_w: float, pf: float, seed: int = 0, start: float | None = None,
                 schedule: str = "constant", tz_hours: float = 0.0, idle_w: float | None = None,
                 fan_w: float | None = None, stages: int = 3, noise: float = 0.01,
                 restarts_per_day: float = 0.4, duty_on_s: float = 7200.0,
                 duty_off_s: float = 3600.0, duty_off_from_h: float = 17.0,
                 night_from_h: float = 22.0,
                 night_to_h: float = 7.0, ramp_days: float = 7.0, kind: str = "miner",
                 description: str = ""):
        if schedule not in SCHEDULES:
            raise ValueError("schedule must be one of %s" % ", ".join(SCHEDULES))
        self.rated_w = float(rated_w)
        self.pf = float(pf)
        self.seed = int(seed)
        self.start = start
        self.schedule = schedule
        self.tz_hours = float(tz_hours)
        self.idle_w = 0.07 * self.rated_w if idle_w is None else float(idle_w)
        self.fan_w = 0.04 * self.rated_w if fan_w is None else float(fan_w)
        self.stages = max(1, int(stages))
        self.noise = float(noise)
        self.restarts_per_day = float(restarts_per_day)
        self.duty_on_s = float(duty_on_s)
        self.duty_off_s = float(duty_off_s)
        self.duty_off_from_h = float(duty_off_from_h)
        self.night_from_h = float(night_from_h)
        self.night_to_h = float(night_to_h)
        self.ramp_days = float(ramp_days)
        self.kind = kind
        self.description = description or "%s %.0f W (%s)" % (kind, self.rated_w, schedule)
        # A fixed phase for the duty cycle, so two seeds do not switch in lockstep.
        self._duty_phase = hash_u01(self.seed, 11) * (self.duty_on_s + self.duty_off_s)
        self._restarts: dict[int, tuple[float, float] | None] = {}

    def with_start(self, start: float) -> Miner:
        """A copy switched on at ``start`` (used by Window when the miner had no onset)."""
        m = copy.copy(self)
        m.start = start
        m._restarts = {}
        return m

    # -- evasion: the fraction of the unit running at t (0..1)
    def running_fraction(self, t: float) -> float:
        if self.start is not None and t < self.start:
            return 0.0
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "duty":
            period = self.duty_on_s + self.duty_off_s
            if period == DAY:
                # Off over the tariff's peak, by the clock: the same hours every day.
                since = (local_hour(t, self.tz_hours) - self.duty_off_from_h) % 24.0
                return 0.0 if since * 3600.0 < self.duty_off_s else 1.0
            return 1.0 if (t + self._duty_phase) % period < self.duty_on_s else 0.0
        if self.schedule == "night":
            h = local_hour(t, self.tz_hours)
            if self.night_from_h > self.night_to_h:
                on = h >= self.night_from_h or h < self.night_to_h
            else:
                on = self.night_from_h <= h < self.night_to_h
            return 1.0 if on else 0.0
        # ramp: one more stage every ramp_days / stages after the onset
        since = t - (self.start if self.start is not None else 0.0)
        n = 1 + int(since / (self.ramp_days * DAY / self.stages))
        return min(self.stages, n) / self.stages

    def temperature(self, t: float) -> float:
        """Relative ambient temperature about -1..1: daily cycle peaking 15:00 + weather."""
        h = local_hour(t, self.tz_hours)
        daily = math.cos(2.0 * math.pi * (h - 15.0) / 24.0)
        return 0.6 * daily + 0.4 * smooth_noise(self.seed + 5, t, 3.0 * DAY)

    def in_restart(self, t: float) -> bool:
        """True during one of the few-minute reboots (hashed per hour of time)."""
        if self.restarts_per_day <= 0.0:
            return False
        hour = math.floor(t / 3600.0)
        for k in (hour, hour - 1):
            r = self._restart(k)
            if r is not None and r[0] <= t < r[1]:
                return True
        return False

    def _restart(self, hour: int) -> tuple[float, float] | None:
        """The reboot starting in this hour, if any: (begin, end). Memoised (pure)."""
        cache = self._restarts
        if hour in cache:
            return cache[hour]
        r = None
        if hash_u01(self.seed, 21, hour) < self.restarts_per_day / 24.0:
            begin = hour * 3600.0 + hash_u01(self.seed, 22, hour) * 3600.0
            r = (begin, begin + 120.0 + 300.0 * hash_u01(self.seed, 23, hour))
        if len(cache) > 512:
            cache.clear()
        cache[hour] = r
        return r

    def power(self, t: float) -> tuple[float, float]:
        frac = self.running_fraction(t)
        if frac <= 0.0:
            return 0.0, 1.0
        if self.in_restart(t):
            return self.idle_w * frac, 0.9
        temp = self.temperature(t)
        # Fan controller: 60 / 80 / 100 % duty as temperature crosses thresholds.
        fan = 0.6 if temp < -0.2 else (0.8 if temp < 0.4 else 1.0)
        hashing = self.rated_w - self.fan_w
        p = hashing * (1.0 + 0.015 * temp) + self.fan_w * fan
        p = p * frac * (1.0 + self.noise * hash_normal(self.seed, 31, math.floor(t)))
        return max(0.0, p), self.pf


class Farm(Load):
    """Several units on one service (8-50 kW), each with its own restarts and noise."""

    def __init__(self, units: list[Miner], description: str = ""):
        self.units = units
        self.rated_w = sum(u.rated_w for u in units)
        self.schedule = units[0].schedule if units else "constant"
        self.start = units[0].start if units else None
        self.kind = "farm"
        self.description = description or "farm %.1f kW, %d units (%s)" % (
            self.rated_w / 1000.0, len(units), self.schedule)

    def with_start(self, start: float) -> Farm:
        """A copy whose units are all switched on at ``start``."""
        return Farm([u.with_start(start) for u in self.units], self.description)

    def power(self, t: float) -> tuple[float, float]:
        sp = sq = 0.0
        for u in self.units:
            p, pf = u.power(t)
            sp += p
            sq += reactive(p, pf)
        return sp, power_factor(sp, sq)


def gpu_rig(n_gpus: int, gpu_w: float, platform_w: float, **kw: object) -> Miner:
    """A GPU rig: ``n_gpus`` x ``gpu_w`` (100-320 W) + ``platform_w`` (60-150 W)."""
    if not 100.0 <= gpu_w <= 320.0 or not 60.0 <= platform_w <= 150.0:
        raise ValueError("GPU 100-320 W and platform 60-150 W (see module docstring)")
    rated = n_gpus * gpu_w + platform_w
    kw.setdefault("stages", n_gpus)
    kw.setdefault("idle_w", platform_w * 0.8)
    kw.setdefault("fan_w", 0.03 * rated)
    kw.setdefault("kind", "gpu-rig")
    kw.setdefault("description", "GPU rig %d x %.0f W + %.0f W platform (%s)" % (
        n_gpus, gpu_w, platform_w, kw.get("schedule", "constant")))
    return Miner(rated, GPU_PF, **kw)  # type: ignore[arg-type]


def antminer_s9(**kw: object) -> Miner:
    """Bitmain Antminer S9: 1372 W at the wall (1323-1400 W in the field), pf ~0.985."""
    kw.setdefault("stages", 3)  # three hash boards
    kw.setdefault("fan_w", 60.0)  # two 12 cm fans, ~30 W each at full speed
    kw.setdefault("idle_w", 90.0)
    kw.setdefault("kind", "antminer-s9")
    kw.setdefault("description", "Antminer S9 1.37 kW (%s)" % kw.get("schedule", "constant"))
    return Miner(S9_WALL_W, S9_PF, **kw)  # type: ignore[arg-type]


def antminer_s19(**kw: object) -> Miner:
    """Bitmain Antminer S19: 3250 W at the wall, pf ~0.99."""
    kw.setdefault("stages", 3)
    kw.setdefault("fan_w", 120.0)  # four fans
    kw.setdefault("idle_w", 160.0)
    kw.setdefault("kind", "antminer-s19")
    kw.setdefault("description", "Antminer S19 3.25 kW (%s)" % kw.get("schedule", "constant"))
    return Miner(S19_WALL_W, S19_PF, **kw)  # type: ignore[arg-type]


def farm(kw_total: float, seed: int = 0, **kw: object) -> Farm:
    """A farm of S19-class units adding up to about ``kw_total`` kW (8-50 kW)."""
    n = max(1, round(kw_total * 1000.0 / S19_WALL_W))
    units = [antminer_s19(seed=seed * 1000 + i, **kw) for i in range(n)]
    schedule = kw.get("schedule", "constant")
    return Farm(units, "farm %d x S19 = %.1f kW (%s)" % (n, n * S19_WALL_W / 1000.0, schedule))


# The benchmark's miner sizes (kW) and how each is built.
SIZES_KW = (0.3, 0.5, 1.0, 1.4, 3.25, 10.0, 40.0)


# The benchmark's duty cycle (issue 18): off 4 h over the evening price peak, on 20 h.
DUTY_ON_S = 20 * 3600.0
DUTY_OFF_S = 4 * 3600.0


def miner_for_size(size_kw: float, seed: int = 0, **kw: object) -> Load:
    """The physical miner behind a benchmark size: rigs below 1.4 kW, ASICs, then farms.

    A ``duty`` schedule is the benchmark's: off 17:00-21:00 local, on the other 20 h."""
    kw["seed"] = seed
    if kw.get("schedule") == "duty":
        kw.setdefault("duty_on_s", DUTY_ON_S)
        kw.setdefault("duty_off_s", DUTY_OFF_S)
    if size_kw <= 0.35:
        return gpu_rig(2, 110.0, 80.0, **kw)  # 300 W
    if size_kw <= 0.6:
        return gpu_rig(3, 130.0, 110.0, **kw)  # 500 W
    if size_kw <= 1.2:
        return gpu_rig(6, 145.0, 130.0, **kw)  # 1000 W
    if size_kw <= 2.0:
        return antminer_s9(**kw)
    if size_kw <= 5.0:
        return antminer_s19(**kw)
    return farm(size_kw, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- scenario registry
# Explicit keyword signatures: hil/scenario.py lists a model's parameters with inspect.


def make_gpu(gpus: int = 6, gpu_w: float = 145.0, platform_w: float = 130.0,
             schedule: str = "constant", seed: int = 0, tz_hours: float = 0.0,
             start: float | None = None, restarts_per_day: float = 0.4,
             noise: float = 0.01, duty_on_h: float = 2.0, duty_off_h: float = 1.0,
             ramp_days: float = 7.0) -> Miner:
    """GPU rig for scenarios (default 6 x 145 W + 130 W = 1.0 kW)."""
    return gpu_rig(int(gpus), gpu_w, platform_w, schedule=schedule, seed=seed,
                   tz_hours=tz_hours, start=start, restarts_per_day=restarts_per_day,
                   noise=noise, duty_on_s=duty_on_h * 3600.0, duty_off_s=duty_off_h * 3600.0,
                   ramp_days=ramp_days)


def make_s9(schedule: str = "constant", seed: int = 0, tz_hours: float = 0.0,
            start: float | None = None, restarts_per_day: float = 0.4, noise: float = 0.01,
            duty_on_h: float = 2.0, duty_off_h: float = 1.0, ramp_days: float = 7.0) -> Miner:
    """Antminer S9 for scenarios."""
    return antminer_s9(schedule=schedule, seed=seed, tz_hours=tz_hours, start=start,
                       restarts_per_day=restarts_per_day, noise=noise,
                       duty_on_s=duty_on_h * 3600.0, duty_off_s=duty_off_h * 3600.0,
                       ramp_days=ramp_days)


def make_s19(schedule: str = "constant", seed: int = 0, tz_hours: float = 0.0,
             start: float | None = None, restarts_per_day: float = 0.4, noise: float = 0.01,
             duty_on_h: float = 2.0, duty_off_h: float = 1.0, ramp_days: float = 7.0) -> Miner:
    """Antminer S19 for scenarios."""
    return antminer_s19(schedule=schedule, seed=seed, tz_hours=tz_hours, start=start,
                        restarts_per_day=restarts_per_day, noise=noise,
                        duty_on_s=duty_on_h * 3600.0, duty_off_s=duty_off_h * 3600.0,
                        ramp_days=ramp_days)


def make_farm(kw: float = 10.0, schedule: str = "constant", seed: int = 0,
              tz_hours: float = 0.0, start: float | None = None,
              restarts_per_day: float = 0.4, noise: float = 0.01) -> Farm:
    """A farm of S19s adding up to about ``kw`` kW (8-50 kW)."""
    return farm(kw, seed=seed, schedule=schedule, tz_hours=tz_hours, start=start,
                restarts_per_day=restarts_per_day, noise=noise)


MINERS = {"gpu": make_gpu, "s9": make_s9, "s19": make_s19, "farm": make_farm}


def make_miner(kind: str, **params: object) -> Load:
    """Build a miner by scenario kind ("gpu", "s9", "s19", "farm")."""
    if kind not in MINERS:
        raise KeyError("%r is not a miner kind (known: %s)" % (kind, ", ".join(sorted(MINERS))))
    return MINERS[kind](**params)  # type: ignore[operator]
