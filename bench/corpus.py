"""The labelled detection corpus: real homes, real confounders, physical miners injected.

Used by bench/detection.py (the reported figures) and by the detector room for tuning.

    from bench.corpus import build_corpus
    for case in build_corpus("../shared/data", split="tune", seed=1):
        det = Detector(settings)
        for t, p_w, pf in case.samples():      # native rate: 30 min SGSC, 1 min UCI
            score = det.update(t, p_w, pf)
        # case.label (1 = miner), case.kind, case.cls, case.onset, case.eval_from ...

What is in it (sources: see /work/shared/data/README.md and hil/loads/traces.py):

- **negatives** (kind "negative"): every SGSC home of the split over its whole span (each
  ~600 days of half-hourly kWh; cls "sgsc"), and on the reporting split the UCI house at
  one minute with its real power factor (cls "uci").
- **confounders** (kind "confounder"): a non-miner load switched on at an onset in a home of
  the split, after a warm-up, for ``conf_days``: the real OPSD DE_KN_residential4 heat-pump
  and EV circuits (cls "opsd_heat_pump", "opsd_ev"; the OPSD clock is mapped so that the
  onset falls on 1 November local, i.e. the heating season starts at the onset, and local
  time of day is kept), UCI sub-meter 3 (water heater + air conditioning, cls "uci_sub3",
  from 1 January), and, when hil/loads/appliances.py is present, its physical models
  (cls "heat_pump", "ev", "water_heater", "grow_lights_12", "grow_lights_18",
  "home_server"). Each confounder class is placed on ``conf_homes`` homes of the split
  (rotating, so classes land on different homes).
- **miners** (kind "miner", label 1): the same homes with a miner from an onset chosen at
  random (seeded) after ``warm_days`` of history, case length warm_days + ``post_days``.
  Sizes SIZES_KW (0.3, 0.5, 1.0 kW GPU rigs; 1.4 kW S9; 3.25 kW S19; 10 and 40 kW farms)
  x schedules (constant, duty, night, ramp); hil/loads/miners.py has the physics. The miner
  adds its interval MEAN power to each half-hour (what an interval meter records); on the
  one-minute UCI house P and Q add and pf is recomputed.

Split (fixed, documented): SGSC customers sorted by id; even positions -> "tune", odd ->
"report". The UCI house is "report" only (one house cannot be split). ``split="all"`` gives
both. Without the real data files the corpus falls back to synthetic households
(hil/loads/synthetic.py) and every case's ``source`` says so.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hil.loads.base import DAY, Load, hash_u01  # noqa: E402
from hil.loads.miners import SCHEDULES, SIZES_KW, miner_for_size  # noqa: E402
from hil.loads.traces import (  # noqa: E402
    SGSC_FILE,
    SGSC_TZ_HOURS,
    Series,
    read_opsd,
    read_sgsc,
    read_uci,
)

SPLITS = ("tune", "report", "all")
KINDS = ("negative", "confounder", "miner")
OPSD_SEASON_START = 1446332400.0  # 2015-11-01 00:00 CET (UTC+1)
UCI_START = 1167606000.0  # 2007-01-01 00:00 CET


class Case:
    """One meter's labelled trace.

    ``t``, ``p_w`` (and ``pf`` or None) are NumPy float arrays at the source's native rate
    ``step_s``. ``onset`` is when the miner or confounder was switched on (None for plain
    negatives); ``eval_from`` is where scoring starts (the onset, or the end of the warm-up
    for negatives): false alarms and max scores count from there.
    """

    def __init__(self, meter: str, home: str, label: int, kind: str, cls: str,
                 t: np.ndarray, p_w: np.ndarray, pf: np.ndarray | None, step_s: float,
                 tz_hours: float, split: str, eval_from: float, onset: float | None = None,
                 size_kw: float = 0.0, schedule: str = "", source: str = "",
                 description: str = ""):
        self.meter = meter
        self.home = home
        self.label = label
        self.kind = kind
        self.cls = cls
        self.t = t
        self.p_w = p_w
        self.pf = pf
        self.step_s = step_s
        self.tz_hours = tz_hours
        self.split = split
        self.eval_from = eval_from
        self.onset = onset
        self.size_kw = size_kw
        self.schedule = schedule
        self.source = source
        self.description = description

    def __len__(self) -> int:
        return len(self.t)

    @property
    def start(self) -> float:
        return float(self.t[0])

    @property
    def end(self) -> float:
        return float(self.t[-1]) + self.step_s

    @property
    def eval_days(self) -> float:
        """Meter-days in the scored window (only the days with samples)."""
        n = int(np.count_nonzero(self.t >= self.eval_from))
        return n * self.step_s / DAY

    def samples(self) -> Iterator[tuple[float, float, float | None]]:
        """(t, p_w, pf) as Python floats, in time order; pf None where the source has none."""
        ts = self.t.tolist()
        ps = self.p_w.tolist()
        if self.pf is None:
            for t, p in zip(ts, ps):
                yield t, p, None
        else:
            yield from zip(ts, ps, self.pf.tolist())

    def __repr__(self) -> str:
        return "<Case %s label=%d %s/%s %d samples>" % (self.meter, self.label, self.kind,
                                                        self.cls, len(self.t))


# --------------------------------------------------------------------------- helpers


def _arrays(s: Series) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    return (np.frombuffer(s.t, dtype=np.float64).copy(), np.frombuffer(s.p_w, np.float64).copy(),
            None if s.pf is None else np.frombuffer(s.pf, np.float64).copy())


def interval_means(src: Series, t: np.ndarray, step: float, offset_s: float) -> np.ndarray:
    """Mean power of ``src`` (held per sample, looped) over [t + o, t + o + step) for each t.

    ``offset_s`` maps host time to source time (source time = host time - offset_s). Uses the
    integral of the held series, so a 1-min source averages exactly into 30-min intervals.
    """
    st, sp, _ = _arrays(src)
    if len(st) == 0:
        return np.zeros_like(t)
    start = st[0]
    end = st[-1] + src.step_s
    period = math.ceil((end - start) / DAY) * DAY
    # the held function: value sp[i] from st[i] to st[i+1] (gaps hold the last value)
    edges = np.append(st, start + period)
    cum = np.concatenate([[0.0], np.cumsum(sp * np.diff(edges))])

    def energy(x: np.ndarray) -> np.ndarray:
        loops = np.floor((x - start) / period)
        xr = x - loops * period
        i = np.clip(np.searchsorted(st, xr, side="right") - 1, 0, len(st) - 1)
        return loops * cum[-1] + cum[i] + sp[i] * (xr - st[i])

    a = t - offset_s
    return (energy(a + step) - energy(a)) / step


def load_means(load: Load, t: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Interval-mean P and Q (var) of a Load at each sample (5-min midpoints; 1 at 1 min)."""
    sub = min(step, 300.0)
    n = max(1, round(step / sub))
    h = step / n
    p = np.zeros(len(t))
    q = np.zeros(len(t))
    for i, t0 in enumerate(t.tolist()):
        sp = sq = 0.0
        for k in range(n):
            pk, pfk = load.power(t0 + (k + 0.5) * h)
            sp += pk
            if pfk < 1.0 and pk != 0.0:
                sq += abs(pk) * math.sqrt(1.0 - pfk * pfk) / max(pfk, 1e-3)
        p[i] = sp / n
        q[i] = sq / n
    return p, q


def _add(p_w: np.ndarray, pf: np.ndarray | None, add_p: np.ndarray,
         add_q: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """P adds; where the host has pf, Q adds too and pf is recomputed."""
    if pf is None:
        return p_w + add_p, None
    q = np.abs(p_w) * np.sqrt(np.clip(1.0 - pf * pf, 0.0, None)) / np.maximum(pf, 1e-3)
    if add_q is not None:
        q = q + add_q
    p = p_w + add_p
    s = np.hypot(p, q)
    return p, np.where(s > 0, np.abs(p) / np.where(s > 0, s, 1.0), 1.0)


def _pick_onset(t: np.ndarray, step: float, warm_days: float, post_days: float,
                seed: int, *keys: int) -> float | None:
    """An onset with >= 90% data coverage in the warm-up and the post window (seeded)."""
    lo = t[0] + warm_days * DAY
    hi = t[-1] - post_days * DAY
    if hi <= lo:
        return None
    for attempt in range(20):
        u = hash_u01(seed, 401, attempt, *keys)
        onset = lo + u * (hi - lo)
        a, b = onset - warm_days * DAY, onset + post_days * DAY
        n = np.count_nonzero((t >= a) & (t < b))
        if n * step >= 0.9 * (b - a):
            return float(onset)
    return None


def _window(t: np.ndarray, *arrays: np.ndarray | None, a: float, b: float) -> list:
    m = (t >= a) & (t < b)
    return [t[m]] + [None if x is None else x[m] for x in arrays]


class Home:
    """A host meter for the corpus: arrays, rate, timezone, split and provenance."""

    def __init__(self, name: str, t: np.ndarray, p_w: np.ndarray, pf: np.ndarray | None,
                 step_s: float, tz_hours: float, split: str, source: str, index: int):
        self.name = name
        self.t = t
        self.p_w = p_w
        self.pf = pf
        self.step_s = step_s
        self.tz_hours = tz_hours
        self.split = split
        self.source = source
        self.index = index


def _homes(data_dir: Path | None, seed: int, split: str = "all", limit: int | None = None,
           synthetic_homes: int = 12, synthetic_days: float = 200.0) -> tuple[list[Home], bool]:
    """SGSC homes (+ the UCI house) when the data is there, else synthetic households."""
    if data_dir is not None and (Path(data_dir) / SGSC_FILE).is_file():
        series = read_sgsc(data_dir)
        homes = []
        for i, cid in enumerate(sorted(series)):
            t, p, _ = _arrays(series[cid])
            homes.append(Home("sgsc-" + cid, t, p, None, 1800.0, SGSC_TZ_HOURS,
                              "tune" if i % 2 == 0 else "report", "SGSC", i))
        return homes, True
    from hil.loads.synthetic import SyntheticHousehold

    homes = []
    t0 = 1704067200.0 - 10 * 3600.0  # 2024-01-01 local midnight at UTC+10
    t = t0 + 1800.0 * np.arange(int(synthetic_days * 48))
    for i in range(synthetic_homes):
        if split != "all" and (i % 2 == 0) != (split == "tune"):
            continue
        if limit is not None and len(homes) >= limit:
            break
        h = SyntheticHousehold(seed=seed * 7919 + i, tz_hours=10.0)
        p, _ = load_means(h, t, 1800.0)
        homes.append(Home("synthetic-%02d" % i, t.copy(), p, None, 1800.0, 10.0,
                          "tune" if i % 2 == 0 else "report", "synthetic (no data files)", i))
    return homes, False


def _appliance_confounders(seed: int, tz: float) -> list[tuple[str, Load]]:
    try:
        from hil.loads import appliances as ap
    except ImportError:
        return []
    out: list[tuple[str, Load]] = []
    try:
        out.append(("heat_pump", ap.HeatPump(seed=seed, tz_hours=tz)))
        out.append(("ev", ap.EVCharger(seed=seed, tz_hours=tz)))
        out.append(("ev_nightly", ap.EVCharger(schedule="offpeak", days_per_week=7.0,
                                               seed=seed, tz_hours=tz)))
        out.append(("water_heater", ap.WaterHeater(controlled=True, seed=seed, tz_hours=tz)))
        out.append(("storage_heater", ap.NightStorageHeater(seed=seed, tz_hours=tz)))
        out.append(("pool_pump", ap.PoolPump(seed=seed, tz_hours=tz)))
        out.append(("grow_lights_12", ap.GrowLights(photoperiod_h=12.0, seed=seed, tz_hours=tz)))
        out.append(("grow_lights_18", ap.GrowLights(photoperiod_h=18.0, seed=seed, tz_hours=tz)))
        out.append(("home_server", ap.HomeServer(seed=seed, tz_hours=tz)))
    except (TypeError, ValueError, AttributeError):  # the models' API moved: use what built
        pass
    return out


CONFOUNDER_CLASSES = ("opsd_heat_pump", "opsd_ev", "uci_sub3", "heat_pump", "ev", "ev_nightly",
                      "water_heater", "storage_heater", "pool_pump", "grow_lights_12",
                      "grow_lights_18", "home_server")
# Look-alikes that are scheduled blocks by nature: reported as their own class, outside the
# false-alarm target (issue 18).
APART = ("grow_lights_12", "grow_lights_18")
RATES = ("30min", "1min-pf")
HOST_PF = 0.98  # assumed power factor of an SGSC home in the 1min-pf variant (UCI: 0.995)


def _per_minute(h: Home) -> Home:
    """The 1min-pf variant of a half-hourly home: each half-hour's mean held for 30
    one-minute samples at pf HOST_PF (the home's own minute-to-minute movement is not in
    the data: only the added loads move within a half-hour)."""
    if h.step_s <= 60.0:
        return h
    k = round(h.step_s / 60.0)
    t = (h.t[:, None] + 60.0 * np.arange(k)[None, :]).ravel()
    p = np.repeat(h.p_w, k)
    return Home(h.name, t, p, np.full(len(t), HOST_PF), 60.0, h.tz_hours, h.split, h.source,
                h.index)


# --------------------------------------------------------------------------- the corpus


def build_corpus(data_dir: str | Path | None = "../shared/data", split: str = "tune",
                 seed: int = 1, sizes: tuple[float, ...] = SIZES_KW,
                 schedules: tuple[str, ...] = SCHEDULES, warm_days: float = 28.0,
                 post_days: float = 14.0, conf_days: float = 120.0, conf_homes: int = 4,
                 max_homes: int | None = None, negatives: bool = True,
                 confounders: bool = True, miners: bool = True,
                 include_uci: bool = True, rate: str = "30min") -> list[Case]:
    """Every case of one split (see the module docstring). Deterministic for a seed.

    ``max_homes`` limits the SGSC homes used (the quick smoke run); ``include_uci`` adds the
    one-minute UCI house (reporting split only): as a negative, and with 0.3-1.4 kW constant
    miners. ``rate`` "30min" scores the homes at their native half-hours (energy only, what
    AMI stores); "1min-pf" at one-minute power with pf, as a gateway polls (see _per_minute).
    """
    if split not in SPLITS:
        raise ValueError("split must be one of %s" % ", ".join(SPLITS))
    if rate not in RATES:
        raise ValueError("rate must be one of %s" % ", ".join(RATES))
    data = Path(data_dir) if data_dir is not None else None
    all_homes, real = _homes(data, seed, split, max_homes)
    homes = [h for h in all_homes if split == "all" or h.split == split]
    if max_homes is not None:
        homes = homes[:max_homes]
    if rate == "1min-pf":
        homes = [_per_minute(h) for h in homes]
    cases: list[Case] = []

    # negatives: whole homes
    if negatives:
        for h in homes:
            if len(h.t) * h.step_s < (warm_days + 2) * DAY:
                continue
            cases.append(Case(h.name, h.name, 0, "negative", "sgsc" if real else "synthetic",
                              h.t, h.p_w, h.pf, h.step_s, h.tz_hours, h.split,
                              eval_from=float(h.t[0]) + warm_days * DAY, source=h.source,
                              description="%s, real home, no miner" % h.name))

    # confounders onto other homes, from an onset
    if confounders:
        sources: list[tuple[str, object]] = []
        if real:
            opsd = read_opsd(data)
            sources.append(("opsd_heat_pump", opsd["heat_pump"]))
            sources.append(("opsd_ev", opsd["ev"]))
            if (data / "uci_household_2007h1.zip").is_file():
                sources.append(("uci_sub3", read_uci(data).sub3))
        sources.extend(_appliance_confounders(seed, homes[0].tz_hours if homes else 10.0))
        usable = [h for h in homes if len(h.t) * h.step_s >= (warm_days + conf_days) * DAY]
        for ci, (cls, src) in enumerate(sources):
            for k in range(min(conf_homes, len(usable))):
                h = usable[(ci * conf_homes + k) % len(usable)]
                onset = _pick_onset(h.t, h.step_s, warm_days, conf_days, seed, 1, ci, h.index)
                if onset is None:
                    continue
                t, p, pf = _window(h.t, h.p_w, h.pf, a=onset - warm_days * DAY,
                                   b=onset + conf_days * DAY)
                after = t >= onset
                add = np.zeros(len(t))
                if isinstance(src, Series):
                    # map the source so the onset's local day starts at its season start:
                    # both are local midnights written in UTC, so local clocks line up
                    src_start = OPSD_SEASON_START if cls.startswith("opsd") else UCI_START
                    day_aligned = math.floor((onset + h.tz_hours * 3600.0) / DAY) * DAY \
                        - h.tz_hours * 3600.0
                    offset = day_aligned - src_start
                    add[after] = interval_means(src, t[after], h.step_s, offset)
                    add_q = None
                else:
                    ap, aq = load_means(src, t[after], h.step_s)  # type: ignore[arg-type]
                    add[after] = ap
                    add_q = np.zeros(len(t))
                    add_q[after] = aq
                p2, pf2 = _add(p, pf, add, None if isinstance(src, Series) else add_q)
                cases.append(Case("%s+%s" % (h.name, cls), h.name, 0, "confounder", cls, t, p2,
                                  pf2, h.step_s, h.tz_hours, h.split, eval_from=onset,
                                  onset=onset, source="%s + %s" % (h.source, cls),
                                  description="%s with %s from the onset" % (h.name, cls)))

    # miners
    if miners:
        for h in homes:
            for si, size in enumerate(sizes):
                for mi, sched in enumerate(schedules):
                    cases.extend(_miner_case(h, size, sched, seed, warm_days, post_days,
                                             (si, mi)))

    # the one-minute UCI house (reporting split)
    if include_uci and real and split in ("report", "all") \
            and (data / "uci_household_2007h1.zip").is_file():
        u = read_uci(data).house
        t, p, pf = _arrays(u)
        uh = Home("uci-sceaux", t, p, pf, 60.0, u.tz_hours, "report", "UCI", 1000)
        if negatives:
            cases.append(Case(uh.name, uh.name, 0, "negative", "uci", t, p, pf, 60.0,
                              u.tz_hours, "report", eval_from=float(t[0]) + warm_days * DAY,
                              source="UCI", description="UCI house at 1 min, with pf"))
        if miners:
            for si, size in enumerate(s for s in sizes if s <= 1.4):
                cases.extend(_miner_case(uh, size, "constant", seed, warm_days, post_days,
                                         (si, 0)))
    return cases


def _miner_case(h: Home, size: float, sched: str, seed: int, warm_days: float,
                post_days: float, keys: tuple[int, int]) -> list[Case]:
    onset = _pick_onset(h.t, h.step_s, warm_days, post_days, seed, 2, h.index, *keys)
    if onset is None:
        return []
    t, p, pf = _window(h.t, h.p_w, h.pf, a=onset - warm_days * DAY, b=onset + post_days * DAY)
    mseed = seed * 100003 + h.index * 1009 + keys[0] * 31 + keys[1]
    miner = miner_for_size(size, seed=mseed, schedule=sched, tz_hours=h.tz_hours, start=onset)
    after = t >= onset
    add_p = np.zeros(len(t))
    add_q = np.zeros(len(t))
    mp, mq = load_means(miner, t[after], h.step_s)
    add_p[after] = mp
    add_q[after] = mq
    p2, pf2 = _add(p, pf, add_p, add_q)
    return [Case("%s+miner-%gkW-%s" % (h.name, size, sched), h.name, 1, "miner",
                 "miner", t, p2, pf2, h.step_s, h.tz_hours, h.split, eval_from=onset,
                 onset=onset, size_kw=size, schedule=sched,
                 source="%s + %s" % (h.source, miner.description),
                 description="%s with %s from the onset" % (h.name, miner.description))]


def summarize(cases: list[Case]) -> str:
    """One line per (kind, cls) with case counts, samples and scored meter-days."""
    groups: dict[tuple[str, str], list[Case]] = {}
    for c in cases:
        groups.setdefault((c.kind, c.cls), []).append(c)
    lines = []
    for (kind, cls), cs in sorted(groups.items()):
        lines.append("%-10s %-16s %5d cases %9d samples %8.0f scored meter-days" % (
            kind, cls, len(cs), sum(len(c) for c in cs), sum(c.eval_days for c in cs)))
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse
    import time

    ap_ = argparse.ArgumentParser(description="build the corpus and print what is in it")
    ap_.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap_.add_argument("--split", default="tune", choices=SPLITS)
    ap_.add_argument("--seed", type=int, default=1)
    a = ap_.parse_args()
    t_start = time.monotonic()
    cs = build_corpus(a.data, a.split, a.seed)
    print(summarize(cs))
    print("%d cases in %.1f s" % (len(cs), time.monotonic() - t_start))
