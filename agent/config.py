"""TOML configuration -> validated settings -> a fixed ``Plan``.

After Telegraf's ``Init() -> check() -> process()``: everything that can be wrong with a
config is found here, once, at start-up, and reported with the file and the key
(``config error: meters[3].unit: 300 is not a Modbus unit id (1-247) in /etc/x.toml``).
The pollers and the runtime only execute the Plan; they never look at the TOML again.

Unknown keys are errors, not warnings: a misspelt ``pol_s`` silently falling back to a
default is how a gateway ends up polling a bus every second for a year.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

from agent.dlt645.codec import check_address
from agent.dlt645.plan import ItemRequest, plan_items
from agent.modbus.blocks import ReadRequest, plan_reads
from agent.policy import default_policy_settings
from agent.profiles import Profile, ProfileError, Quirks, load_profile
from agent.publish.codec import ENCODINGS, cbor_available
from agent.settings import (
    BAUD_RATES,
    PARITIES,
    ConfigError,
    SettingsTable,
    check_settings,
    quirk_overrides,
    scoring_settings,
    settings_table,
    tz_offset_s,
)
from agent.signature import default_settings

__all__ = ["ConfigError", "Plan", "SettingsTable", "load", "load_detector_settings",
           "load_text", "meter_address", "meter_class", "meter_profile", "meter_unit",
           "parse_toml", "read_config", "scoring_settings", "site_and_gateway"]

# What the detector and the telemetry need from every meter; a profile that lacks one of
# the optional ones simply does not have it (p_w is the only hard requirement).
DEFAULT_QUANTITIES = ("p_w", "pf", "q_var", "v_v", "i_a", "f_hz", "e_import_kwh")
BUS_KINDS = ("tcp", "rtu", "rtu-over-tcp", "bridge")
PROTOCOLS = ("modbus", "dlt645")
# A DL/T 645 line is a serial port or a transparent TCP gateway in front of one.
DLT645_KINDS = ("rtu", "rtu-over-tcp")
DEFAULT_PREFIX = "loadwatch/v1/{site}/{gateway}"
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BrokerSettings:
    """Where and how to publish. ``password`` is a secret: it never appears in reprs."""

    def __init__(self, **kw: Any):
        self.host: str = kw["host"]
        self.port: int = kw["port"]
        self.client_id: str = kw["client_id"]
        self.username: str = kw.get("username", "")
        self.password: str = kw.get("password", "")
        self.tls: bool = kw["tls"]
        self.ca_file: str = kw.get("ca_file", "")
        self.cert_file: str = kw.get("cert_file", "")
        self.key_file: str = kw.get("key_file", "")
        self.insecure_skip_verify: bool = kw.get("insecure_skip_verify", False)
        self.prefix: str = kw["prefix"]
        self.keepalive_s: int = kw.get("keepalive_s", 30)
        self.telemetry_qos: int = kw.get("telemetry_qos", 0)
        self.score_qos: int = kw.get("score_qos", 0)
        # The score rides in each telemetry message; True also sends the full score
        # (contributions, evidence) on meter/<id>/score, for subscribers who use it.
        self.score_topic: bool = kw.get("score_topic", False)
        self.protocol: str = kw.get("protocol", "auto")
        # "cbor": telemetry as CBOR, marked by the MQTT 5 content type (agent/publish/codec.py)
        self.telemetry_encoding: str = kw.get("telemetry_encoding", "json")
        # Settings that work but should not be used so (an inline password, a password
        # over plain TCP): check-config prints them, ``run`` logs them at start.
        self.warnings: list[str] = list(kw.get("warnings", ()))

    def describe(self) -> dict:
        """Settings safe to print: the password is reported only as set or not."""
        return {
            "host": self.host,
            "port": self.port,
            "client_id": self.client_id,
            "username": self.username,
            "password": "(set)" if self.password else "(none)",
            "tls": self.tls,
            "ca_file": self.ca_file,
            "cert_file": self.cert_file,
            "key_file": self.key_file,
            "prefix": self.prefix,
            "protocol": self.protocol,
            "telemetry_encoding": self.telemetry_encoding,
        }

    def __repr__(self) -> str:
        return "BrokerSettings(%r)" % (self.describe(),)


class OutboxSettings:
    def __init__(self, path: str, max_bytes: int):
        self.path = path
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return "OutboxSettings(path=%r, max_bytes=%r)" % (self.path, self.max_bytes)


class WebSettings:
    """The optional status page and ``/metrics`` listener (``[web]``); off by default.

    ``password`` is a secret read from ``password_file``: it never appears in reprs."""

    def __init__(self, host: str, port: int, username: str = "", password: str = "",
                 tls: bool = False, cert_file: str = "", key_file: str = "",
                 ca_file: str = "", max_clients: int = 4, header_timeout_s: float = 5.0,
                 max_request_bytes: int = 8192):
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.tls = tls
        self.cert_file = cert_file
        self.key_file = key_file
        self.ca_file = ca_file
        self.max_clients = max_clients
        self.header_timeout_s = header_timeout_s
        self.max_request_bytes = max_request_bytes

    @property
    def auth(self) -> bool:
        return bool(self.password)

    def __repr__(self) -> str:
        return "WebSettings(%s:%d, auth=%s, tls=%s)" % (self.host, self.port, self.auth,
                                                         self.tls)


class HomeAssistantSettings:
    """Home Assistant MQTT discovery (``[homeassistant]``); opt-in."""

    def __init__(self, discovery_prefix: str = "homeassistant"):
        self.discovery_prefix = discovery_prefix

    def __repr__(self) -> str:
        return "HomeAssistantSettings(%r)" % self.discovery_prefix


class MeterPlan:
    """One meter: what to read (``requests``), how often, and how to judge it."""

    def __init__(self, id: str, bus: str, unit: int, profile: Profile, meter_class: str,
                 poll_s: float, quirks: Quirks, requests: list[ReadRequest] | list[ItemRequest],
                 quantities: tuple[str, ...], address: str = ""):
        self.id = id
        self.bus = bus
        self.unit = unit
        self.address = address  # DL/T 645: the meter's 12-digit address (unit is 0)
        self.profile = profile
        self.meter_class = meter_class
        self.poll_s = poll_s
        self.quirks = quirks
        self.requests = requests
        self.quantities = quantities

    def __repr__(self) -> str:
        return "MeterPlan(%r, %s, profile=%r, requests=%d)" % (
            self.id, self.where, self.profile.name, len(self.requests))

    @property
    def where(self) -> str:
        """How the meter is addressed on its bus, for messages: ``unit 3`` or
        ``address 000012345678``."""
        return "address %s" % self.address if self.address else "unit %d" % self.unit


class BusPlan:
    """One physical or logical bus and the meters on it, in poll order."""

    def __init__(self, name: str, kind: str, host: str = "", port: Any = None,
                 baud: int = 9600, parity: str = "N", stopbits: int = 1, bytesize: int = 8,
                 timeout_s: float = 1.0, retries: int = 1, backoff_max_s: float = 300.0,
                 per_host_limit: int = 1, meters: list[MeterPlan] | None = None,
                 protocol: str = "modbus"):
        self.name = name
        self.kind = kind
        self.protocol = protocol
        self.host = host
        self.port = port
        self.baud = baud
        self.parity = parity
        self.stopbits = stopbits
        self.bytesize = bytesize
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_max_s = backoff_max_s
        self.per_host_limit = per_host_limit
        self.meters = meters if meters is not None else []

    def __repr__(self) -> str:
        return "BusPlan(%r, %r, %s, meters=%d)" % (self.name, self.kind, self.protocol,
                                                   len(self.meters))


class Plan:
    """Everything the runtime needs, decided once."""

    def __init__(self, source: str, site: str, gateway: str, tz_offset_s: float,
                 state_dir: str, broker: BrokerSettings, outbox: OutboxSettings,
                 detector: dict, policy: dict, classes: dict[str, dict],
                 buses: list[BusPlan], telemetry_every_s: float, checkpoint_every_s: float,
                 web: WebSettings | None = None,
                 homeassistant: HomeAssistantSettings | None = None):
        self.source = source
        self.web = web
        self.homeassistant = homeassistant
        self.site = site
        self.gateway = gateway
        self.tz_offset_s = tz_offset_s
        self.state_dir = state_dir
        self.broker = broker
        self.outbox = outbox
        self.detector = detector
        self.policy = policy
        self.classes = classes
        self.buses = buses
        self.telemetry_every_s = telemetry_every_s
        self.checkpoint_every_s = checkpoint_every_s

    @property
    def warnings(self) -> list[str]:
        """Lines for the technician about settings that work but are unsafe."""
        return list(self.broker.warnings)

    @property
    def meters(self) -> list[MeterPlan]:
        return [m for b in self.buses for m in b.meters]

    def detector_settings(self, meter_class: str) -> dict:
        """Detector settings for a meter class: defaults < [detector] < [classes.X.detector],
        with the one time-zone offset (agent/settings.py ``tz_offset_s``)."""
        out = dict(self.detector)
        out.update(self.classes.get(meter_class, {}).get("detector", {}))
        out["tz_offset_s"] = self.tz_offset_s
        return out

    def telemetry_quantities(self, meter_class: str) -> tuple[str, ...] | None:
        """What a class's telemetry publishes (None: every quantity its meters read)."""
        return self.classes.get(meter_class, {}).get("telemetry_quantities")

    def policy_settings(self, meter_class: str) -> dict:
        out = dict(self.policy)
        out.update(self.classes.get(meter_class, {}).get("policy", {}))
        return out

    def describe(self) -> str:
        """The human summary printed by ``check-config``: requests per bus and meter."""
        lines = ["site %s, gateway %s, broker %s:%s (tls %s), prefix %s" % (
            self.site, self.gateway, self.broker.host, self.broker.port,
            "on" if self.broker.tls else "off", self.broker.prefix)]
        auth = self.broker.describe()
        lines.append("broker user %s, password: %s%s" % (
            repr(auth["username"]) if auth["username"] else "(none)", auth["password"],
            ", client certificate %s" % auth["cert_file"] if auth["cert_file"] else ""))
        for bus in self.buses:
            where = bus.port if bus.kind in ("rtu", "bridge") else "%s:%s" % (bus.host, bus.port)
            n = sum(len(m.requests) for m in bus.meters)
            proto = " dlt645" if bus.protocol == "dlt645" else ""
            lines.append("bus %s (%s%s %s): %d meters, %d requests per cycle" % (
                bus.name, bus.kind, proto, where, len(bus.meters), n))
            for m in bus.meters:
                if bus.protocol == "dlt645":
                    reqs = ", ".join("DI %08X" % r.di for r in m.requests)
                else:
                    reqs = ", ".join("fc%d@%d+%d" % (r.fc, r.address, r.count)
                                     for r in m.requests)
                lines.append("  meter %s %s %s every %gs: %s" % (
                    m.id, m.where, m.profile.name, m.poll_s, reqs or "(bridge)"))
        return "\n".join(lines)


# --------------------------------------------------------------------------- validation


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_secret(t: SettingsTable, name: str, base: Path) -> str:
    path = t.get(name, str, "")
    if not path:
        return ""
    p = Path(path)
    if not p.is_absolute():
        p = base / p
    try:
        return p.read_text().strip()
    except OSError as e:
        raise t.error(name, "cannot read %s: %s" % (p, e.strerror)) from None


def _broker(root: SettingsTable, site: str, gateway: str, base: Path) -> BrokerSettings:
    t = root.table("broker")
    host = t.get("host", str, "127.0.0.1")
    tls_setting = t.get("tls", (bool, str), "auto")
    if isinstance(tls_setting, str) and tls_setting != "auto":
        raise t.error("tls", "%r must be true, false or \"auto\"" % tls_setting)
    tls = (not _is_loopback(host)) if tls_setting == "auto" else tls_setting
    port = t.get("port", int, 8883 if tls else 1883, lo=1, hi=65535)
    password = t.get("password", str, "")
    password_file = _read_secret(t, "password_file", base)
    if password and password_file:
        raise t.error("password_file", "set either password or password_file, not both")
    warnings = []
    if password:
        warnings.append("config warning: broker.password: the password is written in %s "
                        "itself, readable by whoever can read that file and copied with "
                        "it; put it in a file of its own (chmod 600) and set password_file "
                        "instead" % t.source)
    files = _cert_files(t, base)
    if bool(files["cert_file"]) != bool(files["key_file"]):
        raise t.error("key_file" if files["cert_file"] else "cert_file",
                      "a client certificate needs both cert_file and key_file")
    if files["cert_file"] and not tls:
        raise t.error("cert_file", "client certificates need tls = true")
    username = t.get("username", str, "")
    if (password or password_file) and not tls and not _is_loopback(host):
        warnings.append("config warning: broker.tls: tls = false with the remote broker %s: "
                        "the password of user %r crosses the network in clear text; set "
                        "tls = true (the default for a host that is not loopback) in %s"
                        % (host, username, t.source))
    prefix_template = t.get("prefix", str, DEFAULT_PREFIX)
    try:
        prefix = prefix_template.format(site=site, gateway=gateway)
    except (KeyError, IndexError, ValueError):
        raise t.error("prefix", "%r may only use {site} and {gateway}" % prefix_template) from None
    if any(c in prefix for c in "#+\0") or prefix.endswith("/") or not prefix:
        raise t.error("prefix", "%r is not a valid MQTT topic prefix" % prefix)
    protocol = t.get("protocol", str, "auto", choices=("auto", "5", "3.1.1"))
    encoding = t.get("telemetry_encoding", str, "json", choices=ENCODINGS)
    if encoding == "cbor" and protocol != "5":
        # Only an MQTT 5 PUBLISH carries a content type; without one a subscriber would
        # take the CBOR for JSON ("auto" may fall back to 3.1.1).
        raise t.error("telemetry_encoding", "\"cbor\" needs protocol = \"5\" (the content "
                      "type that tells subscribers it is CBOR is an MQTT 5 property), not "
                      "%r" % protocol)
    if encoding == "cbor" and not cbor_available():
        raise t.error("telemetry_encoding", "\"cbor\" needs the cbor2 package: pip install "
                      "'loadwatch[cbor]'")
    settings = BrokerSettings(
        host=host,
        port=port,
        client_id=t.get("client_id", str, "loadwatch-%s-%s" % (site, gateway)),
        username=username,
        password=password or password_file,
        tls=tls,
        insecure_skip_verify=t.get("insecure_skip_verify", bool, False),
        prefix=prefix,
        keepalive_s=t.get("keepalive_s", int, 30, lo=5, hi=3600),
        telemetry_qos=t.get("telemetry_qos", int, 0, choices=(0, 1)),
        score_qos=t.get("score_qos", int, 0, choices=(0, 1)),
        score_topic=t.get("score_topic", bool, False),
        protocol=protocol,
        telemetry_encoding=encoding,
        warnings=warnings,
        **files,
    )
    t.finish()
    return settings


def _cert_files(t: SettingsTable, base: Path) -> dict[str, str]:
    """``ca_file``, ``cert_file``, ``key_file`` of a table, each checked to exist and be
    readable, the CA also to hold a certificate (so ``check-config`` finds what the TLS
    handshake would otherwise report without the file's name)."""
    files = {}
    for name in ("ca_file", "cert_file", "key_file"):
        value = t.get(name, str, "")
        if value:
            p = Path(value) if Path(value).is_absolute() else base / value
            if not p.is_file():
                raise t.error(name, "%s does not exist or is not a file" % p)
            try:
                with open(p, "rb") as f:
                    f.read(1)
            except OSError as e:
                raise t.error(name, "cannot read %s: %s" % (p, e.strerror)) from None
            value = str(p)
        files[name] = value
    if files["ca_file"]:
        try:
            ssl.create_default_context(cafile=files["ca_file"])
        except ssl.SSLError as e:
            raise t.error("ca_file", "%s holds no certificate OpenSSL can use (%s): a PEM "
                          "file (-----BEGIN CERTIFICATE-----) is expected"
                          % (files["ca_file"], e.reason or e)) from None
    return files


def _web(root: SettingsTable, base: Path) -> WebSettings | None:
    """``[web]``: present and ``enabled`` (default true once the table exists)."""
    if not root.has("web"):
        root.used.add("web")
        return None
    t = root.table("web")
    enabled = t.get("enabled", bool, True)
    listen = t.get("listen", str, "127.0.0.1:8080")
    host, sep, port_s = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
        raise t.error("listen", "%r must be HOST:PORT (e.g. \"127.0.0.1:8080\")" % listen)
    username = t.get("username", str, "loadwatch")
    password = _read_secret(t, "password_file", base)
    if t.has("password_file") and not password:
        raise t.error("password_file", "the file is empty")
    if ":" in username:
        raise t.error("username", "%r may not contain ':' (HTTP basic auth)" % username)
    tls = t.get("tls", bool, False)
    files = _cert_files(t, base)
    if tls and not (files["cert_file"] and files["key_file"]):
        raise t.error("cert_file", "tls = true needs the server's cert_file and key_file")
    if (files["cert_file"] or files["key_file"] or files["ca_file"]) and not tls:
        raise t.error("tls", "certificate files are set but tls is false")
    settings = WebSettings(
        host=host, port=int(port_s), username=username, password=password, tls=tls,
        max_clients=t.get("max_clients", int, 4, lo=1, hi=64),
        header_timeout_s=t.get("header_timeout_s", float, 5.0, lo=0.1, hi=120.0),
        max_request_bytes=t.get("max_request_bytes", int, 8192, lo=512, hi=65536),
        **files)
    t.finish()
    if not enabled:
        return None
    if not _is_loopback(host) and not settings.auth:
        raise t.error("listen", "%r is reachable beyond this machine: set password_file "
                      "(HTTP basic auth) or listen on 127.0.0.1" % listen)
    return settings


_HA_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_/-]{0,63}$")


def _homeassistant(root: SettingsTable) -> HomeAssistantSettings | None:
    if not root.has("homeassistant"):
        root.used.add("homeassistant")
        return None
    t = root.table("homeassistant")
    enabled = t.get("enabled", bool, True)
    prefix = t.get("discovery_prefix", str, "homeassistant")
    if not _HA_PREFIX_RE.match(prefix) or prefix.endswith("/"):
        raise t.error("discovery_prefix", "%r is not a valid MQTT topic prefix" % prefix)
    t.finish()
    return HomeAssistantSettings(prefix) if enabled else None


def _bus(t: SettingsTable) -> BusPlan:
    name = t.get("name", str)
    if not ID_RE.match(name):
        raise t.error("name", "%r must be letters, digits, '_', '.', '-' (max 64)" % name)
    kind = t.get("kind", str, choices=BUS_KINDS)
    protocol = t.get("protocol", str, "modbus", choices=PROTOCOLS)
    if protocol == "dlt645" and kind not in DLT645_KINDS:
        raise t.error("kind", "%r cannot carry DL/T 645: use \"rtu\" (a serial port) or "
                      "\"rtu-over-tcp\" (a transparent TCP gateway)" % kind)
    dlt = protocol == "dlt645"
    bus = BusPlan(name=name, kind=kind, protocol=protocol)
    if kind in ("tcp", "rtu-over-tcp"):
        bus.host = t.get("host", str)
        bus.port = t.get("port", int, 502, lo=1, hi=65535)
        # One connection per host unless the config raises it: cheap meters and RS-485
        # gateways accept one, and drop or refuse a second (the meters then flap).
        bus.per_host_limit = t.get("per_host_limit", int, 1, lo=1, hi=64)
    else:
        bus.port = t.get("port", str)
        # DL/T 645-2007 lines default to its own 2400 baud 8E1; Modbus to 9600 8N1.
        bus.baud = t.get("baud", int, 2400 if dlt else 9600,
                         choices=BAUD_RATES)
        bus.parity = t.get("parity", str, "E" if dlt else "N", choices=PARITIES)
        bus.stopbits = t.get("stopbits", int, 1, choices=(1, 2))
        bus.bytesize = t.get("bytesize", int, 8, choices=(7, 8))
    bus.timeout_s = t.get("timeout_ms", int, 1000, lo=10, hi=60000) / 1000.0
    bus.retries = t.get("retries", int, 1, lo=0, hi=10)
    bus.backoff_max_s = t.get("backoff_max_s", float, 300.0, lo=1.0, hi=86400.0)
    t.finish()
    return bus


def _meter(t: SettingsTable, buses: dict[str, BusPlan], base: Path, classes: dict,
           default_poll_s: float) -> MeterPlan:
    mid = t.get("id", str)
    if not ID_RE.match(mid):
        raise t.error("id", "%r must be letters, digits, '_', '.', '-' (max 64): it becomes an "
                      "MQTT topic level" % mid)
    bus_name = t.get("bus", str)
    if bus_name not in buses:
        raise t.error("bus", "%r is not a bus defined in [[buses]] (known: %s)"
                      % (bus_name, ", ".join(sorted(buses)) or "none"))
    bus = buses[bus_name]
    address = ""
    if bus.protocol == "dlt645":
        if t.has("unit"):
            raise t.error("unit", "bus %s speaks DL/T 645: give the meter's 12-digit address "
                          "instead (address = \"000012345678\")" % bus_name)
        unit = 0
        address = meter_address(t)
    else:
        if t.has("address"):
            raise t.error("address", "bus %s speaks Modbus: give the meter's unit id "
                          "(1-247); address is for protocol = \"dlt645\" buses" % bus_name)
        unit = meter_unit(t)
    cls = meter_class(t, classes)
    poll_s = t.get("poll_s", float, default_poll_s, lo=0.1, hi=3600.0)
    profile = meter_profile(t, t.get("profile", str, "generic" if bus.kind == "bridge"
                                     else ...), base)
    if bus.kind != "bridge" and profile.protocol != bus.protocol:
        raise t.error("profile", "%s is a %s profile but bus %s speaks %s" % (
            profile.name, profile.protocol, bus_name, bus.protocol))
    overrides = quirk_overrides(t)
    quirks = profile.quirks.merged(overrides) if overrides else profile.quirks
    wanted = t.get("quantities", (list, str), list(DEFAULT_QUANTITIES))
    if wanted == "all":
        names = tuple(profile.quantities)
    elif isinstance(wanted, str):
        raise t.error("quantities", "%r must be a list of quantity names or \"all\"" % wanted)
    else:
        names = tuple(n for n in wanted if n in profile.quantities)
        unknown_required = [n for n in wanted if not isinstance(n, str)]
        if unknown_required:
            raise t.error("quantities", "entries must be strings")
        if wanted != list(DEFAULT_QUANTITIES):
            missing = [n for n in wanted if n not in profile.quantities]
            if missing:
                raise t.error("quantities", "%s not in profile %s (it has: %s)" % (
                    ", ".join(missing), profile.name, ", ".join(profile.quantities)))
    if "p_w" not in names:
        raise t.error("profile", "profile %s has no p_w (total active power), which the "
                      "detector needs" % profile.name)
    t.finish()
    requests: list[ReadRequest] | list[ItemRequest] = []
    if bus.protocol == "dlt645":
        requests = plan_items(profile, names)
    elif bus.kind != "bridge":
        fields = [profile.quantities[n] for n in names]
        requests = plan_reads(fields, quirks.max_gap, quirks.max_registers)
    return MeterPlan(id=mid, bus=bus_name, unit=unit, profile=profile,
                     meter_class=cls, poll_s=poll_s, quirks=quirks,
                     requests=requests, quantities=names, address=address)


def site_and_gateway(root: SettingsTable) -> tuple[str, str]:
    """The required ``site`` and ``gateway`` of an agent or firmware config: both become
    MQTT topic levels, so both are checked the same way wherever they are read."""
    site = root.get("site", str)
    gateway = root.get("gateway", str)
    for name, value in (("site", site), ("gateway", gateway)):
        if not ID_RE.match(value):
            raise root.error(name, "%r must be letters, digits, '_', '.', '-' (max 64): it "
                             "becomes an MQTT topic level" % value)
    return site, gateway


def parse_toml(text: str, source: str) -> dict:
    """The tables of a config file's text; bad TOML is one error naming ``source``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("", "not valid TOML: %s" % e, source) from None


def read_config(path: Path) -> str:
    """The text of a config file (agent, firmware or replay): a missing, unreadable or
    non-UTF-8 file is one error naming it, never a traceback."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", "file not found", str(path)) from None
    except OSError as e:
        raise ConfigError("", "cannot read: %s" % (e.strerror or e), str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("", "not UTF-8 text", str(path)) from None


def meter_unit(t: SettingsTable) -> int:
    """A Modbus meter's unit id (1-247; 1 when not given)."""
    unit = t.get("unit", int, 1)
    if not 1 <= unit <= 247:
        raise t.error("unit", "%r is not a Modbus unit id (1-247)" % unit)
    return unit


def meter_address(t: SettingsTable) -> str:
    """A DL/T 645 meter's 12-digit address, checked by the codec's own rule."""
    address = t.get("address", str)
    try:
        check_address(address)
    except ValueError as e:
        raise t.error("address", str(e)) from None
    return address


def meter_class(t: SettingsTable, classes: dict) -> str:
    """A meter's class: ``residential`` (built in) or one defined in ``[classes]``."""
    name = t.get("class", str, "residential")
    if name not in classes and name != "residential":
        raise t.error("class", "%r is not defined in [classes] (known: residential%s)"
                      % (name, "".join(", " + c for c in sorted(classes))))
    return name


def meter_profile(t: SettingsTable, ref: str, base: Path) -> Profile:
    """The profile a meter names (built in, or a file relative to the config's folder)."""
    try:
        return load_profile(ref, base)
    except ProfileError as e:
        raise t.error("profile", str(e)) from None
    except (OSError, ValueError) as e:
        raise t.error("profile", "%r: %s" % (ref, e)) from None


def load_text(text: str, source: str, base_dir: Path | None = None) -> Plan:
    """Build a Plan from TOML text; ``source`` names it in errors."""
    data = parse_toml(text, source)
    base = base_dir if base_dir is not None else Path.cwd()
    root = SettingsTable(data, "", source)
    site, gateway = site_and_gateway(root)
    state_dir = root.get("state_dir", str, "/var/lib/loadwatch")
    if not Path(state_dir).is_absolute():
        state_dir = str((base / state_dir).resolve())
    default_poll_s = root.get("poll_s", float, 10.0, lo=0.1, hi=3600.0)
    telemetry_every_s = root.get("telemetry_every_s", float, 900.0, lo=1.0, hi=86400.0)
    checkpoint_every_s = root.get("checkpoint_every_s", float, 300.0, lo=1.0, hi=86400.0)
    broker = _broker(root, site, gateway, base)
    web = _web(root, base)
    homeassistant = _homeassistant(root)
    if homeassistant is not None and broker.telemetry_encoding == "cbor":
        # Home Assistant's MQTT sensors read the telemetry topic as JSON (value_json).
        raise root.table("broker").error(
            "telemetry_encoding", "\"cbor\" cannot be used with [homeassistant]: Home "
            "Assistant reads the telemetry topic as JSON")

    ot = root.table("outbox")
    outbox_path = ot.get("path", str, os.path.join(state_dir, "outbox.sqlite"))
    if not Path(outbox_path).is_absolute():
        outbox_path = str((base / outbox_path).resolve())
    outbox = OutboxSettings(outbox_path, int(ot.get("max_mb", float, 64.0, lo=0.1, hi=10240.0)
                                              * 1024 * 1024))
    ot.finish()

    detector, policy, classes = scoring_settings(root)
    tz_s = tz_offset_s(root, detector, classes)

    buses = _buses(root, data, source)
    _meters(root, data, source, buses, base, classes, default_poll_s)
    root.finish()
    return Plan(source=source, site=site, gateway=gateway, tz_offset_s=tz_s,
                state_dir=state_dir, broker=broker, outbox=outbox, detector=detector,
                policy=policy, classes=classes,
                buses=[b for b in buses.values() if b.meters],
                telemetry_every_s=telemetry_every_s, checkpoint_every_s=checkpoint_every_s,
                web=web, homeassistant=homeassistant)


def _buses(root: SettingsTable, data: dict, source: str) -> dict[str, BusPlan]:
    """Every ``[[buses]]`` by name; a bus named twice, or two protocols on one line, is
    an error naming the key."""
    root.used.add("buses")
    raw_buses = data.get("buses", [])
    if not isinstance(raw_buses, list):
        raise root.error("buses", "must be an array of tables ([[buses]])")
    buses: dict[str, BusPlan] = {}
    lines: dict[tuple, BusPlan] = {}
    for i, raw in enumerate(raw_buses):
        bus = _bus(SettingsTable(raw, "buses[%d]" % i, source))
        if bus.name in buses:
            raise ConfigError("buses[%d].name" % i, "%r is defined twice" % bus.name, source)
        buses[bus.name] = bus
        # One gateway may front a Modbus line and a DL/T 645 line (one TCP port each),
        # but one line cannot speak both: the meters would answer each other's noise.
        line = (bus.host, bus.port) if bus.kind in ("tcp", "rtu-over-tcp") else (bus.port,)
        other = lines.get(line)
        if other is not None and other.protocol != bus.protocol and bus.kind != "bridge":
            raise ConfigError("buses[%d].protocol" % i, "bus %s speaks %s on %s, the same "
                              "line as bus %s (%s); Modbus and DL/T 645 meters may share a "
                              "gateway but not a bus" % (bus.name, bus.protocol,
                                                         ":".join(map(str, line)),
                                                         other.name, other.protocol), source)
        lines.setdefault(line, bus)

    return buses


def _meters(root: SettingsTable, data: dict, source: str, buses: dict[str, BusPlan],
            base: Path, classes: dict, default_poll_s: float) -> None:
    """Every ``[[meters]]``, planned and added to its bus; an id used twice, or a unit or
    address used twice on one bus, is an error naming the key."""
    root.used.add("meters")
    raw_meters = data.get("meters", [])
    if not isinstance(raw_meters, list):
        raise root.error("meters", "must be an array of tables ([[meters]])")
    if not raw_meters:
        raise root.error("meters", "no meters configured: add at least one [[meters]]")
    seen_ids: set[str] = set()
    seen_units: set[tuple[str, int | str]] = set()
    for i, raw in enumerate(raw_meters):
        t = SettingsTable(raw, "meters[%d]" % i, source)
        m = _meter(t, buses, base, classes, default_poll_s)
        if m.id in seen_ids:
            raise ConfigError("meters[%d].id" % i, "%r is used by another meter" % m.id, source)
        slot = (m.bus, m.address or m.unit)
        if slot in seen_units and buses[m.bus].kind != "bridge":
            key = "address" if m.address else "unit"
            raise ConfigError("meters[%d].%s" % (i, key), "%s is already used on bus %s"
                              % (m.where, m.bus), source)
        seen_ids.add(m.id)
        seen_units.add(slot)
        buses[m.bus].meters.append(m)


def load(path: str | os.PathLike) -> Plan:
    """Read and validate a config file; relative paths in it are relative to its folder."""
    p = Path(path)
    return load_text(read_config(p), str(p.resolve()), p.resolve().parent)


def load_detector_settings(path: str | os.PathLike) -> tuple[dict, dict]:
    """Only the [detector] and [policy] tables of a config (for ``loadwatch replay``).

    A replay config needs no buses or meters, so this reads the two tables alone, with
    the same validation as a full config.
    """
    p = Path(path)
    root = SettingsTable(parse_toml(read_config(p), str(p)), "", str(p))
    detector = settings_table(root, "detector", default_settings())
    policy = settings_table(root, "policy", default_policy_settings())
    detector["tz_offset_s"] = tz_offset_s(root, detector, {})
    check_settings("detector", detector, policy, str(p))
    return detector, policy
