"""The agent's side of decoding: profile Fields, DL/T 645 items, RawPolls and Readings
around the shared checks of agent/quality.py (the MCU runs those too; this module stays
on CPython, so the board's bytecode carries none of it). The decoder never scores: it
only says what the numbers are and whether they can be trusted (``Reading.scorable``).
"""

from __future__ import annotations

import math
import struct
from array import array
from typing import TYPE_CHECKING, Callable

from agent import quality
from agent.dlt645.codec import FrameError, bcd_decode
from agent.failures import Failure
from agent.model import Q_ERROR_REPLY, Q_EXCEPTION, RawBlock, RawItem, RawPoll, Reading
from agent.quality import family

if TYPE_CHECKING:  # pragma: no cover
    from agent.config import MeterPlan
    from agent.profiles import DiField, Field

__all__ = ["Decoder", "blocks", "decode_field", "decode_item", "encode_field", "family",
           "fields"]


def decode_field(field: Field, regs: list[int], word_order: str | None = None) -> float:
    """The value of a profile Field from its registers; ``word_order`` overrides the
    field's own (quirks.word_order)."""
    return quality.decode_value(field.type, word_order or field.word_order, field.scale, regs)


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
        iv = 0 if raw != raw else round(max(lo, min(hi, raw)))
        data = struct.pack(fmt, iv)
    words = list(struct.unpack(">%dH" % (len(data) // 2), data))
    if len(words) == 2 and order == "CDAB":
        words.reverse()
    return words


def fields(profile_fields: list[Field], word_order: str | None = None) -> list[list]:
    """Profile Fields -> the compact table (``word_order``: the quirk that overrides)."""
    return [[f.name, f.fc, f.address, f.type, word_order or f.word_order, f.scale]
            for f in profile_fields]


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
    """Turns one meter's RawPolls into Readings.

    The frozen and counter checks keep their state in a check run (agent/quality.py):
    the decoder's own, or the one of the meter's pipeline passed to ``decode()``."""

    def __init__(self, meter_plan: MeterPlan):
        self.plan = meter_plan
        profile = meter_plan.profile
        planned = [profile.quantities[n] for n in meter_plan.quantities
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
            # The checks only need each quantity's name and place.
            self.fields = [[f.name, 0, 0, "", "", 1.0] for f in planned]
        else:
            self.fields = fields(planned, meter_plan.quirks.word_order)
        self.frozen_s = float(getattr(meter_plan.quirks, "frozen_s", None)
                              or quality.FROZEN_S)
        self._v = array("d", [0.0] * quality.check_size(len(self.fields)))
        quality.check_init(self._v, 0, len(self.fields), self.frozen_s)

    def values_from(self, raw: RawPoll) -> dict[str, float]:
        """Every planned quantity found in the poll's blocks, unchecked."""
        if self._items:
            out: dict[str, float] = {}
            for item in raw.blocks:
                if isinstance(item, RawItem):
                    for f, off in self._items.get(item.di, ()):
                        out[f.name] = decode_item(f, item.data, off)
            return out
        return quality.values_from(self.fields, blocks(raw))

    def check(self, t: float, values: dict[str, float],
              error_kind: str) -> tuple[dict[str, float], int]:
        """The shared checks on the decoder's own check run."""
        return quality.check(self._v, 0, self.fields, t, values, error_kind)

    def decode(self, raw: RawPoll,
               check: Callable[[float, dict, str], tuple[dict, int]] | None = None
               ) -> Reading:
        """``check``: the checks of a pipeline that keeps the meter's check run itself."""
        values, flags = (check or self.check)(raw.t, self.values_from(raw), raw.error_kind)
        if raw.error_kind == Failure.EXCEPTION and self._protocol == "dlt645":
            flags = (flags & ~Q_EXCEPTION) | Q_ERROR_REPLY
        return Reading(raw.meter, raw.t, values, flags)


def blocks(raw: RawPoll) -> list[tuple[int, int, list[int]]]:
    """A RawPoll's Modbus blocks as ``(fc, address, registers)``."""
    return [(b.fc, b.address, b.registers) for b in raw.blocks if isinstance(b, RawBlock)]
