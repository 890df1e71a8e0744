"""Real household traces from ../shared/data as Loads, and readers for the three files.

Readers return :class:`Series` (sorted UNIX-second times, watts, optional power factor) in
plain ``array('d')`` so hil/ needs no NumPy. Cite the sources wherever these are used
(see /work/shared/data/README.md):

- SGSC: Smart Grid Smart City Customer Trial Data, Australian Government (data.gov.au), CC
  BY; the subset published with the R package *gravitas* (Gupta, Hyndman, Cook, Unwin).
  Half-hourly ``general_supply_kwh`` per customer; ``reading_datetime`` is local time at the
  START of the interval. Mean power over the interval is ``kW = 2 x kWh``. The local clock
  is taken as AEST, a fixed UTC+10 (the file has no offsets; during NSW daylight saving this
  puts hour-of-day features one hour off, which is what a gateway with a fixed offset sees).
- UCI: Hebrail & Berard (2006), *Individual Household Electric Power Consumption*, UCI ML
  Repository, doi:10.24432/C58K54, CC BY 4.0. One-minute Global_active_power and
  Global_reactive_power in kW (pf = P / sqrt(P^2 + Q^2)), dates ``d/m/yy`` or ``d/m/yyyy``,
  ``?`` for missing (rows skipped, ~1.4%). Sub_metering_3 (water heater + air conditioner)
  is energy in Wh per minute, so W = 60 x Wh. Local time taken as CET, fixed UTC+1.
- OPSD: Open Power System Data (2017), *Household Data*, DE_KN_residential4 (CoSSMic,
  ISC Konstanz), CC BY 4.0. Hourly CUMULATIVE kWh per circuit; power over the hour starting
  at ``utc_timestamp[i]`` is ``(E[i+1] - E[i]) x 1000`` W. Missing or negative differences
  (register resets) are dropped, so the series has gaps.

How a :class:`Trace` plays a series: *hold* (default) gives each sample's value for its
interval ``[t_i, t_i + step)``, which is right for interval-energy data such as SGSC; gaps
in the data hold the last value. *linear* interpolates between samples. Outside the span
the trace *loops* (default: period = span rounded up to whole days, so the time of day is
kept) or *clamps* to the first/last value.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import zipfile
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path

from hil.loads.base import DAY, Load

SGSC_FILE = "sgsc25_halfhourly.csv.gz"
UCI_FILE = "uci_household_2007h1.zip"
OPSD_FILE = "opsd_de_kn_residential4_60min.csv.gz"
SGSC_TZ_HOURS = 10.0
UCI_TZ_HOURS = 1.0
OPSD_TZ_HOURS = 1.0
OPSD_CIRCUITS = ("heat_pump", "ev", "freezer", "refrigerator", "grid_import", "dishwasher",
                 "washing_machine")

_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal()


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


class Series:
    """A sampled trace: ``t`` (UNIX s, ascending), ``p_w`` (W), ``pf`` or None, ``step_s``.

    ``step_s`` is the native interval: each sample is the mean over ``[t, t + step_s)``.
    """

    def __init__(self, name: str, t: array, p_w: array, pf: array | None, step_s: float,
                 tz_hours: float, source: str):
        if len(t) != len(p_w) or (pf is not None and len(pf) != len(t)):
            raise ValueError("series %s: arrays differ in length" % name)
        self.name = name
        self.t = t
        self.p_w = p_w
        self.pf = pf
        self.step_s = float(step_s)
        self.tz_hours = float(tz_hours)
        self.source = source

    def __len__(self) -> int:
        return len(self.t)

    @property
    def start(self) -> float:
        return self.t[0]

    @property
    def end(self) -> float:
        """End of the last interval."""
        return self.t[-1] + self.step_s

    @property
    def days(self) -> float:
        return len(self.t) * self.step_s / DAY

    def samples(self) -> Iterator[tuple[float, float, float | None]]:
        """(t, p_w, pf) per sample; pf is None where the source has none."""
        if self.pf is None:
            for t, p in zip(self.t, self.p_w):
                yield t, p, None
        else:
            yield from zip(self.t, self.p_w, self.pf)

    def __repr__(self) -> str:
        return "<Series %s: %d samples of %gs, %.0f days>" % (
            self.name, len(self.t), self.step_s, self.days)


class Trace(Load):
    """A :class:`Series` played as a Load (see the module docstring for hold/loop rules)."""

    def __init__(self, series: Series, mode: str = "hold", outside: str = "loop",
                 offset_s: float = 0.0, pf: float = 1.0):
        if mode not in ("hold", "linear"):
            raise ValueError("mode must be 'hold' or 'linear'")
        if outside not in ("loop", "clamp"):
            raise ValueError("outside must be 'loop' or 'clamp'")
        if len(series) == 0:
            raise ValueError("series %s is empty" % series.name)
        self.series = series
        self.mode = mode
        self.outside = outside
        self.offset_s = float(offset_s)  # power(t) plays the series at t - offset_s
        self.default_pf = pf  # used when the series has no power factor
        span = series.end - series.start
        self.period = math.ceil(span / DAY) * DAY if span > 0 else DAY
        self.description = "%s trace" % series.name

    def power(self, t: float) -> tuple[float, float]:
        s = self.series
        x = t - self.offset_s
        if x < s.start or x >= s.end:
            if self.outside == "loop":
                x = s.start + (x - s.start) % self.period
            else:
                x = min(max(x, s.start), s.t[-1])
        i = bisect_right(s.t, x) - 1
        if i < 0:
            i = 0
        p = s.p_w[i]
        pf = s.pf[i] if s.pf is not None else self.default_pf
        if self.mode == "linear" and i + 1 < len(s.t):
            t0, t1 = s.t[i], s.t[i + 1]
            if t1 > t0 and x > t0:
                f = (x - t0) / (t1 - t0)
                p = p + (s.p_w[i + 1] - p) * f
                if s.pf is not None:
                    pf = pf + (s.pf[i + 1] - pf) * f
        return p, pf


# --------------------------------------------------------------------------- readers

_CACHE: dict[tuple[str, str, float], object] = {}


def _cached(kind: str, path: Path, build):
    """Parse each file once per process (the benchmark and the demo both read them)."""
    p = Path(path)
    key = (kind, str(p.resolve()), os.path.getmtime(p))
    if key not in _CACHE:
        _CACHE[key] = build(p)
    return _CACHE[key]


def _sgsc_dir(data_dir: Path | str) -> Path:
    p = Path(data_dir)
    return p / SGSC_FILE if p.is_dir() else p


def read_sgsc(data_dir: Path | str) -> dict[str, Series]:
    """All SGSC customers in the file: ``{customer_id: Series}`` (30-min, watts, no pf)."""
    return _cached("sgsc", _sgsc_dir(data_dir), _parse_sgsc)


def _parse_sgsc(path: Path) -> dict[str, Series]:
    rows: dict[str, list[tuple[float, float]]] = {}
    day_cache: dict[str, float] = {}
    off = SGSC_TZ_HOURS * 3600.0
    with gzip.open(path, "rt", newline="") as f:
        r = csv.reader(f)
        header = next(r)
        if header[:3] != ["customer_id", "reading_datetime", "general_supply_kwh"]:
            raise ValueError("%s: unexpected header %r" % (path, header))
        for row in r:
            if len(row) < 3 or not row[2]:
                continue
            stamp = row[1]
            day = stamp[:10]
            base = day_cache.get(day)
            if base is None:
                base = _days_from_civil(int(day[0:4]), int(day[5:7]), int(day[8:10])) * DAY - off
                day_cache[day] = base
            t = base + int(stamp[11:13]) * 3600.0 + int(stamp[14:16]) * 60.0
            try:
                kwh = float(row[2])
            except ValueError:
                continue
            rows.setdefault(row[0], []).append((t, 2000.0 * kwh))
    out = {}
    for cid, pts in rows.items():
        pts.sort()
        ts = array("d")
        ps = array("d")
        last = None
        for t, p in pts:
            if t == last:  # duplicate reading: keep the first
                continue
            ts.append(t)
            ps.append(p)
            last = t
        out[cid] = Series("sgsc-" + cid, ts, ps, None, 1800.0, SGSC_TZ_HOURS, "SGSC")
    return out


class UciData:
    """The UCI house: whole-house ``house`` (with pf) and ``sub3`` (water heater + AC)."""

    def __init__(self, house: Series, sub3: Series):
        self.house = house
        self.sub3 = sub3


def read_uci(data_dir: Path | str) -> UciData:
    """The UCI Sceaux house, one-minute samples; rows with '?' are skipped."""
    p = Path(data_dir)
    return _cached("uci", p / UCI_FILE if p.is_dir() else p, _parse_uci)


def _parse_uci(path: Path) -> UciData:
    ts, ps, pfs = array("d"), array("d"), array("d")
    ts3, p3 = array("d"), array("d")
    off = UCI_TZ_HOURS * 3600.0
    day_cache: dict[str, float] = {}
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith(".csv") or n.endswith(".txt"))
        with z.open(name) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            first = text.readline()
            sep = ";" if ";" in first else ","
            cols = [c.strip() for c in first.strip().split(sep)]
            ci = {c: i for i, c in enumerate(cols)}
            i_date, i_time = ci["Date"], ci["Time"]
            i_p, i_q, i_s3 = ci["Global_active_power"], ci["Global_reactive_power"], \
                ci["Sub_metering_3"]
            for line in text:
                row = line.rstrip("\r\n").split(sep)
                if len(row) <= i_s3:
                    continue
                try:
                    p_kw = float(row[i_p])
                    q_kw = float(row[i_q])
                except ValueError:  # '?' = missing
                    continue
                d = row[i_date]
                base = day_cache.get(d)
                if base is None:
                    dd, mm, yy = d.split("/")
                    y = int(yy)
                    y = y + 2000 if y < 100 else y
                    base = _days_from_civil(y, int(mm), int(dd)) * DAY - off
                    day_cache[d] = base
                hh, mi, ss = row[i_time].split(":")
                t = base + int(hh) * 3600.0 + int(mi) * 60.0 + int(ss)
                ts.append(t)
                ps.append(1000.0 * p_kw)
                s = math.hypot(p_kw, q_kw)
                pfs.append(p_kw / s if s > 0 else 1.0)
                try:
                    s3 = float(row[i_s3])
                except ValueError:
                    continue
                ts3.append(t)
                p3.append(60.0 * s3)
    house = _sorted_series("uci-sceaux", ts, ps, pfs, 60.0, UCI_TZ_HOURS, "UCI")
    sub3 = _sorted_series("uci-sub3", ts3, p3, None, 60.0, UCI_TZ_HOURS, "UCI sub-meter 3")
    return UciData(house, sub3)


def _sorted_series(name: str, ts: array, ps: array, pfs: array | None, step: float,
                   tz: float, source: str) -> Series:
    if all(ts[i] < ts[i + 1] for i in range(len(ts) - 1)):
        return Series(name, ts, ps, pfs, step, tz, source)
    order = sorted(range(len(ts)), key=ts.__getitem__)
    return Series(name, array("d", (ts[i] for i in order)), array("d", (ps[i] for i in order)),
                  None if pfs is None else array("d", (pfs[i] for i in order)), step, tz, source)


def read_opsd(data_dir: Path | str) -> dict[str, Series]:
    """DE_KN_residential4 circuits as hourly power: ``{"heat_pump": Series, "ev": ...}``."""
    p = Path(data_dir)
    return _cached("opsd", p / OPSD_FILE if p.is_dir() else p, _parse_opsd)


def _parse_stamp_utc(s: str) -> float:
    # 2015-10-04T01:00:00Z
    return (_days_from_civil(int(s[0:4]), int(s[5:7]), int(s[8:10])) * DAY
            + int(s[11:13]) * 3600.0 + int(s[14:16]) * 60.0)


def _parse_opsd(path: Path) -> dict[str, Series]:
    with gzip.open(path, "rt", newline="") as f:
        r = csv.reader(f)
        header = next(r)
        prefix = "DE_KN_residential4_"
        idx = {h[len(prefix):]: i for i, h in enumerate(header) if h.startswith(prefix)}
        stamps: list[float] = []
        cols: dict[str, list[float]] = {c: [] for c in idx}
        for row in r:
            if not row:
                continue
            stamps.append(_parse_stamp_utc(row[0]))
            for c, i in idx.items():
                v = row[i] if i < len(row) else ""
                cols[c].append(float(v) if v else math.nan)
    out = {}
    for c, cum in cols.items():
        ts, ps = array("d"), array("d")
        for i in range(len(stamps) - 1):
            a, b = cum[i], cum[i + 1]
            dt = stamps[i + 1] - stamps[i]
            if math.isnan(a) or math.isnan(b) or b < a or dt <= 0:
                continue
            ts.append(stamps[i])
            ps.append((b - a) * 1000.0 * 3600.0 / dt)
        out[c] = Series("opsd-" + c, ts, ps, None, 3600.0, OPSD_TZ_HOURS, "OPSD")
    return out


def has_data(data_dir: Path | str | None, which: str = SGSC_FILE) -> bool:
    """True when ``data_dir`` holds the named public file."""
    return data_dir is not None and (Path(data_dir) / which).is_file()
