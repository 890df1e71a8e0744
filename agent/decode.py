"""Registers + profile -> Reading with quality flags (pure, per meter).

Bad data is not load (DESIGN.md 2): a value that is NaN, infinite or physically
implausible is dropped from ``Reading.values`` and flagged; a reading whose every value
repeats exactly for longer than the profile's ``frozen_s`` is flagged frozen (a live
meter's voltage and frequency never repeat to the last float bit for long); an energy
counter that goes down is flagged backwards, one that falls to (near) zero is flagged
reset and becomes the new baseline; a failed poll carries the failure (timeout,
exception, CRC) as a flag and no values. The decoder never scores: it only says what the
numbers are and whether they can be trusted (``Reading.scorable``).

The only state kept is per meter, for the frozen and counter checks.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING

from agent.dlt645.codec import FrameError, bcd_decode
from agent.model import (
    Q_BACKWARDS,
    Q_CRC,
    Q_ERROR_REPLY,
    Q_EXCEPTION,
    Q_FROZEN,
    Q_INF,
    Q_MISMATCH,
    Q_MISSING,
    Q_NAN,
    Q_NEGATIVE,
    Q_RANGE,
    Q_RESET,
    Q_TIMEOUT,
    RawBlock,
    RawItem,
    RawPoll,
    Reading,
)

if TYPE_CHECKING:  # pragma: no cover
    from agent.config import MeterPlan
    from agent.profiles import DiField, Field

# Plausible ranges per quantity family for meters up to a small commercial connection
# (a few hundred amps). Outside them the value is a decoding or wiring problem, not load.
RANGES = {
    "p_w": (-500_000.0, 500_000.0),
    "q_var": (-500_000.0, 500_000.0),
    "s_va": (0.0, 500_000.0),
    "pf": (-1.001, 1.001),
    "v_v": (0.0, 500.0),
    "i_a": (-0.001, 2_000.0),
    "f_hz": (40.0, 70.0),
    "e_import_kwh": (0.0, 1e9),
    "e_export_kwh": (0.0, 1e9),
    "e_total_kwh": (0.0, 1e9),
}
# An energy counter this far below the last one (relative) reads as a reset, not noise.
RESET_FRACTION = 0.01
# Counters are floats on many meters: ignore decreases smaller than this (kWh).
COUNTER_EPSILON_KWH = 0.01
# After this many backwards readings in a row, believe the meter and re-baseline.
BACKWARDS_REBASE = 3

ERROR_FLAGS = {"timeout": Q_TIMEOUT, "io": Q_TIMEOUT, "exception": Q_EXCEPTION, "crc": Q_CRC,
               "mismatch": Q_MISMATCH}


def family(name: str) -> str:
    """``p_w_l1`` -> ``p_w``: the quantity family that sets the range."""
    for suffix in ("_l1", "_l2", "_l3"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def decode_field(field: Field, regs: list[int], word_order: str | None = None) -> float:
    """The value of one field from its registers (value = raw * scale).

    ``word_order`` overrides the field's own (quirks.word_order).
    """
    order = word_order or field.word_order
    if field.size == 2:
        hi, lo = (regs[0], regs[1]) if order == "ABCD" else (regs[1], regs[0])
        raw_bytes = struct.pack(">HH", hi & 0xFFFF, lo & 0xFFFF)
        fmt = {"float32": ">f", "int32": ">i", "uint32": ">I"}[field.type]
    else:
        raw_bytes = struct.pack(">H", regs[0] & 0xFFFF)
        fmt = ">h" if field.type == "int16" else ">H"
    raw = struct.unpack(fmt, raw_bytes)[0]
    return float(raw) * field.scale


def encode_field(field: Field, value: float, word_order: str | None = None) -> list[int]:
    """The registers that decode to ``value`` (the inverse of decode_field).

    Integers are rounded and clamped to the type's range; used by the simulated meters.
    """
    order = word_order or field.word_order
    raw = value / field.scale
    if field.type == "float32":
        data = struct.pack(">f", raw)
    else:
        lo, hi, fmt = {"int16": (-(1 << 15), (1 << 15) - 1, ">h"),
                       "uint16": (0, (1 << 16) - 1, ">H"),
                       "int32": (-(1 << 31), (1 << 31) - 1, ">i"),
                       "uint32": (0, (1 << 32) - 1, ">I")}[field.type]
        iv = 0 if math.isnan(raw) else round(max(lo, min(hi, raw)))
        data = struct.pack(fmt, iv)
    words = list(struct.unpack(">%dH" % (len(data) // 2), data))
    if len(words) == 2 and order == "CDAB":
        words.reverse()
    return words


def decode_item(field: DiField, data: bytes, offset: int = 0) -> float:
    """One DL/T 645 value from a reply's data (BCD * scale). A value the meter did not
    send (a short reply) or that is not BCD (0xFF garbage) is NaN: bad data, never load."""
    chunk = data[offset:offset + field.size]
    if len(chunk) < field.size:
        return math.nan
    try:
        return bcd_decode(chunk, field.decimals, field.signed) * field.scale
    except FrameError:
        return math.nan


class Decoder:
    """Turns one meter's RawPolls into Readings; keeps only frozen/counter state."""

    def __init__(self, meter_plan: MeterPlan):
        self.plan = meter_plan
        profile = meter_plan.profile
        self.fields: list[Field] = [profile.quantities[n] for n in meter_plan.quantities
                                    if n in profile.quantities]
        # DL/T 645: where each planned quantity sits in the reply of its DI (a block DI
        # carries several values back to back).
        self._protocol = profile.protocol
        self._items: dict[int, list[tuple[DiField, int]]] = {}
        if profile.protocol == "dlt645":
            wanted = set(meter_plan.quantities)
            for req in meter_plan.requests:
                off = 0
                for f in req.fields:
                    if f.name in wanted:
                        self._items.setdefault(req.di, []).append((f, off))
                    off += f.size
        self.word_order = meter_plan.quirks.word_order
        self.frozen_s = float(getattr(meter_plan.quirks, "frozen_s", 900.0) or 900.0)
        self._last_values: dict[str, float] | None = None
        self._same_since: float | None = None
        self._counters: dict[str, float] = {}
        self._backwards: dict[str, int] = {}

    def values_from(self, raw: RawPoll) -> dict[str, float]:
        """Every planned quantity found in the poll's blocks, unchecked."""
        out: dict[str, float] = {}
        if self._items:
            for item in raw.blocks:
                if isinstance(item, RawItem):
                    for f, off in self._items.get(item.di, ()):
                        out[f.name] = decode_item(f, item.data, off)
            return out
        for f in self.fields:
            for b in raw.blocks:
                if not isinstance(b, RawBlock):
                    continue
                if b.fc == f.fc and b.address <= f.address and f.end <= b.address + len(
                        b.registers):
                    off = f.address - b.address
                    out[f.name] = decode_field(f, b.registers[off:off + f.size],
                                               self.word_order)
                    break
        return out

    def decode(self, raw: RawPoll) -> Reading:
        quality = 0
        if not raw.ok:
            quality |= ERROR_FLAGS.get(raw.error_kind, Q_TIMEOUT)
            if raw.error_kind == "exception" and self._protocol == "dlt645":
                quality = (quality & ~Q_EXCEPTION) | Q_ERROR_REPLY
        values = self.values_from(raw)
        clean: dict[str, float] = {}
        for name, v in values.items():
            if math.isnan(v):
                quality |= Q_NAN
                continue
            if math.isinf(v):
                quality |= Q_INF
                continue
            lo, hi = RANGES[family(name)]
            if not lo <= v <= hi:
                quality |= Q_RANGE
                continue
            clean[name] = v
        if raw.ok:
            if "p_w" not in clean:
                quality |= Q_MISSING
            elif clean["p_w"] < 0:
                quality |= Q_NEGATIVE
            quality |= self._check_frozen(raw.t, values)
            quality |= self._check_counters(clean)
        return Reading(raw.meter, raw.t, clean, quality)

    def _check_frozen(self, t: float, values: dict[str, float]) -> int:
        if not values:
            return 0
        # Compare bit patterns so that NaN == NaN counts as "the same" too.
        if self._last_values is not None and _same(values, self._last_values):
            if self._same_since is not None and t - self._same_since >= self.frozen_s:
                return Q_FROZEN
            return 0
        self._last_values = dict(values)
        self._same_since = t
        return 0

    def _check_counters(self, clean: dict[str, float]) -> int:
        flags = 0
        for name, v in clean.items():
            if not name.startswith("e_"):
                continue
            last = self._counters.get(name)
            if last is None or v >= last - COUNTER_EPSILON_KWH:
                self._counters[name] = max(v, last) if last is not None else v
                self._backwards[name] = 0
                continue
            if v <= last * RESET_FRACTION:
                flags |= Q_RESET
                self._counters[name] = v
                self._backwards[name] = 0
                continue
            flags |= Q_BACKWARDS
            n = self._backwards.get(name, 0) + 1
            self._backwards[name] = n
            if n >= BACKWARDS_REBASE:
                self._counters[name] = v
                self._backwards[name] = 0
        return flags


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    if a.keys() != b.keys():
        return False
    return all(struct.pack(">d", a[k]) == struct.pack(">d", b[k]) for k in a)
