"""Alert policy: turns a meter's score stream into raised / updated / cleared events.

Scoring is separate from deciding (after river's ThresholdFilter): the detector says how
miner-like a meter looks, the policy decides when that is worth a utility's attention.
Hysteresis (raise_at > clear_at) and hold times keep a score hovering at the threshold
from flapping; ``updated`` is rate-limited and sent only when something changed. The
alert id is ``<meter>:<onset>`` so a restart from a checkpoint continues the same alert.

MicroPython-safe: imports only agent.model, array and micropython, no typing, no f-strings.
"""

from array import array

from agent.model import Event, SettingsError

try:
    from micropython import const

    _PACKED = True  # MicroPython: the numbers in an array('d'), no boxed float per value
except ImportError:  # CPython
    _PACKED = False  # CPython: the numbers in a list, whose indexing is faster

    def const(x):
        return x


# A policy's numbers live in one store, ``_n``, in the order state() writes them (on
# MicroPython each instance attribute is a 16-byte map entry and each float in one a heap
# object of its own; the flags and the counter are whole numbers, exact in a double).
_ABOVE = const(0)  # 1 while the score has stayed >= raise_at since _ABOVE_T
_ABOVE_T = const(1)
_BELOW = const(2)  # 1 while (active and) the score has stayed < clear_at since _BELOW_T
_BELOW_T = const(3)
_UPD_T = const(4)  # time of the last raised/updated event
_UPD_SCORE = const(5)  # its score
_UPD_STEP = const(6)  # its floor step, kW
_SEQ = const(7)  # message counter: makes every Event.id unique
_NN = const(8)  # length of _n
_INF = float("inf")


# Settings tables of policies with equal settings, shared (read-only): on MicroPython every
# float in a dict is a heap object, and an MCU runs one policy per meter with a handful of
# meter classes. Bounded, so a process that builds many differently-tuned policies (the
# tuning bench) keeps no more than these.
_TABLES = []
_MAX_TABLES = 8


def _shared(s):
    for x in _TABLES:
        if x == s:
            return x
    if len(_TABLES) < _MAX_TABLES:
        _TABLES.append(s)
    return s


def default_policy_settings():
    """Policy tunables as plain numbers (seconds, score points 0..100)."""
    return {
        "raise_at": 72.0,  # score that must hold for hold_s to raise
        "clear_at": 30.0,  # score below which, held for clear_hold_s, the alert clears
        "hold_s": 3600.0,  # 1 h above raise_at before raising
        "clear_hold_s": 86400.0,  # 24 h below clear_at before clearing
        "update_every_s": 21600.0,  # at most one `updated` per this while active
        "update_delta": 5.0,  # ... and only if the score moved this much
        "update_step_kw": 0.2,  # ... or the floor step moved this much (kW)
    }


class Policy:
    """Alert state of one meter. ``update`` returns a (usually empty) list of Events.

    Kept small for the MCU (bench/footprint.py): ``active`` is a class default until an
    alert is first raised, and ``alert_id`` is not stored but made from the meter id and
    the onset kept in ``_n`` (an alert id string of its own would cost ~64 B a meter on
    MicroPython, and each instance attribute a 16-byte map entry).
    """

    active = False  # until the first alert: one instance attribute less
    _aid = None  # a restored alert id that its own onset would not give (see from_state)

    def __init__(self, meter_id, settings=None):
        s = default_policy_settings()
        if settings is not None:
            for k in settings:
                if k not in s:
                    raise SettingsError(k, "unknown policy setting %r" % (k,))
                v = settings[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise SettingsError(k, "policy setting %r must be a number, not %r"
                                        % (k, v))
                if not -_INF < v < _INF:
                    raise SettingsError(k, "policy setting %r must be a finite number, not %r"
                                        % (k, v))
                s[k] = float(v)
        if s["clear_at"] > s["raise_at"]:
            raise SettingsError("clear_at", "policy clear_at (%r) must not exceed raise_at "
                                "(%r)" % (s["clear_at"], s["raise_at"]))
        self.meter = meter_id
        self._set = _shared(s)
        self._n = array("d", [0.0] * _NN) if _PACKED else [0.0] * _NN

    @property
    def alert_id(self):
        """``<meter>:<onset>`` of the open alert ("" when none): the onset is when the
        score first held at raise_at, which stays put while the alert is open."""
        if not self.active:
            return ""
        if self._aid is not None:
            return self._aid
        return "%s:%d" % (self.meter, int(self._n[_ABOVE_T]))

    def state(self):
        """Alert state as JSON-able plain values."""
        n = self._n
        return {
            "v": 1,
            "active": 1 if self.active else 0,
            "alert_id": self.alert_id,
            "n": [int(n[_ABOVE]), n[_ABOVE_T], int(n[_BELOW]), n[_BELOW_T], n[_UPD_T],
                  n[_UPD_SCORE], n[_UPD_STEP], int(n[_SEQ])],
        }

    @property
    def seq(self):
        """How many events this policy has decided (kept in state()): of two saved states
        of one meter, the one with the higher seq is the later one."""
        return int(self._n[_SEQ])

    @classmethod
    def from_state(cls, meter_id, settings, state):
        p = cls(meter_id, settings)
        if not isinstance(state, dict):
            raise ValueError("policy state must be a dict, not %r" % (type(state),))
        if state.get("v") != 1:
            raise ValueError("policy state version %r is not 1" % (state.get("v"),))
        active = bool(state["active"])
        alert_id = str(state["alert_id"])
        n = state["n"]
        if len(n) != 8:
            raise ValueError("policy state has %d numbers, expected 8" % len(n))
        pn = p._n
        pn[_ABOVE] = int(n[0])
        pn[_ABOVE_T] = float(n[1])
        pn[_BELOW] = int(n[2])
        pn[_BELOW_T] = float(n[3])
        pn[_UPD_T] = float(n[4])
        pn[_UPD_SCORE] = float(n[5])
        pn[_UPD_STEP] = float(n[6])
        pn[_SEQ] = int(n[7])
        if active:
            p.active = True
            if alert_id != p.alert_id:
                p._aid = alert_id  # kept as saved (a state from elsewhere): ids continue
        return p

    def _event(self, kind, sc):
        # Built only when an event goes out: update() runs on every sample.
        evidence = sc.evidence
        if len(sc.contributions) > 0:
            evidence = dict(evidence)
            evidence["contributions"] = dict(sc.contributions)
        self._n[_SEQ] += 1
        t = sc.t
        eid = "%s:%s:%d:%d" % (self.alert_id, kind, int(t), int(self._n[_SEQ]))
        # The block the rig was seen in travels as the payload's ``schedule`` object.
        data = {"schedule": sc.schedule.as_dict() if sc.schedule is not None else None}
        return Event(kind, self.meter, t, eid, score=sc.value, evidence=evidence,
                     alert_id=self.alert_id, data=data)

    def quiet(self, score):
        """True when ``update`` with a ready verdict of this score would return no event and
        change nothing: no alert open, the score below raise_at, and below it before too.

        Most samples of most meters are quiet; a caller that checks this first can skip
        building the ``Score`` for them (``agent/scoring.py``, once per sample).
        """
        return not self.active and score < self._set["raise_at"] and self._n[_ABOVE] == 0

    def update(self, sc):
        """Feed one ``Score`` (agent.model); returns the alert events it causes (most: none).

        A detector that is not ``ready`` never raises, and never clears an open alert
        either (after a restart it may still be re-learning what it knew).
        """
        s = self._set
        score = sc.value
        if not sc.ready or not (score == score):
            return []
        t = sc.t
        n = self._n
        if not self.active:
            if score >= s["raise_at"]:
                if n[_ABOVE] == 0:
                    n[_ABOVE] = 1
                    n[_ABOVE_T] = t
                if t - n[_ABOVE_T] >= s["hold_s"]:
                    self.active = True  # alert_id is now <meter>:<n[_ABOVE_T]>
                    n[_BELOW] = 0
                    n[_UPD_T] = t
                    n[_UPD_SCORE] = score
                    n[_UPD_STEP] = sc.step_kw
                    return [self._event("raised", sc)]
            else:
                n[_ABOVE] = 0
            return []
        # Active.
        if score < s["clear_at"]:
            if n[_BELOW] == 0:
                n[_BELOW] = 1
                n[_BELOW_T] = t
            if t - n[_BELOW_T] >= s["clear_hold_s"]:
                out = [self._event("cleared", sc)]
                self.active = False
                self._aid = None
                n[_ABOVE] = 0
                n[_BELOW] = 0
                return out
            return []
        n[_BELOW] = 0
        if t - n[_UPD_T] >= s["update_every_s"]:
            step = sc.step_kw
            if abs(score - n[_UPD_SCORE]) >= s["update_delta"] or \
                    abs(step - n[_UPD_STEP]) >= s["update_step_kw"]:
                n[_UPD_T] = t
                n[_UPD_SCORE] = score
                n[_UPD_STEP] = step
                return [self._event("updated", sc)]
        return []
