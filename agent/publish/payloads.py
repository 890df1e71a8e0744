"""Events -> MQTT messages: the payloads and topics of DESIGN.md section 6, shared by the
agent and the MCU gateway (firmware_bridge/build.py ships this module), so a subscriber
cannot tell an MCU gateway from a Linux one. agent/publish/codec.py adds what only the
agent needs (topic checks, commands and their replies) and documents the contract.

MicroPython-safe: no typing, datetime or re (the annotations are never evaluated there);
ISO times come from civil-date arithmetic because ``time.gmtime`` has a 2000 epoch on some
ports. MicroPython's dict order is not insertion order, so the device's payloads are
equal as JSON, not byte for byte. Pure: no clock, no I/O.
"""

import json

from agent.model import ALERT_KINDS, Event
from agent.signature import civil_date

SCHEMA_VERSION = 1
# Telemetry's compact form (issue 17): short keys, integers in each quantity's resolution,
# the score folded in, units only here, in the schema and in the retained status message.
TELEMETRY_SCHEMA = 2
_INF = float("inf")
try:
    # One encoder made once: json.dumps with any keyword builds a new JSONEncoder on every
    # call, which cost a third of a telemetry message's encoding (bench/delivery.py).
    _ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
    _STRICT_JSON = True
except (AttributeError, TypeError):  # MicroPython: no JSONEncoder, no allow_nan
    _ENCODER = None
    _STRICT_JSON = False

SCORE_UNITS = {"score": "points (0-100)", "contributions": "points (0-100, summing to score)"}
# Short stable key and resolution of each measured family: a quantity is sent as whole
# numbers of its resolution (230.1 V is 2301), which is what a meter's own display shows
# and keeps a 3-phase meter's 15-min record near 400 bytes. Phases add 1, 2 or 3 to the key
# (see telemetry_body). A family not listed keeps its name, in thousandths.
FAMILIES = {"p_w": ("p", 1.0), "q_var": ("q", 1.0), "s_va": ("s", 1.0),
            "pf": ("pf", 0.001), "v_v": ("v", 0.1), "i_a": ("i", 0.01), "f_hz": ("f", 0.01)}
COUNTERS = {"e_import_kwh": "ei", "e_export_kwh": "ee", "e_total_kwh": "et"}
TELEMETRY_UNITS = {
    "p": "W", "q": "var", "s": "VA", "pf": "0.001 (signed power factor)", "v": "0.1 V",
    "i": "0.01 A", "f": "0.01 Hz", "e": "kWh (the meter's counters at the slot's end)",
    "de": "kWh (import counter's increase in the slot)", "ts": "s (UNIX, slot start)",
    "dt": "s (slot length)", "sc": "points (0-100)",
}
HEALTH_UNITS = {"backoff_s": "s"}


class Message:
    """One MQTT publication, ready for the outbox and the wire."""

    __slots__ = ("id", "kind", "meter", "payload", "qos", "retain", "topic")

    def __init__(self, topic: str, payload: bytes, qos: int, retain: bool, kind: str,
                 meter: str, id: str):
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.kind = kind
        self.meter = meter
        self.id = id

    def __repr__(self) -> str:
        return "Message(%r, %s, qos=%d, retain=%s, id=%r, %d bytes)" % (
            self.topic, self.kind, self.qos, self.retain, self.id, len(self.payload))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __hash__(self) -> int:
        return hash((self.topic, self.id))


def iso_utc(t: "float | None") -> "str | None":
    """UNIX seconds -> ``2026-03-02T01:15:00.000Z`` (None stays None); rounded to the
    microsecond, then milliseconds truncated, as ``datetime.isoformat`` does."""
    if t is None:
        return None
    us = int(t * 1000000.0 + (0.5 if t >= 0 else -0.5))
    secs = us // 1000000
    ms = (us % 1000000) // 1000
    days = secs // 86400
    rem = secs - days * 86400
    return "%sT%02d:%02d:%02d.%03dZ" % (civil_date(days), rem // 3600, (rem // 60) % 60,
                                         rem % 60, ms)


def clean(value: object) -> object:
    """JSON has no NaN or infinity: a non-finite float becomes null (and says so by being
    null), tuples become lists, unknown objects their ``str``. Never raises."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return None if (value != value or value == _INF or value == -_INF) else value
    if isinstance(value, dict):
        return {str(k): clean(value[k]) for k in value}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return str(value)


def _round(x: float) -> int:
    """Half away from zero, the same on both runtimes (no banker's rounding)."""
    return int(x + 0.5) if x >= 0 else -int(0.5 - x)


def _num(x: "float | None") -> "int | float | None":
    """A whole float as an int (``900`` rather than ``900.0``: two bytes a field)."""
    return int(x) if x is not None and x == int(x) else x


def _split(name: str) -> "tuple[str, int]":
    """``v_v_l2`` -> (``v_v``, 2); ``p_w`` -> (``p_w``, 0)."""
    if len(name) > 3 and name[-3:-1] == "_l" and name[-1] in "123":
        return name[:-3], int(name[-1])
    return name, 0


def _triple(st: list, res: float, single: bool) -> object:
    """[mean, min, max, n] -> ``[mean, mean - min, max - mean]`` in whole ``res`` (both
    spreads >= 0), or the mean alone when the slot had one sample; None(s) without data."""
    if not st[3]:
        return None if single else [None, None, None]
    m = _round(st[0] / res)
    if single:
        return m
    return [m, m - _round(st[1] / res), _round(st[2] / res) - m]


def _layout(names: tuple) -> list:
    """How the quantities ``names`` are laid out in ``q``: ``[(key, res, [(name, count
    key), ...], flat), ...]`` (see telemetry_body)."""
    fams = {}
    for name in names:
        fam, ph = _split(name)
        fams.setdefault(fam, {})[ph] = name
    out = []
    for fam in fams:
        key, res = FAMILIES.get(fam, (fam, 0.001))
        by = fams[fam]
        phases = sorted(by)
        if phases in ([0], [1, 2, 3], [0, 1, 2, 3]):
            out.append((key, res, [(by[ph], key + (str(ph) if ph else "")) for ph in phases],
                        phases != [0]))
        else:
            for ph in phases:
                k = key + (str(ph) if ph else "")
                out.append((k, res, [(by[ph], k)], False))
    return out


# Layouts by the slot's quantity names: one per meter class, computed once (the slot of
# every meter of a class has the same names), bounded should names ever vary.
_LAYOUTS = {}


def telemetry_body(data: dict) -> dict:
    """A closed slot (agent/aggregate.py) -> the compact telemetry fields (schema 2).

    ``q`` holds each measured family under its short key: one quantity (a total or a
    single-phase meter's) is ``[mean, below, above]`` (mean - min, max - mean), the three
    phases are the three triples of L1, L2, L3 in one list of 9, the total and the phases
    one list of 10: the total's mean, then the phases' triples. The total's own spread is
    left out there: the meter computes the total from the phases (sum, average or P/S), so
    its mean is what the phases cannot give exactly, while its min and max within the slot
    are the least used figures and cost a sixth of a 3-phase record (bench/delivery.py).
    Any other mix of phases is sent per phase under key + phase digit (``v1``). A slot of
    one sample (1-s slots) sends the means alone. ``nb`` is left out when 0, ``c`` when
    every quantity was in every good sample; ``e`` holds the counters' last values."""
    samples = data.get("samples", 0)
    single = samples == 1
    stats = data.get("stats") or {}
    names = tuple(stats)
    layout = _LAYOUTS.get(names)
    if layout is None:
        if len(_LAYOUTS) > 16:
            _LAYOUTS.clear()
        layout = _LAYOUTS[names] = _layout(names)
    q = {}
    counts = None
    for key, res, members, flat in layout:
        if flat:
            out = []
            for name, ck in members:
                st = stats[name]
                if single or ck == key:  # a total beside its phases: the mean alone
                    out.append(_triple(st, res, True))
                else:
                    out.extend(_triple(st, res, False))
                if st[3] != samples:
                    counts = counts or {}
                    counts[ck] = st[3]
            q[key] = out
        else:
            st = stats[members[0][0]]
            q[key] = _triple(st, res, single)
            if st[3] != samples:
                counts = counts or {}
                counts[key] = st[3]
    body = {"ts": _num(data.get("slot_start")), "dt": _num(data.get("slot_s")), "n": samples}
    if data.get("bad_samples"):
        body["nb"] = data["bad_samples"]
    body["q"] = q
    counters = data.get("counters")
    if counters:
        e = {}
        for name in counters:
            fam, ph = _split(name)
            x = counters[name]
            e[COUNTERS.get(fam, fam) + (str(ph) if ph else "")] = (
                None if x is None else _num(_round(x * 1000.0) / 1000.0))
        body["e"] = e
    if data.get("energy_kwh") is not None:
        body["de"] = _num(_round(data["energy_kwh"] * 1000.0) / 1000.0)
    if counts:
        body["c"] = counts
    if data.get("quality"):
        body["qf"] = data["quality"]
    if data.get("score") is not None:
        body["sc"] = _num(_round(data["score"] * 10.0) / 10.0)
    if data.get("detector_state"):
        body["ds"] = data["detector_state"]
    return body


def encode(payload: dict) -> bytes:
    if _STRICT_JSON:
        try:  # the common case: already plain JSON, no walk over the tree needed
            return _ENCODER.encode(payload).encode()
        except (ValueError, TypeError):  # NaN/inf or an odd type somewhere: clean first
            pass
    return json.dumps(clean(payload), separators=(",", ":")).encode()


class EventCodec:
    """Turns events into messages for one gateway.

    ``telemetry_qos`` / ``score_qos`` follow ``[broker]`` settings; everything else has the
    fixed QoS/retain of the contract. The score rides in the telemetry message; with
    ``score_topic`` the full score (contributions, evidence) is also sent on its own topic.
    """

    def __init__(self, prefix: str, site: str, gateway: str, telemetry_qos: int = 0,
                 score_qos: int = 0, score_topic: bool = False):
        self.prefix = prefix
        self.site = site
        self.gateway = gateway
        self.telemetry_qos = telemetry_qos
        self.score_qos = score_qos
        self.score_topic = score_topic

    def encode_telemetry(self, body: dict) -> bytes:
        """JSON here and on the MCU; the agent's Codec can send CBOR instead
        (agent/publish/codec.py, ``[broker] telemetry_encoding``)."""
        return encode(body)

    def publishes(self, ev: Event) -> bool:
        """False for what is not sent at all: the score event without ``score_topic``
        (its score is already in the slot's telemetry message)."""
        return ev.kind != "score" or self.score_topic

    # ----------------------------------------------------------------- topics

    def topic(self, *parts: str) -> str:
        return "/".join((self.prefix,) + parts)

    def meter_topic(self, meter: str, leaf: str) -> str:
        return self.topic("meter", meter, leaf)

    @property
    def status_topic(self) -> str:
        return self.topic("status")

    # ----------------------------------------------------------------- payloads

    def _base(self, kind: str, id: str, t: float, meter: str | None = None) -> dict:
        out = {"schema": SCHEMA_VERSION, "id": id, "kind": kind, "time": iso_utc(t), "t": t,
               "site": self.site, "gateway": self.gateway}
        if meter is not None:
            out["meter"] = meter
        return out

    def event(self, ev: Event) -> Message:
        """One policy/pipeline event -> its message (raises ValueError on an unknown kind)."""
        data = ev.data or {}
        if ev.kind == "telemetry":
            # No site, gateway, meter, kind or time: the topic says them, the slot dates it.
            body = {"schema": TELEMETRY_SCHEMA, "id": ev.id}
            body.update(telemetry_body(data))
            return Message(self.meter_topic(ev.meter, "telemetry"),
                           self.encode_telemetry(body), self.telemetry_qos, False, ev.kind,
                           ev.meter, ev.id)
        body = self._base(ev.kind, ev.id, ev.t, ev.meter)
        if ev.kind in ALERT_KINDS:
            contributions = data.get("contributions")
            if contributions is None:
                contributions = (ev.evidence or {}).get("contributions", {})
            body.update({
                "alert_id": ev.alert_id,
                "state": "cleared" if ev.kind == "cleared" else "active",
                "score": ev.score,
                "contributions": contributions,
                "evidence": ev.evidence or {},
                "units": SCORE_UNITS,
            })
            for k in data:
                if k not in body:
                    body[k] = data[k]
            return Message(self.meter_topic(ev.meter, "alert"), encode(body), 1, True,
                           ev.kind, ev.meter, ev.id)
        if ev.kind == "score":
            body.update({"score": ev.score,
                         "state": data.get("state", "warming"),
                         "contributions": data.get("contributions", {}),
                         "evidence": ev.evidence or {},
                         "units": SCORE_UNITS})
            return Message(self.meter_topic(ev.meter, "score"), encode(body), self.score_qos,
                           False, ev.kind, ev.meter, ev.id)
        if ev.kind == "health":
            body.update(data)
            body["last_success_time"] = iso_utc(data.get("last_success") or None)
            body["units"] = HEALTH_UNITS
            return Message(self.meter_topic(ev.meter, "health"), encode(body), 1, True,
                           ev.kind, ev.meter, ev.id)
        if ev.kind == "status":
            return self.status(data.get("state", "online"), ev.t, ev.id, data)
        raise ValueError("event kind %r has no topic" % ev.kind)

    def status(self, state: str, t: float, id: str, extra: dict | None = None,
               reason: str = "") -> Message:
        """Birth (``online``), orderly stop or will (``offline``); always retained QoS 1."""
        body = self._base("status", id, t)
        body["state"] = state
        if state == "online":
            body["units"] = {"telemetry": TELEMETRY_UNITS}
        if reason:
            body["reason"] = reason
        extra = extra or {}
        for k in extra:
            if k not in body:
                body[k] = extra[k]
        return Message(self.status_topic, encode(body), 1, True, "status", "", id)

    def will(self, t: float, id: str) -> Message:
        """What the broker publishes for us if the connection dies without a goodbye."""
        return self.status("offline", t, id, reason="connection lost")
