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
    Health,
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


# A telemetry slot's numbers, in one array('d') (on MicroPython each instance attribute
# is a 16-byte map entry and each float in one a heap object of its own; the counts and
# flags are whole numbers, exact in a double).
_START = const(0)  # start of the open slot (valid when _HAS_START is 1)
_HAS_START = const(1)  # 0 until the first reading
_N_GOOD = const(2)  # readings with a usable power
_N_BAD = const(3)  # other readings
_P_SUM = const(4)  # sum, lowest and highest of the good powers, W
_P_MIN = const(5)
_P_MAX = const(6)
_PF_SUM = const(7)  # sum of |pf| over the readings that carried one
_N_PF = const(8)
_E_FIRST = const(9)  # first and last import counter of the slot (valid when _HAS_E is 1)
_E_LAST = const(10)
_HAS_E = const(11)
_FLAGS = const(12)  # quality flags of every reading, OR-ed
_NSLOT = const(13)


class Slot:
    """Telemetry slot aggregate, as agent/aggregate.SlotAggregate (same output keys)."""

    def __init__(self, slot_s):
        self.slot_s = slot_s
        self._v = array("d", [0.0] * _NSLOT)
        self._reset()

    def _reset(self):
        v = self._v
        start = v[_START]
        has_start = v[_HAS_START]
        for i in range(_NSLOT):
            v[i] = 0.0
        v[_START] = start
        v[_HAS_START] = has_start
        v[_P_MIN] = _INF
        v[_P_MAX] = -_INF

    def add(self, t, values, quality):
        v = self._v
        start = (t // self.slot_s) * self.slot_s
        closed = None
        if v[_HAS_START] == 0.0:
            v[_START] = start
            v[_HAS_START] = 1.0
        elif start > v[_START]:
            closed = self.close()
            v[_START] = start
        elif start < v[_START]:
            v[_N_BAD] += 1.0
            return None
        if (quality & BAD_DATA) == 0 and "p_w" in values:
            p = values["p_w"]
            v[_N_GOOD] += 1.0
            v[_P_SUM] += p
            v[_P_MIN] = min(v[_P_MIN], p)
            v[_P_MAX] = max(v[_P_MAX], p)
            pf = values.get("pf")
            if pf is not None:
                v[_PF_SUM] += abs(pf)
                v[_N_PF] += 1.0
            e = values.get("e_import_kwh")
            if e is not None:
                if v[_HAS_E] == 0.0:
                    v[_E_FIRST] = e
                    v[_HAS_E] = 1.0
                v[_E_LAST] = e
        else:
            v[_N_BAD] += 1.0
        v[_FLAGS] = int(v[_FLAGS]) | quality
        return closed

    def close(self):
        v = self._v
        g = int(v[_N_GOOD])
        n_bad = int(v[_N_BAD])
        if v[_HAS_START] == 0.0 or (g + n_bad) == 0:
            self._reset()
            return None
        n_pf = int(v[_N_PF])
        out = {
            "slot_start": v[_START], "slot_s": self.slot_s, "samples": g,
            "bad_samples": n_bad,
            "p_mean_w": v[_P_SUM] / g if g else None,
            "p_min_w": v[_P_MIN] if g else None,
            "p_max_w": v[_P_MAX] if g else None,
            "pf_mean": v[_PF_SUM] / n_pf if n_pf else None,
            "energy_kwh": (v[_E_LAST] - v[_E_FIRST]) if v[_HAS_E] != 0.0 else None,
            "quality": quality_names(int(v[_FLAGS])),
        }
        self._reset()
        return out


# A meter's own numbers, in one array('d') (see Slot): the scalars, then three runs of one
# value per entry of ``fields``: the last raw values (for the frozen check), whether each
# was present, and the highest value seen of each energy counter (NaN: none yet).
_POLL_S = const(0)  # poll interval, s (read as .poll_s)
_FROZEN_S = const(1)  # unchanged raw values for this long flag Q_FROZEN
_NEXT_T = const(2)  # when the next poll is due (read and set as .next_t)
_SAME_SINCE = const(3)  # when the raw values last changed
_SEQ = const(4)  # message counter: makes every event id unique
_SAMPLES = const(5)  # readings fed to the detector (read as .samples)
_HAVE_LAST = const(6)  # 1 once raw values have been kept
_PER_FIELD = const(7)  # start of the three runs of len(fields) values


class Meter:
    """Everything the device keeps for one meter (kept small: see bench/footprint.py)."""

    def __init__(self, cfg, telemetry_s, saved=None):
        self.id = cfg["id"]
        self.unit = cfg["unit"]
        self.reads = cfg["reads"]
        self.fields = cfg["fields"]
        nf = len(self.fields)
        v = array("d", [0.0] * (_PER_FIELD + 3 * nf))
        v[_POLL_S] = float(cfg["poll_s"])
        v[_FROZEN_S] = float(cfg.get("frozen_s", 900.0))
        for i in range(_PER_FIELD + 2 * nf, _PER_FIELD + 3 * nf):
            v[i] = _NAN
        self._v = v
        dset = cfg.get("detector") or {}
        pset = cfg.get("policy") or {}
        self.detector = None
        self.policy = None
        self.restored = False
        if saved:
            try:
                self.detector = Detector.from_state(dset, saved["detector"])
                self.policy = Policy.from_state(self.id, pset, saved["policy"])
                self.restored = True
            except (KeyError, TypeError, ValueError) as e:
                print("meter %s: saved state does not fit (%s); starting fresh" % (self.id, e))
                self.detector = None
        if self.detector is None:
            self.detector = Detector(dset)
            self.policy = Policy(self.id, pset)
        tb = getattr(self.detector, "_tb", None)
        _share(self.detector, "_tb", tb[0] if isinstance(tb, tuple) else None)
        _share(self.policy, "_set", getattr(self.policy, "_set", None))
        # No telemetry slot when telemetry_s is 0: behind the serial bridge the host
        # builds telemetry and score from the readings itself.
        self.slot = Slot(telemetry_s) if telemetry_s > 0 else None
        self.health = Health(self.id)
        self.health_sent = ""

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
            regs = master.read_registers(self.unit, fc, address, count)
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
        if v[_HAVE_LAST] != 0.0 and _same(values, fields, v):
            if t - v[_SAME_SINCE] >= v[_FROZEN_S]:
                return Q_FROZEN
            return 0
        for i in range(nf):
            x = values.get(fields[i][0])
            v[_PER_FIELD + i] = 0.0 if x is None else x
            v[_PER_FIELD + nf + i] = 0.0 if x is None else 1.0
        v[_HAVE_LAST] = 1.0
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
        closed = self.slot.add(t, values, quality) if self.slot is not None else None
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
        self._v[_SAMPLES] += 1.0
        score = det.update(t, values["p_w"], values.get("pf"))
        events.extend(self.policy.update(t, score, det.ready, det.contributions(),
                                         det.evidence()))
        return events

    # ------------------------------------------------------------ health

    def poll_done(self, t, error_kind, message, backoff_s):
        h = self.health
        h.t = t
        h.polls += 1
        if not error_kind:
            h.last_success = t
            h.consecutive_failures = 0
            h.backoff_s = 0.0
            h.state = "ok"
            return
        h.errors[error_kind] = h.errors.get(error_kind, 0) + 1
        h.last_error = message
        h.consecutive_failures += 1
        h.backoff_s = backoff_s
        h.state = "down" if backoff_s > 0 else "degraded"

    def health_event(self, t):
        """A health Event when the state changed since the last one sent, else None."""
        if self.health.state == self.health_sent:
            return None
        self.health_sent = self.health.state
        return Event("health", self.id, t, "%s:health:%d:%d" % (self.id, int(t),
                                                                self.health.polls),
                     data=self.health.as_dict())


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
