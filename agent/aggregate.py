"""Slot aggregates for the telemetry topic (agent and MCU alike).

The utility does not want every 10-s sample (the whole point of scoring on the gateway),
but it does want a compact record per meter and slot of every quantity the meter is read
for: mean, min and max of each over the slot, how many samples were good or bad and their
quality flags, and each energy counter's value at the slot's end (billing checks and Home
Assistant's energy view need the counter itself, not only its increase). Pure: time comes
in as ``t``. Slots are aligned to UNIX time, so all meters' slots line up.

One source for both runtimes (MicroPython-safe: imports only array, agent.model and
micropython). The numbers are a run of ``size(table, mask)`` values of an ``array('d')``
at offset ``o``, inside the meter's one array (agent/pipeline.py; a Slot object of its own
would cost an instance, a map and an array header more per meter on MicroPython).
``table`` is the meter's field table (rows that start with the field's name; shared by
every meter of a class, so nothing per meter); ``mask`` has bit i set when field i is
published (the meter class's ``telemetry_quantities``) and is kept in the run itself.
A measured quantity keeps 4 numbers (sum, min, max, misses), an energy counter 2 (first
and last value of the slot): the MCU's default p_w, pf and import counter cost 10
numbers. Counts and flags are whole numbers, exact in a double.
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
_START = const(1)  # start of the open slot (NaN until the first reading)
_N_GOOD = const(2)  # readings with a usable power
_N_BAD = const(3)  # other readings
_FLAGS = const(4)  # quality flags of every reading, OR-ed
_MASK = const(5)  # bit i: field i is aggregated
_HEAD = const(6)
_STAT = const(4)  # sum, min, max and misses (good readings without it) of a quantity
_COUNTER = const(2)  # first and last value of an energy counter
IMPORT = "e_import_kwh"


def is_counter(name):
    """Energy counters (``e_*``) are reported by value, not by mean/min/max."""
    return name.startswith("e_")


def all_mask(table):
    return (1 << len(table)) - 1


def mask_of(table, published):
    """The mask of the fields of ``table`` whose names are in ``published`` (None: all)."""
    if published is None:
        return all_mask(table)
    m = 0
    for i in range(len(table)):
        if table[i][0] in published:
            m |= 1 << i
    return m


def size(table, mask):
    """How many numbers the slot of a meter with these fields keeps."""
    n = _HEAD
    for i in range(len(table)):
        if (mask >> i) & 1:
            n += _COUNTER if is_counter(table[i][0]) else _STAT
    return n


def init(v, o, slot_s, table, mask):
    """An empty aggregate of ``slot_s``-second slots at v[o:o + size(table, mask)]."""
    if slot_s <= 0:
        raise ValueError("slot_s must be > 0")
    v[o + _SLOT_S] = slot_s
    v[o + _START] = _NAN
    v[o + _MASK] = mask
    _reset(v, o, table)


def restart(v, o, table):
    """Empty the aggregate and forget its slot (the next reading opens one)."""
    v[o + _START] = _NAN
    _reset(v, o, table)


def _reset(v, o, table):
    """Empty the aggregate, keeping its length, start and mask."""
    v[o + _N_GOOD] = 0.0
    v[o + _N_BAD] = 0.0
    v[o + _FLAGS] = 0.0
    plan = _plan(v, o, table)
    for _name, p, lo, hi in plan[1]:
        v[p] = 0.0
        v[lo] = _INF
        v[hi] = -_INF
        v[p + 3] = 0.0
    for _name, p in plan[2]:
        v[p] = _NAN
        v[p + 1] = _NAN


# Where each published field's numbers sit, per table, mask and offset: one plan per meter
# class (its meters share the table, the mask and, with the same fields, the offset), so
# nothing per meter, and the hot loop of add() walks only what it aggregates instead of
# testing every field's mask bit and name on every reading. Keyed by id(table); the
# entry holds the table, so the id cannot be reused by another table while it is cached,
# and its offset and mask, so a table used with another mask gets its own plan made.
_PLANS = {}


def _plan(v, o, table):
    """``(table, ((name, p, p + 1, p + 2), ...) of the measured quantities (where its sum,
    min and max are), ((name, p), ...) of the counters, o, mask)``, p being where the
    field's numbers start in v."""
    plan = _PLANS.get(id(table))
    if plan is not None and plan[0] is table and plan[3] == o and plan[4] == v[o + _MASK]:
        return plan
    mask = int(v[o + _MASK])
    stats = []
    counters = []
    p = o + _HEAD
    for i in range(len(table)):
        if (mask >> i) & 1:
            name = table[i][0]
            if is_counter(name):
                counters.append((name, p))
                p += _COUNTER
            else:
                stats.append((name, p, p + 1, p + 2))
                p += _STAT
    if len(_PLANS) >= 32:  # bounded should tables come and go (tests, reloads)
        _PLANS.clear()
    plan = _PLANS[id(table)] = (table, tuple(stats), tuple(counters), o, v[o + _MASK])
    return plan


def add(v, o, table, t, values, quality):
    """Add a reading; returns the closed slot's dict when the reading opens a new slot."""
    slot_s = v[o + _SLOT_S]
    start = (t // slot_s) * slot_s
    closed = None
    have = v[o + _START]
    if have != have:
        v[o + _START] = start
    elif start > have:
        closed = close(v, o, table)
        v[o + _START] = start
    elif start < have:
        # Clock went backwards: count it as bad data in the current slot, learn nothing.
        v[o + _N_BAD] += 1.0
        return None
    if (quality & BAD_DATA) == 0 and "p_w" in values:
        v[o + _N_GOOD] += 1.0
        plan = _PLANS.get(id(table))  # _plan's own check, inlined: every reading
        if plan is None or plan[0] is not table or plan[3] != o or plan[4] != v[o + _MASK]:
            plan = _plan(v, o, table)
        get = values.get
        # Hot: every reading, every published quantity (bench/delivery.py CPU figure).
        for name, p, lo, hi in plan[1]:
            x = get(name)
            if x is None:
                v[p + 3] += 1.0  # missed: rare, so counting misses is cheaper
                continue
            v[p] += x
            if x < v[lo]:  # a new low; the slot's first reading is its high too
                if v[hi] < x:
                    v[hi] = x
                v[lo] = x
            elif x > v[hi]:
                v[hi] = x
        for name, p in plan[2]:  # energy counters: first and last value
            x = get(name)
            if x is not None:
                if v[p] != v[p]:
                    v[p] = x
                v[p + 1] = x
    else:
        v[o + _N_BAD] += 1.0
    v[o + _FLAGS] = int(v[o + _FLAGS]) | quality
    return closed


def close(v, o, table):
    """The aggregate of the open slot (None when it saw nothing), then empty it.

    ``stats`` maps each measured quantity to ``[mean, min, max, count]`` (None for the
    first three when no good reading carried it), ``counters`` each energy counter to its
    last good value (None without one); ``energy_kwh`` is the import counter's increase
    over the slot and ``p_mean_w``/``p_min_w``/``p_max_w`` repeat the power's stats for
    the agent's own consumers (the web history)."""
    g = int(v[o + _N_GOOD])
    n_bad = int(v[o + _N_BAD])
    start = v[o + _START]
    if start != start or (g + n_bad) == 0:
        _reset(v, o, table)
        return None
    stats = {}
    counters = {}
    energy = None
    plan = _plan(v, o, table)
    for name, p, lo, hi in plan[1]:
        n = g - int(v[p + 3])
        stats[name] = [v[p] / n, v[lo], v[hi], n] if n else [None, None, None, 0]
    for name, p in plan[2]:
        last = v[p + 1]
        counters[name] = last if last == last else None
        if name == IMPORT and last == last:
            energy = last - v[p]
    pw = stats.get("p_w") or [None, None, None, 0]
    out = {
        "slot_start": start, "slot_s": v[o + _SLOT_S], "samples": g, "bad_samples": n_bad,
        "p_mean_w": pw[0], "p_min_w": pw[1], "p_max_w": pw[2], "energy_kwh": energy,
        "stats": stats, "counters": counters,
        "quality": quality_names(int(v[o + _FLAGS])),
    }
    _reset(v, o, table)
    return out


def state(v, o, table):
    """The open slot as JSON-able finite numbers, checkpointed with the detector so a
    crash does not lose a partly filled slot (an hourly slot is rarely completed by a
    gateway that restarts every few minutes). ``run`` is the per-field numbers in table
    order, None where a number is not finite (an empty min, a counter not seen yet)."""
    start = v[o + _START]
    run = []
    for i in range(o + _HEAD, o + size(table, int(v[o + _MASK]))):
        x = v[i]
        run.append(None if (x != x or x == _INF or x == -_INF) else x)
    return {"slot_s": v[o + _SLOT_S], "slot_start": None if start != start else start,
            "n_good": int(v[o + _N_GOOD]), "n_bad": int(v[o + _N_BAD]),
            "flags": int(v[o + _FLAGS]), "fields": [table[i][0] for i in range(len(table))
                                                    if (int(v[o + _MASK]) >> i) & 1],
            "run": run}


def restore(v, o, table, saved):
    """Continue the slot ``state()`` saved; ValueError/KeyError/TypeError when it does not
    fit (another slot length or other fields: the slot is then simply started afresh),
    leaving v as is."""
    slot_s = v[o + _SLOT_S]
    if float(saved["slot_s"]) != slot_s:
        raise ValueError("telemetry slot was %r s, settings say %r s"
                         % (saved["slot_s"], slot_s))
    mask = int(v[o + _MASK])
    fields = [table[i][0] for i in range(len(table)) if (mask >> i) & 1]
    if list(saved["fields"]) != fields:
        raise ValueError("telemetry slot had other quantities")
    run = saved["run"]
    if len(run) != size(table, mask) - _HEAD:
        raise ValueError("telemetry slot run has %d numbers, not %d"
                         % (len(run), size(table, mask) - _HEAD))
    numbers = []
    p = 0
    n_good = int(saved["n_good"])
    for name in fields:
        if is_counter(name):
            numbers.append(_NAN if run[p] is None else float(run[p]))
            numbers.append(_NAN if run[p + 1] is None else float(run[p + 1]))
            p += _COUNTER
        else:
            missed = int(run[p + 3])
            if not 0 <= missed <= n_good:
                raise ValueError("telemetry slot: %s missed %d of %d readings"
                                 % (name, missed, n_good))
            seen = n_good - missed > 0
            numbers.append(float(run[p]))
            numbers.append(float(run[p + 1]) if seen else _INF)
            numbers.append(float(run[p + 2]) if seen else -_INF)
            numbers.append(missed)
            p += _STAT
    start = saved["slot_start"]
    head = [slot_s, _NAN if start is None else float(start), n_good,
            int(saved["n_bad"]), int(saved["flags"]), mask]
    for i in range(_HEAD):
        v[o + i] = head[i]
    for i in range(len(numbers)):
        v[o + _HEAD + i] = numbers[i]
