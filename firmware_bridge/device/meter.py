"""One meter on the device: poll plan, decoding, quality flags, detector, policy, health.

The agent does this in decode.py, aggregate.py and runtime.MeterPipeline; the device
mirrors the same rules so that a reading, a telemetry slot and an alert mean the same
whichever side produced them. The compact meter table comes from the build
(firmware_bridge/devconfig.py): ``reads`` = [[fc, address, count], ...] and ``fields`` =
[[name, fc, address, type, word_order, scale], ...], already merged with quirks.
"""

import struct

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

# Same plausible ranges as agent/decode.py RANGES (by quantity family).
RANGES = {
    "p_w": (-500000.0, 500000.0), "q_var": (-500000.0, 500000.0), "s_va": (0.0, 500000.0),
    "pf": (-1.001, 1.001), "v_v": (0.0, 500.0), "i_a": (-0.001, 2000.0),
    "f_hz": (40.0, 70.0), "e_import_kwh": (0.0, 1e9), "e_export_kwh": (0.0, 1e9),
    "e_total_kwh": (0.0, 1e9),
}
ERROR_FLAGS = {"timeout": Q_TIMEOUT, "io": Q_TIMEOUT, "exception": Q_EXCEPTION, "crc": Q_CRC}
_INF = float("inf")
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


class Slot:
    """Telemetry slot aggregate, as agent/aggregate.SlotAggregate (same output keys)."""

    def __init__(self, slot_s):
        self.slot_s = slot_s
        self.start = None
        self._reset()

    def _reset(self):
        self.n_good = 0
        self.n_bad = 0
        self.p_sum = 0.0
        self.p_min = _INF
        self.p_max = -_INF
        self.pf_sum = 0.0
        self.n_pf = 0
        self.e_first = None
        self.e_last = None
        self.flags = 0

    def add(self, t, values, quality):
        start = (t // self.slot_s) * self.slot_s
        closed = None
        if self.start is None:
            self.start = start
        elif start > self.start:
            closed = self.close()
            self.start = start
        elif start < self.start:
            self.n_bad += 1
            return None
        if (quality & BAD_DATA) == 0 and "p_w" in values:
            p = values["p_w"]
            self.n_good += 1
            self.p_sum += p
            self.p_min = min(self.p_min, p)
            self.p_max = max(self.p_max, p)
            pf = values.get("pf")
            if pf is not None:
                self.pf_sum += abs(pf)
                self.n_pf += 1
            e = values.get("e_import_kwh")
            if e is not None:
                if self.e_first is None:
                    self.e_first = e
                self.e_last = e
        else:
            self.n_bad += 1
        self.flags |= quality
        return closed

    def close(self):
        if self.start is None or (self.n_good + self.n_bad) == 0:
            self._reset()
            return None
        g = self.n_good
        out = {
            "slot_start": self.start, "slot_s": self.slot_s, "samples": g,
            "bad_samples": self.n_bad,
            "p_mean_w": self.p_sum / g if g else None,
            "p_min_w": self.p_min if g else None,
            "p_max_w": self.p_max if g else None,
            "pf_mean": self.pf_sum / self.n_pf if self.n_pf else None,
            "energy_kwh": (self.e_last - self.e_first)
            if self.e_first is not None and self.e_last is not None else None,
            "quality": quality_names(self.flags),
        }
        self._reset()
        return out


class Meter:
    """Everything the device keeps for one meter (kept small: see bench/footprint.py)."""

    def __init__(self, cfg, telemetry_s, saved=None):
        self.id = cfg["id"]
        self.unit = cfg["unit"]
        self.poll_s = float(cfg["poll_s"])
        self.reads = cfg["reads"]
        self.fields = cfg["fields"]
        self.frozen_s = float(cfg.get("frozen_s", 900.0))
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
        self.seq = 0
        self.samples = 0
        self.next_t = 0.0
        self._last_vals = None
        self._same_since = 0.0
        self._counters = {}

    def state(self):
        return {"detector": self.detector.state(), "policy": self.policy.state()}

    def next_id(self, kind, t):
        self.seq += 1
        return "%s:%s:%d:%d" % (self.id, kind, int(t), self.seq)

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
        if self._last_vals is not None and _same(values, self._last_vals):
            if t - self._same_since >= self.frozen_s:
                return Q_FROZEN
            return 0
        self._last_vals = dict(values)
        self._same_since = t
        return 0

    def _counters_check(self, clean):
        flags = 0
        for name in clean:
            if not name.startswith("e_"):
                continue
            v = clean[name]
            last = self._counters.get(name)
            if last is None or v >= last - 0.01:
                self._counters[name] = v if last is None else max(v, last)
            elif v <= last * 0.01:
                flags |= Q_RESET
                self._counters[name] = v
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
        self.samples += 1
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


def _same(a, b):
    if len(a) != len(b):
        return False
    for k in a:
        if k not in b:
            return False
        x = a[k]
        y = b[k]
        if x != y and not (x != x and y != y):
            return False
    return True
