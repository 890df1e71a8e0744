"""``Health``: one meter's reachability as the agent's poller (or the serial bridge) sees
it, over the shared rules and figures of agent/health.py (the MCU keeps the same figures
in its meter's array instead, so this class is not shipped to the board).
"""

from array import array

from agent import health
from agent.health import BACKOFF, FAILS, LAST_OK, POLLS, SIZE, STATE, STATES

__all__ = ["STATES", "Health"]


class Health:
    """Reachability of one meter (agent/health.py says what the states mean).

    The figures are the shared run above; the attributes read and set them, so code that
    builds a Health from a device's report (agent/bridge/source.py) needs no second copy
    of the layout."""

    __slots__ = ("_errs", "_h", "meter", "t")

    def __init__(self, meter, t=0.0):
        self.meter = meter
        self.t = t
        self._h = array("d", [0.0] * SIZE)
        health.init(self._h, 0)
        self._errs = None

    def record(self, t, error_kind, message="", retried=0, backoff_s=0.0, hint=""):
        """One poll: see agent/health.py ``record()``."""
        self.t = t
        self._errs = health.record(self._h, 0, self._errs, t, error_kind, message, retried,
                                   backoff_s, hint)

    def set_problem(self, state, cause, reason, hint):
        """Mark the meter not ok, saying why and what to check."""
        self._errs = health.set_problem(self._h, 0, self._errs, STATES.index(state), cause,
                                        reason, hint)

    def set_ok(self):
        self.state = "ok"
        self.cause = self.reason = self.hint = ""

    def due(self, now):
        """True when a health event should go out now (marks it sent)."""
        return health.due(self._h, 0, self._errs, now)

    def event_id(self, now):
        return health.event_id(self.meter, now, self._h, 0)

    def as_dict(self):
        return health.as_dict(self._h, 0, self._errs)

    def _errors(self):
        if self._errs is None:
            self._errs = health.new_errs()
        return self._errs

    @property
    def cause(self):
        """Why the meter is not ok, in one word ("" when ok)."""
        return self._errs[2] if self._errs is not None else ""

    @cause.setter
    def cause(self, word):
        self._errors()[2] = word

    @property
    def reason(self):
        """The failure in its own words ("" when ok)."""
        return self._errs[3] if self._errs is not None else ""

    @reason.setter
    def reason(self, text):
        self._errors()[3] = text

    @property
    def hint(self):
        """What a technician should check ("" when ok)."""
        return self._errs[4] if self._errs is not None else ""

    @hint.setter
    def hint(self, text):
        self._errors()[4] = text

    @property
    def state(self):
        return STATES[int(self._h[STATE])]

    @state.setter
    def state(self, name):
        self._h[STATE] = STATES.index(name)

    @property
    def polls(self):
        return int(self._h[POLLS])

    @polls.setter
    def polls(self, n):
        self._h[POLLS] = n

    @property
    def last_success(self):
        return self._h[LAST_OK]

    @last_success.setter
    def last_success(self, t):
        self._h[LAST_OK] = t

    @property
    def consecutive_failures(self):
        return int(self._h[FAILS])

    @consecutive_failures.setter
    def consecutive_failures(self, n):
        self._h[FAILS] = n

    @property
    def backoff_s(self):
        return self._h[BACKOFF]

    @backoff_s.setter
    def backoff_s(self, s):
        self._h[BACKOFF] = s

    @property
    def last_error(self):
        return self._errs[0] if self._errs is not None else ""

    @last_error.setter
    def last_error(self, message):
        self._errors()[0] = message

    @property
    def errors(self):
        """Error counts by kind (a live dict: the caller may add to it)."""
        return self._errors()[1]

    @errors.setter
    def errors(self, counts):
        self._errors()[1] = counts
