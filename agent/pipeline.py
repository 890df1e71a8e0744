"""One meter's pipeline: decode -> quality checks -> telemetry slot -> detector -> policy,
plus its health. The same source runs in the agent and, compiled by
firmware_bridge/build.py, on the MCU gateway, so a reading, a telemetry slot, a health
report and an alert mean the same whichever side produced them.

MicroPython-safe (imports only array, micropython and the shared agent modules; no
typing), and small: a meter's own numbers live in one ``array('d')`` (on MicroPython each
instance attribute is a 16-byte map entry and each float in one a heap object of its
own; on CPython the same numbers are a list, whose indexing is faster): the scalars below,
then the health run (agent/health.py), the decoder's check run (agent/quality.py) and,
when the meter makes telemetry, the slot run (agent/aggregate.py).
bench/footprint.py measures it; the target is < 2 KB of heap per meter with its detector.
"""

from array import array

from agent import aggregate, health, quality
from agent.model import BAD_DATA, Event

try:
    from micropython import const

    _PACKED = True  # MicroPython: the numbers in an array('d'), no boxed float per value
except ImportError:  # CPython
    # A list: CPython specialises list indexing (no float object made per read), which
    # makes the slot's per-reading update a third cheaper (bench/delivery.py); the same
    # numbers, as agent/signature keeps its state.
    _PACKED = False

    def const(x):
        return x


_POLL_S = const(0)  # poll interval, s (the device's scheduler reads it as .poll_s)
_NEXT_T = const(1)  # when the next poll is due (.next_t)
_SAMPLES = const(2)  # readings fed to the detector (.samples)
_UNIT = const(3)  # Modbus unit id (.unit)
_FLAGS = const(4)  # _RESTORED | _DECIDES
_H = const(5)  # the health run
_CK = 5 + health.SIZE  # the decoder's check run (const() takes literals only)
_RESTORED = const(1)  # detector and policy came from saved state
_DECIDES = const(2)  # this pipeline decides alerts (see MeterPipeline)


class MeterPipeline:
    """Everything kept for one meter between polls (kept small: see bench/footprint.py).

    ``table`` is the compact field table of agent/quality.py. No telemetry slot when
    ``telemetry_s`` is 0: behind the serial bridge the host builds telemetry and score from
    the device's readings itself. A meter behind an MCU bridge has its alerts decided on
    the MCU (same core, same policy): the agent still scores its readings for the score
    and telemetry topics, but with ``decides_alerts`` False raises no second, possibly
    different, alert of its own.
    """

    # The health run's [last error, {kind: count}, ...] (health.py), made at the first
    # failure or retry: a class default until then, so a healthy meter has one instance
    # attribute (a 16-byte map entry on MicroPython) less.
    _errs = None

    def __init__(self, table, detector, policy, telemetry_s, frozen_s=quality.FROZEN_S,
                 decides_alerts=True, poll_s=0.0, unit=0, restored=False,
                 telemetry_quantities=None):
        self.fields = table
        self.detector = detector
        self.policy = policy
        nf = len(table)
        o = _CK + quality.check_size(nf)
        # ``telemetry_quantities``: names published in telemetry (None: every field read).
        mask = aggregate.mask_of(table, telemetry_quantities)
        n = o + (aggregate.size(table, mask) if telemetry_s > 0 else 0)
        v = array("d", [0.0] * n) if _PACKED else [0.0] * n
        if telemetry_s > 0:
            aggregate.init(v, o, telemetry_s, table, mask)
        quality.check_init(v, _CK, nf, float(frozen_s))
        health.init(v, _H)
        v[_POLL_S] = float(poll_s)
        v[_UNIT] = unit
        v[_FLAGS] = (_RESTORED if restored else 0) | (_DECIDES if decides_alerts else 0)
        self._v = v

    @property
    def id(self):
        return self.policy.meter  # not an attribute of its own: 16 B a meter on MicroPython

    @property
    def poll_s(self):
        return self._v[_POLL_S]

    @property
    def unit(self):
        return int(self._v[_UNIT])

    @property
    def next_t(self):
        return self._v[_NEXT_T]

    @next_t.setter
    def next_t(self, t):
        self._v[_NEXT_T] = t

    @property
    def restored(self):
        return (int(self._v[_FLAGS]) & _RESTORED) != 0

    @property
    def decides_alerts(self):
        return (int(self._v[_FLAGS]) & _DECIDES) != 0

    @property
    def samples(self):
        """Readings the detector learned from."""
        return int(self._v[_SAMPLES])

    def state(self):
        """Everything learned, as plain numbers and lists (JSON-able)."""
        return {"detector": self.detector.state(), "policy": self.policy.state()}

    def slot_id(self, kind, slot_start):
        """Telemetry and score are one message per meter and slot: the slot names it, so
        a slot closed again after a crash (restored from the checkpoint) keeps its id."""
        return "%s:%s:%d" % (self.id, kind, int(slot_start))

    def _slot(self):
        """Where the telemetry slot's run starts (None: the meter makes no telemetry)."""
        o = _CK + quality.check_size(len(self.fields))
        return o if len(self._v) > o else None

    def slot_state(self):
        """The open telemetry slot (agent/aggregate.py), for the checkpoint; None
        without one."""
        o = self._slot()
        return None if o is None else aggregate.state(self._v, o, self.fields)

    def reset_slot(self):
        """Start the telemetry slot afresh (the gateway's clock moved to another time
        base: the open slot belongs to the old one)."""
        o = self._slot()
        if o is not None:
            aggregate.restart(self._v, o, self.fields)

    def restore_slot(self, saved):
        """Continue a checkpointed slot; ValueError/KeyError/TypeError when it does not
        fit (the slot then starts afresh)."""
        o = self._slot()
        if o is None:
            raise ValueError("this meter makes no telemetry slot")
        aggregate.restore(self._v, o, self.fields, saved)

    # ------------------------------------------------------------ the pipeline

    def decode(self, t, blocks, error_kind):
        """One poll's blocks (``(fc, address, registers)``) -> ``(values, quality)``."""
        return quality.decode(self._v, _CK, self.fields, t, blocks, error_kind)

    def check(self, t, values, error_kind):
        """Values read some other way (DL/T 645 on the agent) -> ``(values, quality)``."""
        return quality.check(self._v, _CK, self.fields, t, values, error_kind)

    def process(self, t, values, flags, decide=True):
        """A reading -> events: the telemetry and score of a slot it closes, then what
        the policy decides once the detector has learned from it (bad data never is).
        ``decide`` False: learn, but let the policy decide nothing (the agent's clock
        guard, while the detector re-learns after a clock step)."""
        events = []
        det = self.detector
        v = self._v
        o = self._slot()
        closed = aggregate.add(v, o, self.fields, t, values, flags) if o is not None else None
        if closed is not None:
            state = "ready" if det.ready else "warming"
            closed["score"] = round(det.score, 2)
            closed["detector_state"] = state
            start = closed["slot_start"]
            events.append(Event("telemetry", self.id, t, self.slot_id("telemetry", start),
                                data=closed))
            events.append(Event("score", self.id, t, self.slot_id("score", start),
                                score=det.score, evidence=det.evidence(),
                                data={"contributions": det.contributions(), "state": state}))
        if (flags & BAD_DATA) != 0 or "p_w" not in values:
            return events
        v[_SAMPLES] += 1.0
        det.update(t, values["p_w"], values.get("pf"))
        if decide and int(v[_FLAGS]) & _DECIDES:
            events.extend(self.policy.update(det.verdict(t)))
        return events

    # ------------------------------------------------------------ health

    @property
    def failures(self):
        """Consecutive failed polls (the caller's back-off grows with them)."""
        return int(self._v[_H + health.FAILS])

    def poll_done(self, t, error_kind, message, retried, backoff_s):
        """Account one poll in the meter's health (agent/health.py's rules)."""
        self._errs = health.record(self._v, _H, self._errs, t, error_kind, message, retried,
                                   backoff_s)

    def health_event(self, t):
        """A health Event when one is due (state changed, or an hour since the last one),
        else None."""
        v = self._v
        if not health.due(v, _H, self._errs, t):
            return None
        return Event("health", self.id, t, health.event_id(self.id, t, v, _H),
                     data=health.as_dict(v, _H, self._errs))
