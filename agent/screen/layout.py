"""The input layouts screen reads, and how a batch of any of them becomes long samples.

* long: ``meter,timestamp,p_w[,pf]`` (as ``replay``): timestamp ISO-8601 (offset optional,
  naive = UTC) or UNIX seconds, p_w in watts.
* wide: ``meter,date,p1..pN``: one row per meter and local day, N = 96 (15 min), 48 or
  24 points, each the interval's mean power in kW (or, with ``--kwh``, its energy in kWh),
  point i starting at local midnight + (i-1) intervals. Headers up to p100 (p50, p25) are
  accepted for exports that leave room for a clock-change day.

Both engines turn their input into :class:`LongBatch` with :func:`normalize`, the local one
batch by batch while reading, the Spark one per meter group, so a value is parsed by the same
code whichever engine runs. Bad values become NaN here and are counted; they never raise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agent.replay import parse_time
from agent.screen.problems import Problems

LONG_REQUIRED = ("meter", "timestamp", "p_w")
NOMINAL_POINTS = (96, 48, 24)
_SLACK = {96: 4, 48: 2, 24: 1}  # points a clock-change day adds or removes


class LayoutError(ValueError):
    """The header is neither layout; the message says what was expected."""


@dataclass(frozen=True)
class Layout:
    """What the header says: long, or wide with ``points`` columns of ``nominal`` per day."""

    kind: str  # "long" | "wide"
    columns: tuple[str, ...]
    has_pf: bool = False
    points: int = 0  # wide: p1..p<points> in the header
    nominal: int = 0  # wide: points in an ordinary day (96, 48, 24)

    @property
    def interval_s(self) -> float:
        return 86400.0 / self.nominal if self.nominal else 0.0


def detect(columns: list[str]) -> Layout:
    cols = [c.strip().lower().lstrip("\ufeff") for c in columns]
    if all(c in cols for c in LONG_REQUIRED):
        unknown = [c for c in cols if c not in LONG_REQUIRED + ("pf",)]
        if unknown:
            raise LayoutError("unknown column %s in a long layout (meter,timestamp,p_w[,pf])"
                              % ", ".join(repr(c) for c in unknown))
        return Layout("long", tuple(cols), has_pf="pf" in cols)
    if len(cols) >= 3 and cols[0] == "meter" and cols[1] == "date":
        pts = cols[2:]
        if pts != ["p%d" % i for i in range(1, len(pts) + 1)]:
            raise LayoutError("a wide layout needs columns meter,date,p1,p2,...,pN in order")
        for nominal in NOMINAL_POINTS:
            if nominal <= len(pts) <= nominal + _SLACK[nominal]:
                return Layout("wide", tuple(cols), points=len(pts), nominal=nominal)
        raise LayoutError("a wide layout has 96, 48 or 24 points per day (p1..p96), not %d"
                          % len(pts))
    raise LayoutError("header %r is neither meter,timestamp,p_w[,pf] nor meter,date,p1..p96"
                      % ",".join(columns))


@dataclass
class LongBatch:
    """Samples of one batch, in input order: meter ids and float columns (pf NaN = none)."""

    meter: pa.Array  # string
    t: np.ndarray  # UNIX seconds
    p: np.ndarray  # watts
    pf: np.ndarray | None

    def __len__(self) -> int:
        return len(self.t)


@dataclass(frozen=True)
class Units:
    """How to read the numbers: ``time_scale`` multiplies timestamps (1e-3 for ms),
    ``power_scale`` the long layout's p_w (1000 for a column in kW), ``kwh`` marks wide
    values as energy per interval, ``wide_scale`` the wide values (1000: kW, 1: W),
    ``tz_s`` is the local offset that wide dates are in."""

    time_scale: float = 1.0
    power_scale: float = 1.0
    kwh: bool = False
    wide_scale: float = 1000.0
    tz_s: float = 0.0


def _floats(arr: pa.Array) -> tuple[np.ndarray, int]:
    """A column as float64 and how many non-empty entries were not numbers (those NaN)."""
    if pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type):
        return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), 0
    if pa.types.is_null(arr.type):
        return np.full(len(arr), np.nan), 0
    s = pc.utf8_trim_whitespace(pc.cast(arr, pa.string()))
    s = pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)
    try:
        return pc.cast(s, pa.float64()).to_numpy(zero_copy_only=False), 0
    except pa.ArrowInvalid:
        pass
    out = np.full(len(s), np.nan)
    bad = 0
    for i, v in enumerate(s.to_pylist()):
        if v is None:
            continue
        try:
            out[i] = float(v)
        except ValueError:
            bad += 1
    return out, bad


def _times(arr: pa.Array) -> np.ndarray:
    """UNIX seconds from numbers, Arrow timestamps or strings (ISO-8601 or numeric); NaN
    where a value is empty or not a time.

    The vectorised casts are tried first; any batch they cannot take whole goes through
    ``replay.parse_time`` value by value, so the answer is replay's in every case.
    """
    if pa.types.is_timestamp(arr.type):
        us = pc.cast(arr, pa.timestamp("us", tz=arr.type.tz)).cast(pa.int64())
        return us.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
    if pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type):
        return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    s = pc.cast(arr, pa.string())
    for target in (pa.float64(), pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
        try:
            v = pc.cast(s, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        if target == pa.float64():
            return v.to_numpy(zero_copy_only=False)
        return v.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
    out = np.full(len(s), np.nan)
    for i, x in enumerate(s.to_pylist()):
        if x is None:
            continue
        try:
            out[i] = parse_time(x)
        except ValueError:
            pass
    return out


def _nonempty(meter: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.not_equal(meter, ""), False).to_numpy(zero_copy_only=False)


def normalize(table: pa.Table | pa.RecordBatch, layout: Layout, units: Units,
              problems: Problems) -> LongBatch:
    """Rows of either layout -> long samples; unreadable rows/points dropped and counted."""
    names = [c.strip().lower().lstrip("\ufeff") for c in table.schema.names]
    col = dict(zip(names, table.columns))
    meter = pc.utf8_trim_whitespace(pc.cast(col["meter"], pa.string()))
    if layout.kind == "wide":
        return _wide(col, meter, layout, units, problems)
    t = _times(col["timestamp"]) * units.time_scale
    p = _floats(col["p_w"])[0] * units.power_scale
    pf = None
    if layout.has_pf:
        pf, bad_pf = _floats(col["pf"])
        problems.bad_pf += bad_pf
    ok = np.isfinite(t) & np.isfinite(p) & _nonempty(meter)
    if ok.all():
        return LongBatch(meter, t, p, pf)
    problems.bad_rows += int(np.count_nonzero(~ok))
    return LongBatch(meter.filter(pa.array(ok)), t[ok], p[ok], None if pf is None else pf[ok])


def _wide(col: dict, meter: pa.Array, layout: Layout, units: Units,
          problems: Problems) -> LongBatch:
    n = len(meter)
    d = col["date"]
    if not pa.types.is_date(d.type):
        s = pc.utf8_trim_whitespace(pc.cast(d, pa.string()))
        try:
            d = pc.cast(s, pa.date32())
        except pa.ArrowInvalid:
            vals = []
            for x in s.to_pylist():
                try:
                    vals.append(None if x is None else _date(x))
                except ValueError:
                    vals.append(None)
            d = pa.array(vals, pa.int32()).cast(pa.date32())
    days = pc.cast(pc.cast(d, pa.date32()), pa.int32()).to_numpy(zero_copy_only=False)
    days = days.astype(np.float64)  # a null date is NaN here
    vals = np.empty((n, layout.points))
    for i in range(layout.points):
        vals[:, i], bad = _floats(col["p%d" % (i + 1)])
        problems.bad_points += bad
    ok_day = np.isfinite(days) & _nonempty(meter)
    problems.bad_rows += int(np.count_nonzero(~ok_day))
    present = np.isfinite(vals)
    count = present.sum(axis=1)
    slack = _SLACK[layout.nominal]
    problems.dst_days += int(np.count_nonzero(ok_day & ((count == layout.nominal - slack) |
                                                        (count == layout.nominal + slack))))
    step = layout.interval_s
    # kW -> W; an interval's kWh -> its mean kW first. One factor, so a value is scaled
    # by the same single multiplication however the batch was cut.
    scale = units.wide_scale * (3600.0 / step if units.kwh else 1.0)
    base = np.where(ok_day, days, 0.0) * 86400.0 - units.tz_s
    t = base[:, None] + np.arange(layout.points)[None, :] * step
    keep = present & ok_day[:, None]
    flat = keep.ravel()
    m = meter.take(pa.array(np.repeat(np.arange(n), keep.sum(axis=1))))
    return LongBatch(m, t.ravel()[flat], vals.ravel()[flat] * scale, None)


def _date(s: str) -> int:
    """``YYYY-MM-DD`` or ``YYYYMMDD`` -> days since 1970-01-01."""
    import datetime

    s = s.strip()
    if len(s) == 8 and s.isdigit():
        s = "%s-%s-%s" % (s[:4], s[4:6], s[6:])
    return (datetime.date.fromisoformat(s[:10]) - datetime.date(1970, 1, 1)).days

