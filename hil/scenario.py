"""Scenario files: what the rig serves, what goes wrong, and what the agent must report.

A scenario is a TOML file in ``hil/scenarios/`` (or anywhere). It is parsed once into a
``Scenario``; every mistake is reported with the file and the key, like the agent's config
(``scenario error: meters[2].miner.from_day: -1.0 is below the minimum 0.0 in x.toml``),
and unknown keys are errors, so a misspelt ``form_day`` never silently means "day 0".

Schema (all days are simulated days since the scenario start, fractions allowed)::

    [scenario]
    name = "street-gpu"             # required; letters, digits, '-', '_', '.'
    description = "..."             # one line for the report
    seed = 1                        # seeds households, appliances, miners and faults
    tz_offset_hours = 10.0          # local time of the homes (hour-of-day features)
    start = 2013-06-03T00:00:00Z    # optional TOML datetime; default 2013-06-03 00:00 UTC

    [timeline]
    days = 10.0                     # simulated length
    speed = 28800.0                 # simulated seconds per real second (CLI --speed wins);
                                    # default: the whole timeline in about 60 real seconds
    poll_s = 1800.0                 # agent poll interval, simulated seconds
    telemetry_every_s = 21600.0     # agent telemetry slot, simulated seconds
    hold_poll_interval = true       # slow the clock when the agent cannot poll every poll_s
                                    # (a loaded machine); false: let polls drift apart
                                    # (a slow RS-485 bus that is the limit by design)

    [[buses]]
    name = "street"                 # referenced by meters and faults
    kind = "tcp"                    # "tcp" (a pymodbus TCP server) or "rtu" (an RTU server
                                    # behind the RS-485 link emulator on a pty pair, or on
                                    # a real serial port with --serial)
    baud = 9600                     # rtu only: 1200..115200
    parity = "N"                    # rtu only: N|E|O
    stopbits = 1                    # rtu only
    protocol = "modbus"             # or "dlt645": DL/T 645-2007 meters (hil/dlt645.py) on
                                    # an rtu line, default 2400 8E1
    gateway = false                 # dlt645: the agent reaches the line through a
                                    # transparent TCP gateway (raw bytes over TCP)
    timeout_ms = 500                # the agent's per-request timeout on this bus (real ms)
    retries = 1                     # the agent's retries before a poll counts as failed

    [[meters]]                      # one meter, or a group with count > 1
    id = "home-{n:02d}"             # with count > 1 a str.format pattern: {n} = 1..count,
                                    # {unit} = the meter's unit id
    count = 12                      # default 1
    bus = "street"
    unit = 1                        # Modbus unit id of the first meter of the group
    address = "000012340001"        # dlt645 buses: the first meter's 12-digit address
                                    # (the group counts up; {address} in the id pattern)
    quantities = ["p_w"]            # what the agent reads (default: its 7 defaults); a slow
                                    # line reads fewer to sweep faster
    profile = "sdm120"              # a shipped profile name or a profile file
    household = "auto"              # auto | synthetic | sgsc:<customer index> | uci | none
                                    # auto = SGSC customer per meter with --data, synthetic
                                    # households otherwise (runs need no data files)
    appliances = [{kind = "heat_pump", rated_w = 2000.0}]   # hil/loads/appliances.py
    miner = {kind = "s9", from_day = 5.0}   # s9 | s19 | gpu (gpus, gpu_w, platform_w) |
                                            # farm (kw); schedule = constant|duty|night|ramp
                                            # and the other hil/loads/miners.Miner settings

    [[loads]]                       # add loads to one meter of a group
    meter = "home-07"
    miner = {kind = "gpu", gpus = 6, from_day = 4.0}
    appliances = [...]

    [[faults]]
    kind = "dead"                   # dead | crc | exception | slow | bus_gone | broker_down
    meter = "v-17"                  # dead, exception, slow: one meter
    bus = "village"                 # crc, bus_gone: one bus (crc: rtu buses only)
    rate = 0.02                     # crc, exception: fraction of frames / requests
    delay_ms = 800                  # slow: extra answer delay
    from_day = 0.0                  # default 0
    to_day = 2.0                    # default: the end of the timeline

    [expect]
    false_alarms = 0                # raised alerts allowed on meters not expected to alert
    [[expect.alerts]]
    meter = "home-07"
    detected = true                 # true: a "raised" between from_day and to_day;
    from_day = 4.0                  # false: no alert at all for this meter (an honest,
    to_day = 7.0                    # documented miss; a detection then fails the check)
    [[expect.health]]
    meter = "v-17"
    state = "down"                  # ok | degraded | down, seen by the subscriber
    by_day = 1.0
    [[expect.quality]]
    bus = "village"                 # or meter = "..."
    flag = "crc"                    # a Reading quality flag name (agent/model.py)
    min_readings = 1                # at least this many readings carry the flag, and none
                                    # of them may have been scored

The runner (hil/runner.py) builds the loads, serves the meters, applies the faults on
schedule and checks every expectation; the rules above are the whole contract.
"""

from __future__ import annotations

import datetime as _dt
import re
import sys
from pathlib import Path

from agent.dlt645.codec import check_address
from agent.profiles import ProfileError, load_profile
from agent.settings import BAUD_RATES, SettingsTable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

DAY = 86400.0
DEFAULT_START = 1370217600.0  # 2013-06-03 00:00 UTC: inside the SGSC trial period
DEFAULT_RUN_REAL_S = 60.0
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BUS_KINDS = ("tcp", "rtu")
FAULT_KINDS = ("dead", "crc", "exception", "slow", "bus_gone", "broker_down")
HEALTH_STATES = ("ok", "degraded", "down")
QUALITY_FLAGS = ("nan", "inf", "out_of_range", "frozen", "energy_backwards", "energy_reset",
                 "modbus_exception", "timeout", "crc", "missing", "negative_power",
                 "error_reply")
HOUSEHOLD_RE = re.compile(r"^(auto|synthetic|uci|none|sgsc:\d{1,3})$")
# Miner kinds a scenario may name (hil/loads/miners.py builds them) and their own
# parameters; every kind also takes the common Miner settings (schedule, noise, ...).
MINER_KINDS = {"gpu": ("gpus", "gpu_w", "platform_w"), "s9": (), "s19": (), "farm": ("kw",)}
# Set by the rig, never by a scenario: seeds derive from [scenario].seed, time zone and
# onset from the scenario's tz_offset_hours and from_day.
RIG_PARAMS = {"self", "seed", "tz_hours", "start"}
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


class ScenarioError(ValueError):
    """A scenario problem: what, which key, which file."""

    def __init__(self, key: str, message: str, source: str):
        self.key = key
        self.source = source
        where = "%s: " % key if key else ""
        super().__init__("scenario error: %s%s in %s" % (where, message, source))


# --------------------------------------------------------------------------- the model


class BusSpec:
    def __init__(self, name: str, kind: str, baud: int = 9600, parity: str = "N",
                 stopbits: int = 1, timeout_ms: int = 500, retries: int = 1,
                 protocol: str = "modbus", gateway: bool = False):
        self.name = name
        self.kind = kind
        self.protocol = protocol  # "modbus" or "dlt645" (DL/T 645-2007 meters)
        self.gateway = gateway  # the line is reached through a transparent TCP gateway
        self.baud = baud
        self.parity = parity
        self.stopbits = stopbits
        self.timeout_ms = timeout_ms
        self.retries = retries

    def describe(self) -> str:
        if self.kind == "tcp":
            return "tcp"
        line = "%d %d%s%d" % (self.baud, 8, self.parity, self.stopbits)
        if self.protocol == "dlt645":
            return "dlt645 %s%s" % (line, " via a transparent TCP gateway"
                                    if self.gateway else "")
        return "rtu %s" % line


class LoadSpec:
    """One appliance or miner as written: ``kind`` and its keyword parameters.

    ``from_day`` / ``to_day`` (optional) switch it on and off relative to the start.
    """

    def __init__(self, kind: str, params: dict, from_day: float = 0.0,
                 to_day: float | None = None, key: str = ""):
        self.kind = kind
        self.params = params
        self.from_day = from_day
        self.to_day = to_day
        self.key = key

    def __repr__(self) -> str:
        return "LoadSpec(%r, %r, from_day=%r)" % (self.kind, self.params, self.from_day)


class MeterSpec:
    def __init__(self, id: str, bus: str, unit: int, profile: str, household: str,
                 index: int, key: str, address: str = ""):
        self.id = id
        self.bus = bus
        self.unit = unit
        self.address = address  # DL/T 645 meters: the 12-digit address
        self.quantities: list[str] = []  # what the agent reads ([]: its defaults)
        self.profile = profile
        self.household = household
        self.index = index  # position in the scenario: picks the SGSC customer and seeds
        self.key = key
        self.appliances: list[LoadSpec] = []
        self.miner: LoadSpec | None = None


class FaultSpec:
    def __init__(self, kind: str, from_day: float, to_day: float, meter: str = "",
                 bus: str = "", rate: float = 0.0, delay_ms: int = 0, code: int = 4,
                 key: str = ""):
        self.kind = kind
        self.from_day = from_day
        self.to_day = to_day
        self.meter = meter
        self.bus = bus
        self.rate = rate
        self.delay_ms = delay_ms
        self.code = code
        self.key = key

    def describe(self) -> str:
        target = self.meter or self.bus or "broker"
        extra = ""
        if self.rate:
            extra = " %g%%" % (self.rate * 100.0)
        if self.delay_ms:
            extra = " +%d ms" % self.delay_ms
        return "%s %s%s, day %g-%g" % (self.kind, target, extra, self.from_day, self.to_day)


class ExpectAlert:
    def __init__(self, meter: str, detected: bool, from_day: float, to_day: float,
                 note: str = ""):
        self.meter = meter
        self.detected = detected
        self.from_day = from_day
        self.to_day = to_day
        self.note = note


class ExpectHealth:
    def __init__(self, meter: str, state: str, by_day: float):
        self.meter = meter
        self.state = state
        self.by_day = by_day


class ExpectQuality:
    def __init__(self, flag: str, min_readings: int, meter: str = "", bus: str = ""):
        self.flag = flag
        self.min_readings = min_readings
        self.meter = meter
        self.bus = bus


class Scenario:
    """A parsed, validated scenario; ``with_timeline()`` shortens or speeds it for tests."""

    def __init__(self, source: str, name: str, description: str, seed: int,
                 tz_hours: float, start: float, days: float, speed: float, poll_s: float,
                 telemetry_every_s: float, buses: list[BusSpec], meters: list[MeterSpec],
                 faults: list[FaultSpec], alerts: list[ExpectAlert],
                 health: list[ExpectHealth], quality: list[ExpectQuality],
                 false_alarms: int, hold_poll_interval: bool = True):
        self.source = source
        self.name = name
        self.description = description
        self.seed = seed
        self.tz_hours = tz_hours
        self.start = start
        self.days = days
        self.speed = speed
        self.poll_s = poll_s
        self.telemetry_every_s = telemetry_every_s
        self.buses = buses
        self.meters = meters
        self.faults = faults
        self.alerts = alerts
        self.health = health
        self.quality = quality
        self.false_alarms = false_alarms
        self.hold_poll_interval = hold_poll_interval

    @property
    def end(self) -> float:
        return self.start + self.days * DAY

    def bus(self, name: str) -> BusSpec:
        for b in self.buses:
            if b.name == name:
                return b
        raise KeyError(name)

    def meters_on(self, bus: str) -> list[MeterSpec]:
        return [m for m in self.meters if m.bus == bus]

    def with_timeline(self, speed: float | None = None, days: float | None = None) -> Scenario:
        """The same scenario at another clock speed (the CLI's ``--speed``), or only its
        first ``days`` (for tests of a scenario whose full run is long: expectations that
        cannot be judged that early are dropped, faults are cut at the new end)."""
        if speed is not None:
            if not speed > 0:
                raise ValueError("speed must be > 0")
            self.speed = float(speed)
        if days is not None:
            if not 0 < days <= self.days:
                raise ValueError("days must be in (0, %g]" % self.days)
            self.days = float(days)
            self.alerts = [a for a in self.alerts if a.to_day <= days]
            self.health = [h for h in self.health if h.by_day <= days]
            self.faults = [f for f in self.faults if f.from_day < days]
            for f in self.faults:
                f.to_day = min(f.to_day, days)
        return self


# --------------------------------------------------------------------------- parsing


class _Table(SettingsTable):
    """A scenario table being validated: the agent's config validator, whose errors
    name the scenario file and key."""

    error_class = ScenarioError


def _load_spec(t: _Table, days: float, what: str) -> LoadSpec:
    """An appliance or miner table: ``kind``, ``from_day``, ``to_day`` and free parameters
    (checked against the model's constructor when the runner builds it)."""
    kind = t.get("kind", str)
    known = _model_params(t, kind, what)
    from_day = t.get("from_day", float, 0.0, lo=0.0, hi=days)
    to_day = t.get("to_day", float, None, lo=from_day, hi=days)
    params = {}
    for k, v in t.data.items():
        if k in ("kind", "from_day", "to_day"):
            continue
        if k not in known:
            continue  # left unused: finish() reports it with the known keys
        if not isinstance(v, (int, float, str, bool)):
            raise t.error(k, "%r must be a number, string or true/false" % (v,))
        params[k] = v
    t.used.update(known)  # so an unknown key's error lists every parameter of the model
    t.finish()
    return LoadSpec(kind, params, from_day, to_day, t.path)


def _model_params(t: _Table, kind: str, what: str) -> set[str]:
    """The keyword parameters the model's constructor takes (seed and tz are the rig's)."""
    import inspect

    if what == "appliance":
        from hil.loads.appliances import APPLIANCES as models

        if kind in models:
            return set(inspect.signature(models[kind]).parameters) - RIG_PARAMS
    else:
        from hil.loads.miners import Miner

        models = MINER_KINDS
        if kind in models:
            common = set(inspect.signature(Miner).parameters) - RIG_PARAMS - {
                "rated_w", "pf", "kind", "description"}
            return common | set(MINER_KINDS[kind])
    raise t.error("kind", "%r is not a%s %s (known: %s)" % (
        kind, "n" if what[0] in "aeiou" else "", what, ", ".join(sorted(models))))


def _loads_into(meter: MeterSpec, t: _Table, days: float) -> None:
    for i, raw in enumerate(t.get("appliances", list, [])):
        meter.appliances.append(_load_spec(_Table(raw, "%s[%d]" % (t.key("appliances"), i),
                                                  t.source), days, "appliance"))
    if "miner" in t.data:
        if meter.miner is not None:
            raise t.error("miner", "meter %s already has a miner" % meter.id)
        meter.miner = _load_spec(t.table("miner"), days, "miner")


def parse_text(text: str, source: str) -> Scenario:
    """Parse and validate scenario TOML; ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError("", "not valid TOML: %s" % e, source) from None
    root = _Table(data, "", source)
    head = root.table("scenario")
    name = head.get("name", str)
    if not ID_RE.match(name):
        raise head.error("name", "%r must be letters, digits, '_', '.', '-'" % name)
    description = head.get("description", str, "")
    seed = head.get("seed", int, 1)
    tz_hours = head.get("tz_offset_hours", float, 0.0, lo=-14.0, hi=14.0)
    start_raw = head.get("start", (_dt.datetime, _dt.date), None)
    if start_raw is None:
        start = DEFAULT_START
    elif isinstance(start_raw, _dt.datetime):
        if start_raw.tzinfo is None:
            raise head.error("start", "give a UTC offset (e.g. 2013-06-03T00:00:00Z)")
        start = start_raw.timestamp()
    else:
        start = _dt.datetime(start_raw.year, start_raw.month, start_raw.day,
                             tzinfo=_dt.timezone.utc).timestamp()
    head.finish()

    tl = root.table("timeline")
    days = tl.get("days", float, lo=0.01, hi=3650.0)
    speed = tl.get("speed", float, days * DAY / DEFAULT_RUN_REAL_S, lo=1.0, hi=1e7)
    poll_s = tl.get("poll_s", float, 900.0, lo=0.1, hi=3600.0)
    telemetry_every_s = tl.get("telemetry_every_s", float, 3600.0, lo=1.0, hi=86400.0)
    hold = tl.get("hold_poll_interval", bool, True)
    tl.finish()

    buses: list[BusSpec] = []
    for bt in root.array("buses"):
        bname = bt.get("name", str)
        if not ID_RE.match(bname):
            raise bt.error("name", "%r must be letters, digits, '_', '.', '-'" % bname)
        if any(b.name == bname for b in buses):
            raise bt.error("name", "%r is defined twice" % bname)
        kind = bt.get("kind", str, choices=BUS_KINDS)
        protocol = bt.get("protocol", str, "modbus", choices=("modbus", "dlt645"))
        dlt = protocol == "dlt645"
        if dlt and kind != "rtu":
            raise bt.error("kind", "a DL/T 645 line is kind = \"rtu\" (add gateway = true "
                           "for a transparent TCP gateway in front of it)")
        bus = BusSpec(bname, kind, protocol=protocol)
        bus.gateway = bt.get("gateway", bool, False)
        if bus.gateway and not dlt:
            raise bt.error("gateway", "transparent gateways are simulated for DL/T 645 lines "
                           "(Modbus: kind = \"tcp\")")
        if kind == "rtu":
            bus.baud = bt.get("baud", int, 2400 if dlt else 9600, choices=BAUD_RATES)
            bus.parity = bt.get("parity", str, "E" if dlt else "N", choices=("N", "E", "O"))
            bus.stopbits = bt.get("stopbits", int, 1, choices=(1, 2))
        bus.timeout_ms = bt.get("timeout_ms", int, 500, lo=10, hi=60000)
        bus.retries = bt.get("retries", int, 1, lo=0, hi=10)
        bt.finish()
        buses.append(bus)
    if not buses:
        raise root.error("buses", "no buses: add at least one [[buses]]")
    bus_names = {b.name for b in buses}

    meters: list[MeterSpec] = []
    units: set[tuple[str, int]] = set()
    for mt in root.array("meters"):
        count = mt.get("count", int, 1, lo=1, hi=247)
        pattern = mt.get("id", str)
        bus = mt.get("bus", str)
        if bus not in bus_names:
            raise mt.error("bus", "%r is not a bus defined in [[buses]] (known: %s)"
                           % (bus, ", ".join(sorted(bus_names))))
        unit0 = mt.get("unit", int, 1, lo=1, hi=247)
        if unit0 + count - 1 > 247:
            raise mt.error("count", "units %d..%d go past 247" % (unit0, unit0 + count - 1))
        profile = mt.get("profile", str)
        bus_spec = next(b for b in buses if b.name == bus)
        address0 = 0
        if bus_spec.protocol == "dlt645":
            first = mt.get("address", str)
            try:
                address0 = int(check_address(first))
            except ValueError as e:
                raise mt.error("address", str(e)) from None
            if address0 + count - 1 >= 10 ** 12:
                raise mt.error("count", "addresses go past 999999999999")
        elif mt.has("address"):
            raise mt.error("address", "only meters on a protocol = \"dlt645\" bus have an "
                           "address (Modbus: unit)")
        if bus_spec.protocol == "dlt645":  # (Modbus profiles are checked by the agent)
            try:
                if load_profile(profile).protocol != "dlt645":
                    raise mt.error("profile", "%s is not a DL/T 645 profile (bus %s speaks "
                                   "dlt645)" % (profile, bus))
            except ProfileError as e:
                raise mt.error("profile", str(e)) from None
        quantities = mt.get("quantities", list, [])
        if not all(isinstance(q, str) for q in quantities):
            raise mt.error("quantities", "must be a list of quantity names")
        household = mt.get("household", str, "auto")
        if not HOUSEHOLD_RE.match(household):
            raise mt.error("household", "%r must be auto, synthetic, sgsc:<n>, uci or none"
                           % household)
        group: list[MeterSpec] = []
        for n in range(1, count + 1):
            address = "%012d" % (address0 + n - 1) if address0 else ""
            try:
                mid = (pattern.format(n=n, unit=unit0 + n - 1, address=address) if count > 1
                       else pattern)
            except (KeyError, IndexError, ValueError):
                raise mt.error("id", "%r: with count > 1 use a pattern such as "
                               "\"home-{n:02d}\" or \"v-{unit}\"" % pattern) from None
            if count > 1 and mid == pattern:
                raise mt.error("id", "%r gives every meter of the group the same id; use "
                               "{n} or {unit}" % pattern)
            if not ID_RE.match(mid):
                raise mt.error("id", "%r must be letters, digits, '_', '.', '-' (max 64)"
                               % mid)
            if any(m.id == mid for m in meters + group):
                raise mt.error("id", "%r is used by another meter" % mid)
            unit = unit0 + n - 1
            if (bus, unit) in units:
                raise mt.error("unit", "unit %d is already used on bus %s" % (unit, bus))
            units.add((bus, unit))
            group.append(MeterSpec(mid, bus, unit, profile, household, len(meters)
                                   + len(group), mt.path, address=address))
        for m in group:
            m.quantities = list(quantities)
            _loads_into(m, mt, days)
        mt.finish()
        meters.extend(group)
    if not meters:
        raise root.error("meters", "no meters: add at least one [[meters]]")
    by_id = {m.id: m for m in meters}

    for lt in root.array("loads"):
        mid = lt.get("meter", str)
        if mid not in by_id:
            raise lt.error("meter", "%r is not a meter of this scenario" % mid)
        _loads_into(by_id[mid], lt, days)
        lt.finish()

    faults: list[FaultSpec] = []
    for ft in root.array("faults"):
        kind = ft.get("kind", str, choices=FAULT_KINDS)
        from_day = ft.get("from_day", float, 0.0, lo=0.0, hi=days)
        to_day = ft.get("to_day", float, days, lo=from_day, hi=days)
        f = FaultSpec(kind, from_day, to_day, key=ft.path)
        if kind in ("dead", "exception", "slow"):
            f.meter = ft.get("meter", str)
            if f.meter not in by_id:
                raise ft.error("meter", "%r is not a meter of this scenario" % f.meter)
        elif kind in ("crc", "bus_gone"):
            f.bus = ft.get("bus", str)
            if f.bus not in bus_names:
                raise ft.error("bus", "%r is not a bus of this scenario" % f.bus)
            if kind == "crc" and next(b for b in buses if b.name == f.bus).kind != "rtu":
                raise ft.error("bus", "CRC faults need an rtu bus (Modbus TCP has no CRC)")
        if kind in ("crc", "exception"):
            f.rate = ft.get("rate", float, lo=0.0, hi=1.0)
        if kind == "exception":
            f.code = ft.get("code", int, 4, lo=1, hi=11)
        if kind == "slow":
            f.delay_ms = ft.get("delay_ms", int, lo=1, hi=60000)
        ft.finish()
        faults.append(f)

    et = root.table("expect")
    false_alarms = et.get("false_alarms", int, 0, lo=0)
    alerts: list[ExpectAlert] = []
    for at in et.array("alerts"):
        mid = at.get("meter", str)
        if mid not in by_id:
            raise at.error("meter", "%r is not a meter of this scenario" % mid)
        if any(a.meter == mid for a in alerts):
            raise at.error("meter", "%r already has an expectation" % mid)
        detected = at.get("detected", bool)
        lo_day = at.get("from_day", float, 0.0, lo=0.0, hi=days)
        hi_day = at.get("to_day", float, days, lo=lo_day, hi=days)
        note = at.get("note", str, "")
        at.finish()
        alerts.append(ExpectAlert(mid, detected, lo_day, hi_day, note))
    health: list[ExpectHealth] = []
    for ht in et.array("health"):
        mid = ht.get("meter", str)
        if mid not in by_id:
            raise ht.error("meter", "%r is not a meter of this scenario" % mid)
        health.append(ExpectHealth(mid, ht.get("state", str, choices=HEALTH_STATES),
                                   ht.get("by_day", float, days, lo=0.0, hi=days)))
        ht.finish()
    quality: list[ExpectQuality] = []
    for qt in et.array("quality"):
        q = ExpectQuality(qt.get("flag", str, choices=QUALITY_FLAGS),
                          qt.get("min_readings", int, 1, lo=1))
        q.meter = qt.get("meter", str, "")
        q.bus = qt.get("bus", str, "")
        if bool(q.meter) == bool(q.bus):
            raise qt.error("meter", "give exactly one of meter or bus")
        if q.meter and q.meter not in by_id:
            raise qt.error("meter", "%r is not a meter of this scenario" % q.meter)
        if q.bus and q.bus not in bus_names:
            raise qt.error("bus", "%r is not a bus of this scenario" % q.bus)
        qt.finish()
        quality.append(q)
    et.finish()
    root.finish()
    return Scenario(source, name, description, seed, tz_hours, start, days, speed, poll_s,
                    telemetry_every_s, buses, meters, faults, alerts, health, quality,
                    false_alarms, hold)


def load(path: str | Path) -> Scenario:
    """Read a scenario file; a bare name (``street-gpu``) means a shipped scenario."""
    p = Path(path)
    if not p.exists() and not p.suffix and (SCENARIO_DIR / (p.name + ".toml")).exists():
        p = SCENARIO_DIR / (p.name + ".toml")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError("", "file not found (shipped scenarios: %s)"
                            % ", ".join(shipped()), str(p)) from None
    except OSError as e:
        raise ScenarioError("", "cannot read: %s" % e.strerror, str(p)) from None
    except UnicodeDecodeError:
        raise ScenarioError("", "not UTF-8 text", str(p)) from None
    return parse_text(text, str(p))


def shipped() -> list[str]:
    """Names of the scenarios in hil/scenarios/."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
