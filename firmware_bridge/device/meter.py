"""One meter on the device: poll plan, decoding, quality flags, detector, policy, health.

The agent does this in decode.py, aggregate.py and runtime.MeterPipeline; the device
mirrors the same rules so that a reading, a telemetry slot and an alert mean the same
whichever side produced them. The compact meter table comes from the build
(firmware_bridge/devconfig.py): ``reads`` = [[fc, address, count], ...] and ``fields`` =
[[name, fc, address, type, word_order, scale], ...], already merged with quirks.
"""

import struct
from array import array

from agent.model import (
    BAD_DATA,
    Q_BACKWARDS,
    Q_CRC,
    Q_EXCEPTION,
    Q_FROZEN,
    Q_INF,
    Q_MISSING,
    Q_NAN,
    Q_NEGATIVE,
    Q_RANGE,
    Q_RESET,
    Q_TIMEOUT,
    Event,
    quality_names,
)
from agent.policy import Policy
from agent.signature import Detector

try:
    from micropython import const
except ImportError:  # CPython (tools that import this file)

    def const(x):
        return x


# Same plausible ranges as agent/decode.py RANGES (by quantity family).
RANGES = {
    "p_w": (-500000.0, 500000.0), "q_var": (-500000.0, 500000.0), "s_va": (0.0, 500000.0),
    "pf": (-1.001, 1.001), "v_v": (0.0, 500.0), "i_a": (-0.001, 2000.0),
    "f_hz": (40.0, 70.0), "e_import_kwh": (0.0, 1e9), "e_export_kwh": (0.0, 1e9),
    "e_total_kwh": (0.0, 1e9),
}
ERROR_FLAGS = {"timeout": Q_TIMEOUT, "io": Q_TIMEOUT, "exception": Q_EXCEPTION, "crc": Q_CRC}
_INF = float("inf")
_NAN = float("nan")
_FMT = {"float32": ">f", "int32": ">i", "uint32": ">I", "int16": ">h", "uint16": ">H"}


# Read-only tables of detectors and policies with equal settings, shared between meters.
_SHARED = {}


def _share(obj, name, settings):
    """Let meters with the same settings share one copy of the core's read-only tables.

    On MicroPython every float in a settings dict is a heap object: a detector's 28
    settings and its night/evening slot lists cost about 1 KB per meter on the unix port
    (bench/footprint.py), the same for every meter of a class. The core only assigns
    ``obj.<name>`` in ``__init__`` and never mutates it, so later meters point at the first
    meter's copy. (The detector shares its table itself for the first 8 setting classes;
    this covers any number.) Anything the core renames is simply left unshared.
    """
    if not isinstance(settings, dict) or not hasattr(obj, name):
        return
    key = (type(obj).__name__,) + tuple(sorted(settings.items()))
    canon = _SHARED.get(key)
    if canon is None:
        _SHARED[key] = getattr(obj, name)
        return
    setattr(obj, name, canon)


def family(name):
    for suffix in ("_l1", "_l2", "_l3"):
        if name.endswith(suffix):
            return name[:-3]
    return name


def decode_field(ftype, order, scale, regs):
    if ftype in ("float32", "int32", "uint32"):
        hi, lo = (regs[0], regs[1]) if order == "ABCD" else (regs[1], regs[0])
        raw = struct.unpack(_FMT[ftype], struct.pack(">HH", hi, lo))[0]
    else:
        raw = struct.unpack(_FMT[ftype], struct.pack(">H", regs[0]))[0]
    return float(raw) * scale


# The telemetry slot aggregate, as agent/aggregate.SlotAggregate (same output keys). Its
# numbers are a run of the meter's array (after the per-field runs, only when the meter
# makes telemetry), at these offsets from the run's start: a Slot object of its own would
# cost an instance, a map and an array header more per meter on MicroPython. The counts
# and flags are whole numbers, exact in a double.
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
_E_LAST = const(11)  # readings are decode()'s clean values, never NaN)
_FLAGS = const(12)  # quality flags of every reading, OR-ed
_NSLOT = const(13)  # length of the run


def _slot_reset(v, o):
    """Empty the slot aggregate at v[o:], keeping its length and start."""
    for i in range(o + _N_GOOD, o + _NSLOT):
        v[i] = 0.0
    v[o + _P_MIN] = _INF
    v[o + _P_MAX] = -_INF
    v[o + _E_FIRST] = _NAN
    v[o + _E_LAST] = _NAN


def _slot_add(v, o, t, values, quality):
    """Add a reading; returns the closed slot's dict when the reading opens a new slot."""
    slot_s = v[o + _SLOT_S]
    start = (t // slot_s) * slot_s
    closed = None
    if v[o + _HAS_START] == 0.0:
        v[o + _START] = start
        v[o + _HAS_START] = 1.0
    elif start > v[o + _START]:
        closed = _slot_close(v, o)
        v[o + _START] = start
    elif start < v[o + _START]:
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


def _slot_close(v, o):
    g = int(v[o + _N_GOOD])
    n_bad = int(v[o + _N_BAD])
    if v[o + _HAS_START] == 0.0 or (g + n_bad) == 0:
        _slot_reset(v, o)
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
        "e_import_kwh": v[o + _E_LAST] if v[o + _E_FIRST] == v[o + _E_FIRST] else None,
        "quality": quality_names(int(v[o + _FLAGS])),
    }
    _slot_reset(v, o)
    return out


# A meter's own numbers, in one array('d') (on MicroPython each instance attribute is a
# 16-byte map entry and each float in one a heap object of its own): the scalars, then
# three runs of one value per entry of ``fields``: the last raw values (for the frozen
# check), whether each was present, and the highest value seen of each energy counter (NaN:
# none yet), then the telemetry slot's run (_NSLOT values) if the meter makes one. The
# health figures are kept here too, instead of in an agent.model.Health object (an
# instance with nine attributes, ~220 B a meter); health_event() sends the same dict.
_POLL_S = const(0)  # poll interval, s (read as .poll_s)
_FROZEN_S = const(1)  # unchanged raw values for this long flag Q_FROZEN
_NEXT_T = const(2)  # when the next poll is due (read and set as .next_t)
_SAME_SINCE = const(3)  # when the raw values last changed
_SEQ = const(4)  # message counter: makes every event id unique
_SAMPLES = const(5)  # readings fed to the detector (read as .samples)
_UNIT = const(6)  # Modbus unit id
_RESTORED = const(7)  # 1 if detector and policy came from saved state (read as .restored)
_H_STATE = const(8)  # health state, an index into _HEALTH ("ok", "degraded", "down")
_H_SENT = const(9)  # the health state last sent in an event (-1: none yet)
_H_POLLS = const(10)  # polls done
_H_LAST_OK = const(11)  # time of the last successful poll
_H_FAILS = const(12)  # consecutive failed polls (read as .failures)
_H_BACKOFF = const(13)  # current back-off, s
_PER_FIELD = const(14)  # start of the three runs of len(fields) values
_HEALTH = ("ok", "degraded", "down")


class Meter:
    """Everything the device keeps for one meter (kept small: see bench/footprint.py)."""

    def __init__(self, cfg, telemetry_s, saved=None):
        self.id = cfg["id"]
        self.reads = cfg["reads"]
        self.fields = cfg["fields"]
        nf = len(self.fields)
        # No telemetry slot when telemetry_s is 0: behind the serial bridge the host
        # builds telemetry and score from the readings itself.
        o = _PER_FIELD + 3 * nf
        v = array("d", [0.0] * (o + (_NSLOT if telemetry_s > 0 else 0)))
        if telemetry_s > 0:
            v[o + _SLOT_S] = telemetry_s
            _slot_reset(v, o)
        v[_POLL_S] = float(cfg["poll_s"])
        v[_FROZEN_S] = float(cfg.get("frozen_s", 900.0))
        v[_UNIT] = cfg["unit"]
        v[_H_SENT] = -1.0
        for i in range(_PER_FIELD + 2 * nf, _PER_FIELD + 3 * nf):
            v[i] = _NAN
        self._v = v
        dset = cfg.get("detector") or {}
        pset = cfg.get("policy") or {}
        self.detector = None
        self.policy = None
        if saved:
            try:
                self.detector = Detector.from_state(dset, saved["detector"])
                self.policy = Policy.from_state(self.id, pset, saved["policy"])
                v[_RESTORED] = 1.0
            except (KeyError, TypeError, ValueError) as e:
                print("meter %s: saved state does not fit (%s); starting fresh" % (self.id, e))
                self.detector = None
        if self.detector is None:
            self.detector = Detector(dset)
            self.policy = Policy(self.id, pset)
        tb = getattr(self.detector, "_tb", None)
        _share(self.detector, "_tb", tb[0] if isinstance(tb, tuple) else None)
        _share(self.policy, "_set", getattr(self.policy, "_set", None))
        self._herr = None  # [last error message, {error kind: count}] once a poll failed

    @property
    def poll_s(self):
        return self._v[_POLL_S]

    @property
    def next_t(self):
        return self._v[_NEXT_T]

    @next_t.setter
    def next_t(self, t):
        self._v[_NEXT_T] = t

    @property
    def restored(self):
        return self._v[_RESTORED] == 1.0

    @property
    def failures(self):
        """Consecutive failed polls (the caller's back-off doubles with them)."""
        return int(self._v[_H_FAILS])

    @property
    def samples(self):
        return int(self._v[_SAMPLES])

    def state(self):
        return {"detector": self.detector.state(), "policy": self.policy.state()}

    def next_id(self, kind, t):
        self._v[_SEQ] += 1.0
        return "%s:%s:%d:%d" % (self.id, kind, int(t), int(self._v[_SEQ]))

    # ------------------------------------------------------------ polling and decoding

    def poll(self, master):
        """Read every planned block; returns (blocks, error_kind, message)."""
        blocks = []
        for fc, address, count in self.reads:
            regs = master.read_registers(int(self._v[_UNIT]), fc, address, count)
            blocks.append((fc, address, regs))
        return blocks

    def decode(self, t, blocks, error_kind):
        """-> (values, quality): the same flags as agent/decode.Decoder."""
        quality = ERROR_FLAGS.get(error_kind, Q_TIMEOUT) if error_kind else 0
        raw = {}
        for name, fc, address, ftype, order, scale in self.fields:
            size = 1 if ftype in ("int16", "uint16") else 2
            for bfc, baddr, regs in blocks:
                if bfc == fc and baddr <= address and address + size <= baddr + len(regs):
                    off = address - baddr
                    raw[name] = decode_field(ftype, order, scale, regs[off:off + size])
                    break
        clean = {}
        for name in raw:
            v = raw[name]
            if v != v:
                quality |= Q_NAN
                continue
            if v == _INF or v == -_INF:
                quality |= Q_INF
                continue
            lo, hi = RANGES.get(family(name), (-_INF, _INF))
            if not lo <= v <= hi:
                quality |= Q_RANGE
                continue
            clean[name] = v
        if not error_kind:
            if "p_w" not in clean:
                quality |= Q_MISSING
            elif clean["p_w"] < 0:
                quality |= Q_NEGATIVE
            quality |= self._frozen(t, raw)
            quality |= self._counters_check(clean)
        return clean, quality

    def _frozen(self, t, values):
        if not values:
            return 0
        v = self._v
        fields = self.fields
        nf = len(fields)
        # Before any values are kept every presence flag is 0, so _same() is False.
        if _same(values, fields, v):
            if t - v[_SAME_SINCE] >= v[_FROZEN_S]:
                return Q_FROZEN
            return 0
        for i in range(nf):
            x = values.get(fields[i][0])
            v[_PER_FIELD + i] = 0.0 if x is None else x
            v[_PER_FIELD + nf + i] = 0.0 if x is None else 1.0
        v[_SAME_SINCE] = t
        return 0

    def _counters_check(self, clean):
        flags = 0
        v = self._v
        fields = self.fields
        base = _PER_FIELD + 2 * len(fields)
        for name in clean:
            if not name.startswith("e_"):
                continue
            i = 0
            while fields[i][0] != name:  # the counter's slot: its first field entry
                i += 1
            x = clean[name]
            last = v[base + i]
            if last != last or x >= last - 0.01:
                v[base + i] = x if last != last else max(x, last)
            elif x <= last * 0.01:
                flags |= Q_RESET
                v[base + i] = x
            else:
                flags |= Q_BACKWARDS
        return flags

    # ------------------------------------------------------------ the pipeline

    def process(self, t, values, quality):
        """A reading -> events, exactly as agent.runtime.MeterPipeline.process_reading."""
        events = []
        det = self.detector
        v = self._v
        o = _PER_FIELD + 3 * len(self.fields)  # the telemetry slot's run, if any
        closed = _slot_add(v, o, t, values, quality) if len(v) > o else None
        if closed is not None:
            state = "ready" if det.ready else "warming"
            closed["score"] = _round2(det.score)
            closed["detector_state"] = state
            events.append(Event("telemetry", self.id, t, self.next_id("telemetry", t),
                                data=closed))
            events.append(Event("score", self.id, t, self.next_id("score", t),
                                score=det.score, evidence=det.evidence(),
                                data={"contributions": det.contributions(), "state": state}))
        if (quality & BAD_DATA) != 0 or "p_w" not in values:
            return events
        v[_SAMPLES] += 1.0
        score = det.update(t, values["p_w"], values.get("pf"))
        events.extend(self.policy.update(t, score, det.ready, det.contributions(),
                                         det.evidence()))
        return events

    # ------------------------------------------------------------ health

    def poll_done(self, t, error_kind, message, backoff_s):
        v = self._v
        v[_H_POLLS] += 1.0
        if not error_kind:
            v[_H_LAST_OK] = t
            v[_H_FAILS] = 0.0
            v[_H_BACKOFF] = 0.0
            v[_H_STATE] = 0.0  # ok
            return
        if self._herr is None:
            self._herr = ["", {}]
        errors = self._herr[1]
        errors[error_kind] = errors.get(error_kind, 0) + 1
        self._herr[0] = message
        v[_H_FAILS] += 1.0
        v[_H_BACKOFF] = backoff_s
        v[_H_STATE] = 2.0 if backoff_s > 0 else 1.0  # down, degraded

    def health_event(self, t):
        """A health Event when the state changed since the last one sent, else None.

        Its data is agent.model.Health.as_dict() of the same figures."""
        v = self._v
        if v[_H_STATE] == v[_H_SENT]:
            return None
        v[_H_SENT] = v[_H_STATE]
        herr = self._herr
        polls = int(v[_H_POLLS])
        return Event("health", self.id, t, "%s:health:%d:%d" % (self.id, int(t), polls),
                     data={
                         "state": _HEALTH[int(v[_H_STATE])],
                         "last_success": v[_H_LAST_OK],
                         "last_error": herr[0] if herr is not None else "",
                         "polls": polls,
                         "errors": dict(herr[1]) if herr is not None else {},
                         "consecutive_failures": int(v[_H_FAILS]),
                         "backoff_s": v[_H_BACKOFF],
                     })


def _round2(x):
    # round(x, 2) as CPython would print it for the telemetry's score field.
    return round(x, 2)


def _same(values, fields, v):
    """True if ``values`` (raw, by field name) are the ones kept in ``v`` (NaN == NaN)."""
    nf = len(fields)
    for i in range(nf):
        x = values.get(fields[i][0])
        if x is None:
            if v[_PER_FIELD + nf + i] != 0.0:
                return False
        else:
            if v[_PER_FIELD + nf + i] == 0.0:
                return False
            y = v[_PER_FIELD + i]
            if x != y and not (x != x and y != y):
                return False
    return True
