"""Alert policy: turns a meter's score stream into raised / updated / cleared events.

Scoring is separate from deciding (after river's ThresholdFilter): the detector says how
miner-like a meter looks, the policy decides when that is worth a utility's attention.
Hysteresis (raise_at > clear_at) and hold times keep a score hovering at the threshold
from flapping; ``updated`` is rate-limited and sent only when something changed. The
alert id is ``<meter>:<onset>`` so a restart from a checkpoint continues the same alert.

MicroPython-safe: imports only agent.model, no typing, no f-strings.
"""

from agent.model import Event


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
    """Alert state of one meter. ``update`` returns a (usually empty) list of Events."""

    def __init__(self, meter_id, settings=None):
        s = default_policy_settings()
        if settings is not None:
            for k in settings:
                if k not in s:
                    raise ValueError("unknown policy setting %r" % (k,))
                v = settings[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError("policy setting %r must be a number, not %r" % (k, v))
                s[k] = float(v)
        if s["clear_at"] > s["raise_at"]:
            raise ValueError("policy clear_at (%r) must not exceed raise_at (%r)"
                             % (s["clear_at"], s["raise_at"]))
        self.meter = meter_id
        self._set = s
        self.active = False
        self.alert_id = ""
        self._above = 0  # 1 while the score has stayed >= raise_at since _above_t
        self._above_t = 0.0
        self._below = 0  # 1 while (active and) the score has stayed < clear_at since _below_t
        self._below_t = 0.0
        self._upd_t = 0.0  # time of the last raised/updated event
        self._upd_score = 0.0
        self._upd_step = 0.0
        self._seq = 0  # message counter: makes every Event.id unique

    def state(self):
        """Alert state as JSON-able plain values."""
        return {
            "v": 1,
            "active": 1 if self.active else 0,
            "alert_id": self.alert_id,
            "n": [self._above, self._above_t, self._below, self._below_t, self._upd_t,
                  self._upd_score, self._upd_step, self._seq],
        }

    @classmethod
    def from_state(cls, meter_id, settings, state):
        p = cls(meter_id, settings)
        if not isinstance(state, dict):
            raise ValueError("policy state must be a dict, not %r" % (type(state),))
        if state.get("v") != 1:
            raise ValueError("policy state version %r is not 1" % (state.get("v"),))
        p.active = bool(state["active"])
        p.alert_id = str(state["alert_id"])
        n = state["n"]
        if len(n) != 8:
            raise ValueError("policy state has %d numbers, expected 8" % len(n))
        p._above = int(n[0])
        p._above_t = float(n[1])
        p._below = int(n[2])
        p._below_t = float(n[3])
        p._upd_t = float(n[4])
        p._upd_score = float(n[5])
        p._upd_step = float(n[6])
        p._seq = int(n[7])
        return p

    def _event(self, kind, t, score, evidence, contributions):
        # Built only when an event goes out: update() runs on every sample.
        if contributions is not None and len(contributions) > 0:
            evidence = dict(evidence)
            evidence["contributions"] = dict(contributions)
        self._seq += 1
        eid = "%s:%s:%d:%d" % (self.alert_id, kind, int(t), self._seq)
        return Event(kind, self.meter, t, eid, score=score, evidence=evidence,
                     alert_id=self.alert_id)

    def update(self, t, score, ready, contributions, evidence):
        """Feed one score; returns the alert events it causes (most calls: none).

        A detector that is not ``ready`` never raises, and never clears an open alert
        either (after a restart it may still be re-learning what it knew).
        """
        s = self._set
        if not ready or not (score == score):
            return []
        ev = evidence if evidence is not None else {}
        if not self.active:
            if score >= s["raise_at"]:
                if self._above == 0:
                    self._above = 1
                    self._above_t = t
                if t - self._above_t >= s["hold_s"]:
                    self.active = True
                    self.alert_id = "%s:%d" % (self.meter, int(self._above_t))
                    self._below = 0
                    self._upd_t = t
                    self._upd_score = score
                    self._upd_step = _step(ev)
                    return [self._event("raised", t, score, ev, contributions)]
            else:
                self._above = 0
            return []
        # Active.
        if score < s["clear_at"]:
            if self._below == 0:
                self._below = 1
                self._below_t = t
            if t - self._below_t >= s["clear_hold_s"]:
                out = [self._event("cleared", t, score, ev, contributions)]
                self.active = False
                self.alert_id = ""
                self._above = 0
                self._below = 0
                return out
            return []
        self._below = 0
        if t - self._upd_t >= s["update_every_s"]:
            step = _step(ev)
            if abs(score - self._upd_score) >= s["update_delta"] or \
                    abs(step - self._upd_step) >= s["update_step_kw"]:
                self._upd_t = t
                self._upd_score = score
                self._upd_step = step
                return [self._event("updated", t, score, ev, contributions)]
        return []


def _step(ev):
    v = ev.get("step_kw")
    if v is None:
        return 0.0
    return float(v)
