# Frozen copy of agent/aggregate.py at 707850e (before telemetry schema 2), for the
# side-by-side figures of bench/delivery.py only.
"""Slot aggregates for the telemetry topic (agent and MCU alike).

The utility does not want every 10-s sample (the whole point of scoring on the gateway),
but it does want a compact record per meter and slot: mean, min and max power, energy
used, power factor and how many samples were good or bad. Pure: time comes in as ``t``.
Slots are aligned to UNIX time, so all meters' slots line up.

One source for both runtimes (MicroPython-safe: imports only array, agent.model and
micropython). The numbers are a run of ``SIZE`` values of an ``array('d')`` at offset
``o``, inside the meter's one array (agent/pipeline.py; a Slot object of its own would
cost an instance, a map and an array header more per meter on MicroPython). Counts and
flags are whole numbers, exact in a double.
"""

from agent.model import BAD_DATA, quality_names

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_INF = float("inf")
_NAN = float("nan")

_SLOT_S = const(0)  # slot length, s
_START = const(1)  # start of the open slot (valid when _HAS_START is 1)
_HAS_START = const(2)  # 0 until the first reading
_N_GOOD = const(3)  # readings with a usable power
_N_BAD = const(4)  # other readings
_P_SUM = const(5)  # sum, lowest and highest of the good powers, W
_P_MIN = const(6)
_P_MAX = const(7)
_PF_SUM = const(8)  # sum of |pf| over the readings that carried one
_N_PF = const(9)
_E_FIRST = const(10)  # first and last import counter of the slot (NaN: none yet; the
_E_LAST = const(11)  # readings are the decoder's clean values, never NaN)
_FLAGS = const(12)  # quality flags of every reading, OR-ed
SIZE = const(13)


def init(v, o, slot_s):
    """An empty aggregate of ``slot_s``-second slots at v[o:o + SIZE]."""
    if slot_s <= 0:
        raise ValueError("slot_s must be > 0")
    v[o + _SLOT_S] = slot_s
    v[o + _START] = 0.0
    v[o + _HAS_START] = 0.0
    _reset(v, o)


def _reset(v, o):
    """Empty the aggregate, keeping its length and start."""
    for i in range(o + _N_GOOD, o + SIZE):
        v[i] = 0.0
    v[o + _P_MIN] = _INF
    v[o + _P_MAX] = -_INF
    v[o + _E_FIRST] = _NAN
    v[o + _E_LAST] = _NAN


def add(v, o, t, values, quality):
    """Add a reading; returns the closed slot's dict when the reading opens a new slot."""
    slot_s = v[o + _SLOT_S]
    start = (t // slot_s) * slot_s
    closed = None
    if v[o + _HAS_START] == 0.0:
        v[o + _START] = start
        v[o + _HAS_START] = 1.0
    elif start > v[o + _START]:
        closed = close(v, o)
        v[o + _START] = start
    elif start < v[o + _START]:
        # Clock went backwards: count it as bad data in the current slot, learn nothing.
        v[o + _N_BAD] += 1.0
        return None
    if (quality & BAD_DATA) == 0 and "p_w" in values:
        p = values["p_w"]
        v[o + _N_GOOD] += 1.0
        v[o + _P_SUM] += p
        v[o + _P_MIN] = min(v[o + _P_MIN], p)
        v[o + _P_MAX] = max(v[o + _P_MAX], p)
        pf = values.get("pf")
        if pf is not None:
            v[o + _PF_SUM] += abs(pf)
            v[o + _N_PF] += 1.0
        e = values.get("e_import_kwh")
        if e is not None:
            if v[o + _E_FIRST] != v[o + _E_FIRST]:
                v[o + _E_FIRST] = e
            v[o + _E_LAST] = e
    else:
        v[o + _N_BAD] += 1.0
    v[o + _FLAGS] = int(v[o + _FLAGS]) | quality
    return closed


def close(v, o):
    """The aggregate of the open slot (None when it saw nothing), then empty it."""
    g = int(v[o + _N_GOOD])
    n_bad = int(v[o + _N_BAD])
    if v[o + _HAS_START] == 0.0 or (g + n_bad) == 0:
        _reset(v, o)
        return None
    n_pf = int(v[o + _N_PF])
    out = {
        "slot_start": v[o + _START], "slot_s": v[o + _SLOT_S], "samples": g,
        "bad_samples": n_bad,
        "p_mean_w": v[o + _P_SUM] / g if g else None,
        "p_min_w": v[o + _P_MIN] if g else None,
        "p_max_w": v[o + _P_MAX] if g else None,
        "pf_mean": v[o + _PF_SUM] / n_pf if n_pf else None,
        "energy_kwh": (v[o + _E_LAST] - v[o + _E_FIRST])
        if v[o + _E_FIRST] == v[o + _E_FIRST] else None,
        # The meter's absolute import counter at the slot's last good reading: what a
        # total_increasing energy sensor (Home Assistant) needs; None without one.
        "e_import_kwh": v[o + _E_LAST] if v[o + _E_FIRST] == v[o + _E_FIRST] else None,
        "quality": quality_names(int(v[o + _FLAGS])),
    }
    _reset(v, o)
    return out


def state(v, o):
    """The open slot as JSON-able finite numbers, checkpointed with the detector so a
    crash does not lose a partly filled slot (an hourly slot is rarely completed by a
    gateway that restarts every few minutes)."""
    good = v[o + _N_GOOD] > 0
    has_e = v[o + _E_FIRST] == v[o + _E_FIRST]
    return {"slot_s": v[o + _SLOT_S],
            "slot_start": v[o + _START] if v[o + _HAS_START] else None,
            "n_good": int(v[o + _N_GOOD]), "n_bad": int(v[o + _N_BAD]),
            "p_sum": v[o + _P_SUM], "p_min": v[o + _P_MIN] if good else None,
            "p_max": v[o + _P_MAX] if good else None, "pf_sum": v[o + _PF_SUM],
            "n_pf": int(v[o + _N_PF]), "e_first": v[o + _E_FIRST] if has_e else None,
            "e_last": v[o + _E_LAST] if has_e else None, "flags": int(v[o + _FLAGS])}


def restore(v, o, saved):
    """Continue the slot ``state()`` saved; ValueError/KeyError/TypeError when it does not
    fit (another slot length: the slot is then simply started afresh), leaving v as is."""
    slot_s = v[o + _SLOT_S]
    if float(saved["slot_s"]) != slot_s:
        raise ValueError("telemetry slot was %r s, settings say %r s"
                         % (saved["slot_s"], slot_s))
    start = saved["slot_start"]
    n_good = int(saved["n_good"])
    e_first, e_last = saved["e_first"], saved["e_last"]
    numbers = [slot_s, 0.0 if start is None else float(start), 0.0 if start is None else 1.0,
               n_good, int(saved["n_bad"]), float(saved["p_sum"]),
               float(saved["p_min"]) if n_good > 0 else _INF,
               float(saved["p_max"]) if n_good > 0 else -_INF, float(saved["pf_sum"]),
               int(saved["n_pf"]), _NAN if e_first is None else float(e_first),
               _NAN if e_last is None else float(e_last), int(saved["flags"])]
    for i in range(SIZE):
        v[o + i] = numbers[i]
