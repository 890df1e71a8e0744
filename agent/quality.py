"""Registers + field table -> values with quality flags, per meter (agent and MCU alike).

Bad data is not load (DESIGN.md 2): a value that is NaN, infinite or physically
implausible is dropped from the values and flagged; a reading whose every value repeats
exactly for longer than ``frozen_s`` is flagged frozen (a live meter's voltage and
frequency never repeat to the last float bit for long); an energy counter that goes down
is flagged backwards (and after ``BACKWARDS_REBASE`` such readings in a row believed: it
becomes the new baseline), one that falls to (near) zero is flagged reset and becomes the
new baseline; a failed poll carries the failure (timeout, exception, CRC) as a flag and no
values. The decoder never scores: it only says what the numbers are and whether they can
be trusted (``Reading.scorable``).

This one source runs on the agent and, compiled by firmware_bridge/build.py, on the MCU,
so a reading means the same whichever side decoded it (tests/pipeline/checks.py runs the
same checks on both runtimes). It is MicroPython-safe: imports only struct, array,
agent.model and micropython; no typing.

A meter is described by a compact field table, ``[[name, fc, address, type, word_order,
scale], ...]`` (``fields()`` builds it from a profile and its quirks; the firmware build
ships it as JSON; agent/decode.py holds the agent's side: Profile fields, RawPolls and
Readings). The only state kept per meter is for the frozen and counter checks: a
run of ``check_size(len(fields))`` numbers in an ``array('d')`` at offset ``o`` (on the
device inside the meter's one array: an object per meter would cost heap).
"""

import struct

from agent.failures import Failure
from agent.model import (
    Q_BACKWARDS,
    Q_CRC,
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
)

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# Plausible ranges per quantity family for meters up to a small commercial connection
# (a few hundred amps). Outside them the value is a decoding or wiring problem, not load.
RANGES = {
    "p_w": (-500000.0, 500000.0),
    "q_var": (-500000.0, 500000.0),
    "s_va": (0.0, 500000.0),
    "pf": (-1.001, 1.001),
    "v_v": (0.0, 500.0),
    "i_a": (-0.001, 2000.0),
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
FROZEN_S = 900.0

ERROR_FLAGS = {Failure.TIMEOUT: Q_TIMEOUT, Failure.IO: Q_TIMEOUT, Failure.EXCEPTION: Q_EXCEPTION,
               Failure.CRC: Q_CRC, Failure.MISMATCH: Q_MISMATCH}
_INF = float("inf")
_NAN = float("nan")
_FMT = {"float32": ">f", "int32": ">i", "uint32": ">I", "int16": ">h", "uint16": ">H"}

# The check run: scalars, then three runs of one value per field: the last raw values
# (for the frozen check), whether each was present, and the highest value seen of each
# energy counter (NaN: none yet).
_SAME_SINCE = const(0)  # when the raw values last changed
_FROZEN_S = const(1)  # unchanged raw values for this long flag Q_FROZEN
# Backwards readings in a row, per field, packed as base-4 digits (each < BACKWARDS_REBASE
# <= 3; exact in a double for up to 26 fields): one number instead of one per field.
_BACK = const(2)
_PER_FIELD = const(3)


def family(name):
    """``p_w_l1`` -> ``p_w``: the quantity family that sets the range."""
    for suffix in ("_l1", "_l2", "_l3"):
        if name.endswith(suffix):
            return name[:-3]
    return name


def decode_value(ftype, order, scale, regs):
    """One value from its registers (value = raw * scale); ``order`` ABCD or CDAB."""
    if ftype in ("float32", "int32", "uint32"):
        hi, lo = (regs[0], regs[1]) if order == "ABCD" else (regs[1], regs[0])
        raw = struct.unpack(_FMT[ftype], struct.pack(">HH", hi & 0xFFFF, lo & 0xFFFF))[0]
    else:
        raw = struct.unpack(_FMT[ftype], struct.pack(">H", regs[0] & 0xFFFF))[0]
    return float(raw) * scale


def bcd_value(blocks, di, ftype, off, scale):
    """A DL/T 645 field from the reply to ``di`` (a ``(0x11, di, bytes)`` block): NaN when
    the reply is short or not BCD (bad data, never load), None when ``di`` was not read.
    ``ftype`` is "bcd<n>" or "bcds<n>" (signed, n bytes), ``off`` its offset in the reply,
    ``scale`` the value of one BCD unit."""
    from agent.dlt645.codec import FrameError, bcd_decode

    for bfc, bdi, data in blocks:
        if bfc == 0x11 and bdi == di:
            size = int(ftype[-1])
            chunk = data[off:off + size]
            if len(chunk) < size:
                return _NAN
            try:
                return bcd_decode(chunk, 0, ftype[3] == "s") * scale
            except FrameError:
                return _NAN
    return None


def values_from(table, blocks):
    """Every field found in the blocks (``(fc, address, registers)``, or for DL/T 645
    ``(0x11, DI, bytes)``), unchecked."""
    raw = {}
    for name, fc, address, ftype, order, scale in table:
        if fc == 0x11:
            x = bcd_value(blocks, address, ftype, order, scale)
            if x is not None:
                raw[name] = x
            continue
        size = 1 if ftype in ("int16", "uint16") else 2
        for bfc, baddr, regs in blocks:
            if bfc == fc and baddr <= address and address + size <= baddr + len(regs):
                off = address - baddr
                raw[name] = decode_value(ftype, order, scale, regs[off:off + size])
                break
    return raw


# --------------------------------------------------------------------------- checks


def check_size(nf):
    """How many numbers the checks of a meter with ``nf`` fields keep."""
    return _PER_FIELD + 3 * nf


def check_init(v, o, nf, frozen_s):
    for i in range(o, o + _PER_FIELD + 2 * nf):
        v[i] = 0.0
    v[o + _FROZEN_S] = frozen_s
    for i in range(o + _PER_FIELD + 2 * nf, o + _PER_FIELD + 3 * nf):
        v[i] = _NAN


def decode(v, o, table, t, blocks, error_kind):
    """One poll -> ``(values, quality)``; ``error_kind`` "" for a poll that succeeded.

    Updates the frozen and counter checks kept at ``v[o:]``."""
    return check(v, o, table, t, values_from(table, blocks), error_kind)


def check(v, o, table, t, raw, error_kind):
    """Values as read (by field name) -> ``(clean values, quality)``, updating the frozen
    and counter checks kept at ``v[o:]`` (only ``table``'s names are used here)."""
    quality = ERROR_FLAGS.get(error_kind, Q_TIMEOUT) if error_kind else 0
    clean = {}
    for name in raw:
        x = raw[name]
        if x != x:
            quality |= Q_NAN
            continue
        if x == _INF or x == -_INF:
            quality |= Q_INF
            continue
        lo, hi = RANGES.get(family(name), (-_INF, _INF))
        if not lo <= x <= hi:
            quality |= Q_RANGE
            continue
        clean[name] = x
    if not error_kind:
        if "p_w" not in clean:
            quality |= Q_MISSING
        elif clean["p_w"] < 0:
            quality |= Q_NEGATIVE
        quality |= _frozen(v, o, table, t, raw)
        quality |= _counters(v, o, table, clean)
    return clean, quality


# Identical readings are suspicious only when they include a quantity that never stands
# still on a live meter (a voltage, the grid frequency). A meter read for power alone (a
# slow 2400-baud DL/T 645 line read for p_w only) shows a steady load as identical
# readings, and that is load, not a stuck meter.
LIVE_QUANTITIES = ("v_v", "f_hz")


def _frozen(v, o, table, t, raw):
    if not raw:
        return 0
    live = False
    for name in raw:
        if family(name) in LIVE_QUANTITIES:
            live = True
            break
    if not live:
        return 0
    nf = len(table)
    # Before any values are kept every presence flag is 0, so _same() is False.
    if _same(raw, table, v, o):
        if t - v[o + _SAME_SINCE] >= v[o + _FROZEN_S]:
            return Q_FROZEN
        return 0
    p = o + _PER_FIELD
    for i in range(nf):
        x = raw.get(table[i][0])
        v[p + i] = 0.0 if x is None else x
        v[p + nf + i] = 0.0 if x is None else 1.0
    v[o + _SAME_SINCE] = t
    return 0


def _same(raw, table, v, o):
    """True if ``raw`` (by field name) are the values kept at ``v[o:]`` (NaN == NaN)."""
    nf = len(table)
    p = o + _PER_FIELD
    for i in range(nf):
        x = raw.get(table[i][0])
        if x is None:
            if v[p + nf + i] != 0.0:
                return False
        else:
            if v[p + nf + i] == 0.0:
                return False
            y = v[p + i]
            if x != y and not (x != x and y != y):
                return False
    return True


def _counters(v, o, table, clean):
    flags = 0
    base = o + _PER_FIELD + 2 * len(table)
    for name in clean:
        if not name.startswith("e_"):
            continue
        i = 0
        while table[i][0] != name:  # the counter's slot: its first field entry
            i += 1
        x = clean[name]
        last = v[base + i]
        digit = 4.0 ** i
        back = int(v[o + _BACK] // digit) % 4
        if last != last or x >= last - COUNTER_EPSILON_KWH:
            v[base + i] = x if last != last else max(x, last)
            back_to = 0
        elif x <= last * RESET_FRACTION:
            flags |= Q_RESET
            v[base + i] = x
            back_to = 0
        else:
            flags |= Q_BACKWARDS
            back_to = back + 1
            if back_to >= BACKWARDS_REBASE:
                v[base + i] = x
                back_to = 0
        v[o + _BACK] += (back_to - back) * digit
    return flags


def frozen_s(v, o):
    """The frozen limit kept in a check run."""
    return v[o + _FROZEN_S]
