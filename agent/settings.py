"""One settings module: the table validator every config file uses, the choices they share,
one quirk schema, the time-zone rule and the scoring settings.

The agent's config (agent/config.py), the firmware config (firmware_bridge/devconfig.py),
profiles (agent/profiles) and the rig's scenarios (hil/scenario.py) all read TOML tables
through ``SettingsTable``, so every error names the key and the file the same way, and a
setting valid in one place (a quirk in a profile) is valid with the same limits in the
other (the same quirk on one meter).
"""

from __future__ import annotations

import datetime
from typing import Any

from agent.model import SettingsError
from agent.policy import Policy, default_policy_settings
from agent.signature import Detector, default_settings

# Serial line speeds a bus (and the rig's simulated line) may use; an MCU's UART also
# does 230400 for its link to the host.
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
UART_BAUD_RATES = BAUD_RATES + (230400,)
PARITIES = ("N", "E", "O")
WORD_ORDERS = ("ABCD", "CDAB")
# Device quirks, named settings with the same limits in a profile's [quirks] and in a
# meter's own quirks table: key -> (kinds, lowest, highest); word_order is a choice.
QUIRKS: dict[str, tuple[tuple, float, float]] = {
    "max_registers": ((int,), 1, 125),
    "max_gap": ((int,), 0, 125),
    "pause_ms": ((int,), 0, 10000),
    "timeout_ms": ((int,), 10, 60000),
    "frozen_s": ((int, float), 1, 10 ** 7),
}
QUIRK_KEYS = tuple(sorted(QUIRKS)) + ("word_order",)
# DL/T 645 requests are not register reads: only these quirks mean anything there.
DI_QUIRK_KEYS = ("frozen_s", "pause_ms", "timeout_ms")
TZ_HOURS_LIMIT = 14.0


class ConfigError(ValueError):
    """A config problem, phrased for the technician: what, which key, which file."""

    def __init__(self, key: str, message: str, source: str):
        self.key = key
        self.source = source
        where = "%s: " % key if key else ""
        super().__init__("config error: %s%s in %s" % (where, message, source))


class SettingsTable:
    """A TOML table being validated: typed getters that name the key on error, and a
    check that every key was consumed. Shared with the rig's scenario files and the
    firmware config, which only swap ``error_class``."""

    error_class: type[ValueError] = ConfigError

    def __init__(self, data: Any, path: str, source: str):
        if not isinstance(data, dict):
            raise self.error_class(path, "must be a table", source)
        self.data = data
        self.path = path
        self.source = source
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return "%s.%s" % (self.path, name) if self.path else name

    def error(self, name: str, message: str) -> ValueError:
        return self.error_class(self.key(name), message, self.source)

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, kind: Any, default: Any = ..., *, choices: tuple = (),
            lo: float | None = None, hi: float | None = None) -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is ...:
                raise self.error(name, "is required")
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # TOML ints are fine where floats are wanted; bools are not numbers here.
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(name, "%r must be %s" % (value, _kind_name(kinds)))
        if not isinstance(value, kinds):
            raise self.error(name, "%r must be %s" % (value, _kind_name(kinds)))
        if choices and value not in choices:
            raise self.error(name, "%r is not one of %s" % (value, "|".join(map(str, choices))))
        if lo is not None and value < lo:
            raise self.error(name, "%r is below the minimum %r" % (value, lo))
        if hi is not None and value > hi:
            raise self.error(name, "%r is above the maximum %r" % (value, hi))
        return value

    def table(self, name: str) -> SettingsTable:
        self.used.add(name)
        return type(self)(self.data.get(name, {}), self.key(name), self.source)

    def array(self, name: str) -> list[SettingsTable]:
        """An array of tables (``[[name]]``), each validated on its own."""
        self.used.add(name)
        raw = self.data.get(name, [])
        if not isinstance(raw, list):
            raise self.error(name, "must be an array of tables ([[%s]])" % name)
        return [type(self)(x, "%s[%d]" % (self.key(name), i), self.source)
                for i, x in enumerate(raw)]

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key (typo?); known keys here: %s"
                             % ", ".join(sorted(self.used)))


def _kind_name(kinds: tuple) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table", datetime.datetime: "a date-time",
             datetime.date: "a date"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def quirks_table(t: SettingsTable, keys: tuple = QUIRK_KEYS) -> dict:
    """A ``[quirks]`` table (a profile's, or one meter's overrides) checked against the one
    schema: known keys only, each within its limits."""
    out: dict[str, Any] = {}
    for key in list(t.data):
        if key not in keys:
            raise t.error(key, "unknown quirk (known: %s)" % ", ".join(sorted(keys)))
        if key == "word_order":
            out[key] = t.get(key, str, choices=WORD_ORDERS)
        else:
            kinds, lo, hi = QUIRKS[key]
            out[key] = t.get(key, kinds if float not in kinds else float, lo=lo, hi=hi)
    t.finish()
    return out


def tz_offset_s(root: SettingsTable, detector: dict, classes: dict[str, dict]) -> float:
    """The local-time offset every detector uses, from one of its two spellings.

    ``tz_offset_hours`` (top level) is the documented one; ``[detector] tz_offset_s`` is
    the detector's own setting. Either works; both at once is an error (they used to
    disagree silently: the agent took the hours, replay the seconds), and so is a class
    that sets its own (the hour of day is the gateway's, not a meter class's)."""
    for cname, one in classes.items():
        if "tz_offset_s" in one["detector"]:
            raise root.error("classes.%s.detector.tz_offset_s" % cname,
                             "the time zone is the gateway's: set tz_offset_hours at the "
                             "top level instead")
    hours_given = root.has("tz_offset_hours")
    hours = root.get("tz_offset_hours", float, 0.0, lo=-TZ_HOURS_LIMIT, hi=TZ_HOURS_LIMIT)
    if "tz_offset_s" not in detector:
        return hours * 3600.0
    if hours_given:
        raise root.error("detector.tz_offset_s", "set either tz_offset_hours or "
                         "[detector] tz_offset_s, not both")
    seconds = detector["tz_offset_s"]
    if not -TZ_HOURS_LIMIT * 3600.0 <= seconds <= TZ_HOURS_LIMIT * 3600.0:
        raise root.error("detector.tz_offset_s", "%r is outside -50400..50400 s (+-14 h)"
                         % (seconds,))
    return float(seconds)


def settings_table(t: SettingsTable, name: str, defaults: dict) -> dict:
    """A free-form settings table checked against the component's known defaults."""
    sub = t.table(name)
    out = {}
    for key, value in sub.data.items():
        sub.used.add(key)
        if key not in defaults:
            raise sub.error(key, "unknown setting; known: %s" % ", ".join(sorted(defaults)))
        if isinstance(defaults[key], (int, float)) and not isinstance(defaults[key], bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise sub.error(key, "%r must be a number" % (value,))
        out[key] = value
    return out


def check_settings(where: str, detector: dict, policy: dict, source: str) -> None:
    """Build a detector and a policy from the merged settings once, so that a value the
    components reject (a slot that does not divide an hour, clear_at above raise_at) is a
    config error naming the key, not a crash when the runtime starts.

    The key is the one the component names (``SettingsError.key``), never a guess from
    the words of its message."""
    for table, settings, build in (("detector", detector, Detector),
                                   ("policy", policy, lambda s: Policy("check", s))):
        try:
            build(dict(settings))
        except SettingsError as e:
            prefix = "" if where == "detector" else where + "."
            raise ConfigError("%s%s.%s" % (prefix, table, e.key), str(e), source) from None


def quirk_overrides(t: SettingsTable) -> dict:
    """A meter's own ``quirks`` table (overrides of its profile's, same schema)."""
    return quirks_table(t.table("quirks"))


def telemetry_quantities(t: SettingsTable) -> tuple[str, ...] | None:
    """``telemetry_quantities`` of a meter class: which of the quantities a meter is read
    for its telemetry publishes ("all", the default: None). Names are the profiles'
    standard ones (``v_v_l1``); one a meter does not read is simply not there."""
    from agent.profiles import KNOWN_QUANTITIES

    wanted = t.get("telemetry_quantities", (list, str), "all")
    if wanted == "all":
        return None
    if isinstance(wanted, str) or not all(isinstance(n, str) for n in wanted):
        raise t.error("telemetry_quantities", "%r must be a list of quantity names or "
                      "\"all\"" % (wanted,))
    unknown = [n for n in wanted if n not in KNOWN_QUANTITIES]
    if unknown:
        raise t.error("telemetry_quantities", "%s: not a quantity name (known: %s)" % (
            ", ".join(unknown), ", ".join(sorted(KNOWN_QUANTITIES))))
    return tuple(wanted)


def scoring_settings(root: SettingsTable) -> tuple[dict, dict, dict[str, dict]]:
    """``[detector]``, ``[policy]`` and ``[classes.NAME.detector|policy]`` of a config,
    validated against the components' defaults and by building them once (the agent's
    config and the firmware config share this)."""
    det_defaults = default_settings()
    pol_defaults = default_policy_settings()
    detector = settings_table(root, "detector", det_defaults)
    policy = settings_table(root, "policy", pol_defaults)
    classes: dict[str, dict] = {}
    ct = root.table("classes")
    for cname in list(ct.data):
        one = ct.table(cname)
        classes[cname] = {"detector": settings_table(one, "detector", det_defaults),
                          "policy": settings_table(one, "policy", pol_defaults),
                          "telemetry_quantities": telemetry_quantities(one)}
        one.finish()
    ct.finish()
    check_settings("detector", detector, policy, root.source)
    for cname, one in classes.items():
        check_settings("classes.%s" % cname, {**detector, **one["detector"]},
                        {**policy, **one["policy"]}, root.source)
    return detector, policy, classes




def replay_settings(config: str | None, tz_hours: float | None) -> tuple[dict, dict]:
    """The detector and policy settings recorded data is scored with (``loadwatch replay``
    and ``loadwatch screen``): a config's ``[detector]`` and ``[policy]`` (the defaults
    without one), with a command line's ``--tz`` (hours) over the config's time zone.

    Settings the core rejects raise here (a ValueError; ConfigError for the file), so
    each command reports them as a usage error instead of crashing on its first meter.
    agent.config is imported only when a config is given: it is the heavier module, and
    neither command needs it otherwise."""
    if config:
        from agent.config import load_detector_settings

        detector, policy = load_detector_settings(config)
    else:
        detector, policy = default_settings(), default_policy_settings()
    detector = dict(detector)
    if tz_hours is not None:
        detector["tz_offset_s"] = tz_hours * 3600.0
    Detector(detector)
    Policy("check", policy)
    return detector, policy
