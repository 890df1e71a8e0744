"""Value types that flow between the stages of the agent.

meter --> RawPoll --> Reading --> Score --> Event --> Message (publish/codec.py)

These are plain classes with ``__slots__`` and no imports but the detector's verdict,
because the policy and the firmware bridge use them on MicroPython too (no ``typing``,
``dataclasses`` or ``from __future__`` there). Annotations that are not plain builtins
are written as strings so that CPython 3.9 does not evaluate them.

Times are UNIX seconds (float, UTC) everywhere.

``Score`` (with its ``Schedule``) is defined next to the detector that builds it
(agent/signature/verdict.py, the same plain-class rules) and re-exported here, with the
``SettingsError`` that the detector and the policy raise for a setting they refuse.
"""

from agent.signature.verdict import Schedule, Score, SettingsError  # noqa: F401 (re-exported)

# Reading.quality bit flags. A reading with any flag in BAD_DATA is never scored as load;
# flags outside BAD_DATA are informational.
Q_OK = 0
Q_NAN = 1  # a register decoded to NaN
Q_INF = 2  # a register decoded to +/-inf
Q_RANGE = 4  # physically implausible value for its quantity (e.g. 5 MW on a household meter)
Q_FROZEN = 8  # every value identical for longer than the profile allows
Q_BACKWARDS = 16  # an energy counter went down
Q_RESET = 32  # an energy counter fell to (near) zero: meter replaced or reset
Q_EXCEPTION = 64  # the meter answered with a Modbus exception
Q_TIMEOUT = 128  # no (complete) answer in time
Q_CRC = 256  # a frame with a bad checksum / garbled answer
Q_MISSING = 512  # a quantity the detector needs is not in the reading
Q_NEGATIVE = 1024  # active power below zero (export or wiring) - informational
Q_ERROR_REPLY = 2048  # a DL/T 645 meter answered 0xD1/0xD2 (its error byte in the health)
Q_MISMATCH = 4096  # a well-formed reply that answers another request (unit, function, count)

BAD_DATA = (Q_NAN | Q_INF | Q_RANGE | Q_FROZEN | Q_EXCEPTION | Q_TIMEOUT | Q_CRC | Q_MISSING
            | Q_ERROR_REPLY | Q_MISMATCH)

QUALITY_NAMES = (
    (Q_NAN, "nan"),
    (Q_INF, "inf"),
    (Q_RANGE, "out_of_range"),
    (Q_FROZEN, "frozen"),
    (Q_BACKWARDS, "energy_backwards"),
    (Q_RESET, "energy_reset"),
    (Q_EXCEPTION, "modbus_exception"),
    (Q_TIMEOUT, "timeout"),
    (Q_CRC, "crc"),
    (Q_MISSING, "missing"),
    (Q_NEGATIVE, "negative_power"),
    (Q_ERROR_REPLY, "error_reply"),
    (Q_MISMATCH, "wrong_reply"),
)


def quality_names(quality):
    """Names of the flags set in ``quality``, for payloads and logs."""
    return [name for bit, name in QUALITY_NAMES if quality & bit]


def is_scorable(quality):
    """True when a reading may be learned from by the signature core."""
    return (quality & BAD_DATA) == 0


class RawBlock:
    """The registers of one read request, exactly as the meter returned them."""

    __slots__ = ("address", "fc", "registers")

    def __init__(self, fc: int, address: int, registers: "list[int]"):
        self.fc = fc
        self.address = address
        self.registers = registers

    def __repr__(self):
        return "RawBlock(fc=%d, address=%d, n=%d)" % (self.fc, self.address, len(self.registers))


class RawItem:
    """The plain data of one DL/T 645 read (the DI echo stripped), as the meter sent it.

    The DL/T 645 counterpart of RawBlock: ``di`` is the identifier asked for, ``data``
    the value bytes (BCD, low byte first), follow-up frames already joined.
    """

    __slots__ = ("data", "di")

    def __init__(self, di: int, data: bytes):
        self.di = di
        self.data = data

    def __repr__(self):
        return "RawItem(di=%08X, n=%d)" % (self.di, len(self.data))


class RawPoll:
    """One poll of one meter: the blocks read (RawBlock for Modbus, RawItem for
    DL/T 645), or why it failed.

    ``error_kind`` is one of "", "timeout", "exception", "crc", "mismatch", "io";
    ``exception_code`` is the Modbus exception code when ``error_kind == "exception"``.
    """

    __slots__ = ("blocks", "error", "error_kind", "exception_code", "meter", "t")

    def __init__(
        self,
        meter: str,
        t: float,
        blocks: "list[RawBlock]",
        error: str = "",
        error_kind: str = "",
        exception_code: int = 0,
    ):
        self.meter = meter
        self.t = t
        self.blocks = blocks
        self.error = error
        self.error_kind = error_kind
        self.exception_code = exception_code

    @property
    def ok(self):
        return self.error_kind == ""


class Reading:
    """Decoded values of one poll, by standard quantity name (p_w, pf, v_v, ...)."""

    __slots__ = ("meter", "quality", "t", "values")

    def __init__(self, meter: str, t: float, values: "dict[str, float]", quality: int = Q_OK):
        self.meter = meter
        self.t = t
        self.values = values
        self.quality = quality

    @property
    def scorable(self):
        return is_scorable(self.quality)

    def __repr__(self):
        return "Reading(%r, t=%r, %r, quality=%r)" % (self.meter, self.t, self.values, self.quality)


# Event kinds. Alert kinds are published retained on meter/<id>/alert.
ALERT_KINDS = ("raised", "updated", "cleared")
EVENT_KINDS = ALERT_KINDS + ("health", "telemetry", "score", "status")


class Event:
    """Something the utility must be told about, in the order it happened.

    ``id`` is unique per message (subscribers drop QoS-1 duplicates by it);
    ``alert_id`` is the stable identity of one alert (meter + onset) shared by its raised,
    updated and cleared events. ``data`` carries kind-specific fields (telemetry
    aggregates, health counters).
    """

    __slots__ = ("alert_id", "data", "evidence", "id", "kind", "meter", "score", "t")

    def __init__(
        self,
        kind: str,
        meter: str,
        t: float,
        id: str,
        score: float = 0.0,
        evidence: "dict | None" = None,
        alert_id: str = "",
        data: "dict | None" = None,
    ):
        self.kind = kind
        self.meter = meter
        self.t = t
        self.id = id
        self.score = score
        self.evidence = evidence if evidence is not None else {}
        self.alert_id = alert_id
        self.data = data if data is not None else {}

    @property
    def is_alert(self):
        return self.kind in ALERT_KINDS

    def __repr__(self):
        return "Event(%r, %r, t=%r, id=%r, score=%r)" % (
            self.kind,
            self.meter,
            self.t,
            self.id,
            self.score,
        )
