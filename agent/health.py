"""A meter's reachability: the one rule set for the agent's pollers and the MCU gateway.

Health per meter (README, "Polling"): ``ok``; ``degraded`` when the meter answered only
after a retry or answers with a Modbus exception (the bus is fine: a wrong profile or a
busy meter); ``down`` when it timed out, sent garbage or its port is gone, so it is
backing off. Both the agent (agent/modbus/poller.py) and the device
(firmware_bridge/device/app.py) record every poll with ``record()`` and decide when to
publish with ``due()``, so an MCU gateway and a Linux one report the same meter the same
way.

The figures are numbers in a run of ``SIZE`` values of an ``array('d')`` at offset ``o``:
the device keeps them inside its meter's one array (an object per meter would cost about
220 B of MicroPython heap), the agent inside a ``Health`` (agent/meter_health.py, not
shipped to the board). The last error message, the error counts by kind and the cause,
reason and hint of a problem live in ``errs`` (``new_errs()``), a list made at the first
failure or retry (None until then).

MicroPython-safe: imports only agent.failures and micropython; no typing.
"""

from agent.failures import Failure

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


STATES = ("ok", "degraded", "down")
# Causes a health report names (the failure kinds, a retry, a profile that does not fit).
CAUSES = ("",) + Failure.ALL + ("retried", "profile_mismatch")
OK = const(0)
DEGRADED = const(1)
DOWN = const(2)
# Health is re-published at least this often (clock seconds) even when nothing changed,
# so a subscriber can tell a quiet meter from a dead gateway.
REFRESH_S = 3600.0

STATE = const(0)  # an index into STATES
POLLS = const(1)  # polls done
LAST_OK = const(2)  # time of the last successful poll
FAILS = const(3)  # consecutive failed polls
BACKOFF = const(4)  # current back-off, s
SENT = const(5)  # the state last published (-1: none yet)
SENT_T = const(6)  # when it was published
SIZE = const(7)


def init(h, o):
    """Fresh figures at h[o:o + SIZE]: ok, nothing polled, nothing published."""
    for i in range(o, o + SIZE):
        h[i] = 0.0
    h[o + SENT] = -1.0


def backs_off(error_kind):
    """True when a failed poll puts the meter in back-off: it did not answer usefully.

    A Modbus exception is an answer (the meter is there), so it only degrades."""
    return error_kind != "" and error_kind != Failure.EXCEPTION


def retryable(error_kind):
    """True when a failed request is worth asking again at once (bounded by the bus's
    ``retries``): a lost, garbled or misdirected reply may be noise; an exception is the
    meter's answer and a vanished port is a bus problem."""
    return (error_kind == Failure.TIMEOUT or error_kind == Failure.CRC
            or error_kind == Failure.MISMATCH)


def new_errs():
    """``[last error, {kind: count}, cause, reason, hint]``: the words of a meter's health
    (cause, reason and hint are "" while it is ok)."""
    return ["", {}, "", "", ""]


def set_problem(h, o, errs, state, cause, reason, hint):
    """Mark the meter not ok (``state`` an index into STATES), saying why in one word
    (``cause``), in the failure's own words (``reason``) and what to check (``hint``)."""
    if errs is None:
        errs = new_errs()
    h[o + STATE] = state
    errs[2] = cause
    errs[3] = reason
    errs[4] = hint
    return errs


def record(h, o, errs, t, error_kind, message, retried, backoff_s, hint=""):
    """Account one poll (``error_kind`` "" when it succeeded after ``retried`` retries);
    returns ``errs``, made at the first failure or retry. ``hint`` is what to check (the
    agent has a table of them, agent/modbus/hints.py; the MCU sends none)."""
    h[o + POLLS] += 1.0
    if not error_kind:
        h[o + LAST_OK] = t
        h[o + FAILS] = 0.0
        h[o + BACKOFF] = 0.0
        if retried:
            errs = set_problem(h, o, errs, DEGRADED, "retried", "%d request(s) of the last "
                               "poll needed a retry" % retried, hint)
            counts = errs[1]
            counts["retried"] = counts.get("retried", 0) + retried
        else:
            h[o + STATE] = OK
            if errs is not None:
                errs[2] = errs[3] = errs[4] = ""
        return errs
    if errs is None:
        errs = new_errs()
    counts = errs[1]
    counts[error_kind] = counts.get(error_kind, 0) + 1
    errs[0] = message
    h[o + FAILS] += 1.0
    if backs_off(error_kind):
        h[o + BACKOFF] = backoff_s
        return set_problem(h, o, errs, DOWN, error_kind, message, hint)
    # The meter answers, so the bus is fine: a wrong profile or a busy meter.
    h[o + BACKOFF] = 0.0
    return set_problem(h, o, errs, DEGRADED, error_kind, message, hint)


def _sent_key(h, o, errs):
    """The state and the cause as one number (a new cause is news, as a new state is)."""
    cause = errs[2] if errs is not None else ""
    n = CAUSES.index(cause) if cause in CAUSES else len(CAUSES)
    return h[o + STATE] * 16.0 + n


def due(h, o, errs, now):
    """True when a health event should go out now: the state or its cause changed since
    the last one, or the last one is ``REFRESH_S`` old. Marks it sent."""
    key = _sent_key(h, o, errs)
    if h[o + SENT] == key and now - h[o + SENT_T] < REFRESH_S:
        return False
    h[o + SENT] = key
    h[o + SENT_T] = now
    return True


def as_dict(h, o, errs):
    """The health payload's figures (the ``meter/<id>/health`` topic)."""
    e = errs if errs is not None else new_errs()
    return {
        "state": STATES[int(h[o + STATE])],
        "cause": e[2],
        "reason": e[3],
        "hint": e[4],
        # float(): the same number whether h is an array('d') or (CPython) a list
        "last_success": float(h[o + LAST_OK]),
        "last_error": e[0],
        "polls": int(h[o + POLLS]),
        "errors": dict(e[1]),
        "consecutive_failures": int(h[o + FAILS]),
        "backoff_s": float(h[o + BACKOFF]),
    }


def event_id(meter, now, h, o):
    """Unique per message: the meter, the time and the poll count."""
    return "%s:health:%d:%d" % (meter, int(now), int(h[o + POLLS]))
