"""The detector's verdict as one typed value: what the policy, the runtime and replay read;
and the one error the scoring core raises for a setting it refuses.

Plain classes with ``__slots__`` and no imports, so the same file runs on the MCU
(agent/model.py re-exports them as the pipeline's ``Score`` and ``SettingsError``).
"""


class SettingsError(ValueError):
    """A setting the detector or the policy refuses. ``key`` names it (the setting's own
    name, e.g. ``slot_s``), so a config error names it with its table and file without
    reading this message (agent/settings.py). (``super().__init__``: MicroPython's
    ValueError has no ``__init__`` attribute to call by name.)"""

    def __init__(self, key, message):
        super().__init__(message)
        self.key = key


class Schedule:
    """A block of the local day whose floor rose by the same watts on repeated days.

    ``start_h``/``end_h`` are local hours (end exclusive; 0/24 for 24/7), ``days`` the
    repetitions seen in a row, ``level_kw`` the rise, ``since_t`` when the run began.
    """

    __slots__ = ("days", "end_h", "level_kw", "since_t", "start_h")

    def __init__(self, start_h, end_h, days, level_kw, since_t):
        self.start_h = start_h
        self.end_h = end_h
        self.days = days
        self.level_kw = level_kw
        self.since_t = since_t

    @property
    def all_day(self):
        return self.end_h - self.start_h >= 24

    def as_dict(self):
        """The payload's ``schedule`` object (agent/publish/schemas/alert.json)."""
        return {"start_hour": self.start_h, "end_hour": self.end_h, "days_seen": self.days,
                "level_kw": self.level_kw, "since_t": self.since_t}

    def __eq__(self, other):
        return isinstance(other, Schedule) and self.as_dict() == other.as_dict()

    def __repr__(self):
        return "Schedule(%r, %r, days=%r, level_kw=%r)" % (self.start_h, self.end_h, self.days,
                                                          self.level_kw)


class Score:
    """One meter's verdict at time ``t``: what ``Policy.update`` takes.

    ``value`` 0..100; ``ready`` False while the detector warms up (no verdict yet);
    ``step_kw`` the rise of the floor judged (kW); ``schedule`` the block it was seen in
    (a ``Schedule``, or None); ``contributions`` points per feature (sum = value);
    ``evidence`` the explainable figures (JSON-able, with a one-line ``summary``).
    The two dicts are shared with the detector until its next evaluation: read-only.
    """

    __slots__ = ("contributions", "evidence", "ready", "schedule", "step_kw", "t", "value")

    def __init__(self, t, value, ready, step_kw=0.0, schedule=None, contributions=None,
                 evidence=None):
        self.t = t
        self.value = value
        self.ready = ready
        self.step_kw = step_kw
        self.schedule = schedule
        self.contributions = contributions if contributions is not None else {}
        self.evidence = evidence if evidence is not None else {}

    @property
    def state(self):
        return "ready" if self.ready else "warming"

    def __repr__(self):
        return "Score(t=%r, value=%r, ready=%r, step_kw=%r, schedule=%r)" % (
            self.t, self.value, self.ready, self.step_kw, self.schedule)
