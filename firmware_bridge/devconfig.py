"""Firmware config (TOML) -> the compact JSON the device app loads at boot.

The MCU cannot parse TOML or profiles, and should not plan reads on every boot, so the
build does it once, like the agent's ``config.load()``: profiles are resolved, quirks
merged into each field, reads coalesced with the agent's own ``plan_reads``, detector
and policy settings merged (defaults < [detector] < [classes.X.detector]) and checked
against the shared core's defaults. Errors name the key and the file, the agent's way.

A firmware config looks like the agent's, with device sections instead of buses::

    site = "north"
    gateway = "mcu-07"
    uplink = "serial"            # or "mqtt"
    [rs485]  protocol (modbus|dlt645), uart, baud, parity, stopbits, tx, rx, de,
             timeout_ms, retries, backoff_max_s        (dlt645: default 2400 8E1)
    [link]   uart, baud, tx, rx, ack_ms            (uplink = "serial")
    [mqtt]   host, port, client_id, username, password, prefix, keepalive_s, ...
    [wifi]   ssid, password                        (uplink = "mqtt" on Wi-Fi boards)
    [[meters]] id, unit (Modbus) or address (DL/T 645), profile, poll_s, class, quantities
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.config import (
    DEFAULT_PREFIX,
    ID_RE,
    meter_address,
    meter_class,
    meter_profile,
    meter_unit,
    parse_toml,
    read_config,
    site_and_gateway,
)
from agent.dlt645.plan import plan_items
from agent.modbus.blocks import plan_reads
from agent.settings import (
    UART_BAUD_RATES,
    ConfigError,
    SettingsTable,
    quirk_overrides,
    scoring_settings,
    tz_offset_s,
)

# What the device reads by default: the detector needs p_w (and pf where the meter has
# it); telemetry reports energy. Fewer registers = shorter bus time per meter.
DEVICE_QUANTITIES = ("p_w", "pf", "e_import_kwh")
BOARDS = ("esp32", "rp2", "unix")

DEFAULT_TOML = """\
# Default firmware config: one generic meter, unit 1, serial uplink to a Linux host.
site = "site"
gateway = "mcu-1"
uplink = "serial"

[rs485]
uart = 1
baud = 9600
tx = 17
rx = 16
de = 4

[link]
uart = 0
baud = 115200

[[meters]]
id = "meter-1"
unit = 1
profile = "generic"
"""


def _uart(t: SettingsTable, baud_default: int) -> dict[str, Any]:
    out = {
        "uart": t.get("uart", int, 1, lo=0, hi=7),
        "baud": t.get("baud", int, baud_default, choices=UART_BAUD_RATES),
        "tx": t.get("tx", int, None) if t.has("tx") else None,
        "rx": t.get("rx", int, None) if t.has("rx") else None,
    }
    if (out["tx"] is None) != (out["rx"] is None):
        raise t.error("rx" if out["tx"] is not None else "tx", "set both tx and rx pins, "
                      "or neither (board default pins)")
    port = t.get("port", str, "")
    if port:
        out["port"] = port  # unix port only: a serial device path
    return out


def load_text(text: str, source: str, base: Path | None = None) -> dict:
    """Validate a firmware config and return the device JSON (a dict)."""
    data = parse_toml(text, source)
    base = base if base is not None else Path.cwd()
    root = SettingsTable(data, "", source)
    site, gateway = site_and_gateway(root)
    uplink = root.get("uplink", str, "serial", choices=("serial", "mqtt"))
    default_poll_s = root.get("poll_s", float, 10.0, lo=0.1, hi=3600.0)
    out: dict[str, Any] = {
        "site": site, "gateway": gateway, "uplink": uplink,
        "telemetry_every_s": root.get("telemetry_every_s", float, 900.0, lo=1.0, hi=86400.0),
        "state_every_s": root.get("state_every_s", float, 900.0, lo=10.0, hi=86400.0),
        "wdt_ms": root.get("wdt_ms", int, 8000, lo=0, hi=60000),
        "sync_wait_ms": root.get("sync_wait_ms", int, 10000, lo=0, hi=600000),
        "state_dir": root.get("state_dir", str, "/"),
        "queue_max": root.get("queue_max", int, 64, lo=4, hi=4096),
        "clock": {"mode": "real"},
    }

    t = root.table("rs485")
    protocol = t.get("protocol", str, "modbus", choices=("modbus", "dlt645"))
    dlt = protocol == "dlt645"
    bus = _uart(t, 2400 if dlt else 9600)
    bus.update({
        "protocol": protocol,
        "parity": t.get("parity", str, "E" if dlt else "N", choices=("N", "E", "O")),
        "stopbits": t.get("stopbits", int, 1, choices=(1, 2)),
        "de": t.get("de", int, None) if t.has("de") else None,
        "timeout_ms": t.get("timeout_ms", int, 1000 if dlt else 500, lo=10, hi=60000),
        "retries": t.get("retries", int, 1, lo=0, hi=10),
        "backoff_max_s": t.get("backoff_max_s", float, 300.0, lo=1.0, hi=86400.0),
    })
    t.finish()
    out["rs485"] = bus

    # Both uplink sections are validated when present (a config can carry both and switch
    # with `uplink`); only the active one goes to the device.
    t = root.table("link")
    if uplink == "serial" or t.data:
        link = _uart(t, 115200)
        link["uart"] = t.get("uart", int, 0, lo=0, hi=7)
        link["ack_ms"] = t.get("ack_ms", int, 200, lo=5, hi=10000)
        if uplink == "serial":
            out["link"] = link
    t.finish()

    t = root.table("mqtt")
    if uplink == "mqtt" or t.data:
        prefix = t.get("prefix", str, DEFAULT_PREFIX)
        try:
            prefix = prefix.format(site=site, gateway=gateway)
        except (KeyError, IndexError, ValueError):
            raise t.error("prefix", "%r may only use {site} and {gateway}" % prefix) from None
        mqtt = {
            "host": t.get("host", str),
            "port": t.get("port", int, 1883, lo=1, hi=65535),
            "client_id": t.get("client_id", str, "loadwatch-%s-%s" % (site, gateway)),
            "user": t.get("username", str, ""),
            "password": t.get("password", str, ""),
            "prefix": prefix,
            "keepalive": t.get("keepalive_s", int, 30, lo=5, hi=3600),
            "telemetry_qos": t.get("telemetry_qos", int, 0, choices=(0, 1)),
            "score_qos": t.get("score_qos", int, 0, choices=(0, 1)),
            "score_topic": t.get("score_topic", bool, False),
            "retry_max_s": t.get("retry_max_s", float, 60.0, lo=1.0, hi=3600.0),
        }
        if uplink == "mqtt":
            out["mqtt"] = mqtt
    t.finish()
    t = root.table("wifi")
    if t.data:
        out["wifi"] = {"ssid": t.get("ssid", str), "password": t.get("password", str, "")}
    t.finish()

    detector, policy, classes = scoring_settings(root)
    tz_s = tz_offset_s(root, detector, classes)

    root.used.add("meters")
    raw_meters = data.get("meters", [])
    if not isinstance(raw_meters, list) or not raw_meters:
        raise root.error("meters", "no meters configured: add at least one [[meters]]")
    meters = []
    seen: set[str] = set()
    units: set[int | str] = set()
    for i, raw in enumerate(raw_meters):
        mt = SettingsTable(raw, "meters[%d]" % i, source)
        m = _meter(mt, base, classes, detector, policy, default_poll_s, tz_s, protocol)
        if m["id"] in seen:
            raise ConfigError("meters[%d].id" % i, "%r is used by another meter" % m["id"],
                              source)
        slot = m.get("address") or m["unit"]
        if slot in units:
            key = "address" if m.get("address") else "unit"
            raise ConfigError("meters[%d].%s" % (i, key), "%s %s is already used"
                              % (key, slot), source)
        seen.add(m["id"])
        units.add(slot)
        meters.append(m)
    out["meters"] = meters
    root.finish()
    return out


def _meter(t: SettingsTable, base: Path, classes: dict, detector: dict, policy: dict,
           default_poll_s: float, tz_s: float, protocol: str = "modbus") -> dict:
    mid = t.get("id", str)
    if not ID_RE.match(mid):
        raise t.error("id", "%r must be letters, digits, '_', '.', '-' (max 64)" % mid)
    address = ""
    if protocol == "dlt645":
        if t.has("unit"):
            raise t.error("unit", "[rs485] speaks DL/T 645: give the meter's 12-digit "
                          "address instead")
        unit = 0
        address = meter_address(t)
    else:
        unit = meter_unit(t)
    cls = meter_class(t, classes)
    poll_s = t.get("poll_s", float, default_poll_s, lo=0.1, hi=3600.0)
    profile = meter_profile(t, t.get("profile", str), base)
    if profile.protocol != protocol:
        raise t.error("profile", "%s is a %s profile but [rs485] speaks %s"
                      % (profile.name, profile.protocol, protocol))
    overrides = quirk_overrides(t)
    quirks = profile.quirks.merged(overrides) if overrides else profile.quirks
    wanted = t.get("quantities", list, list(DEVICE_QUANTITIES))
    missing = [n for n in wanted if n not in profile.quantities]
    if "quantities" in t.data and missing:
        raise t.error("quantities", "%s not in profile %s" % (", ".join(map(str, missing)),
                                                             profile.name))
    names = [n for n in wanted if n in profile.quantities]
    if "p_w" not in names:
        raise t.error("profile", "profile %s has no p_w, which the detector needs"
                      % profile.name)
    t.finish()
    dset = dict(detector)
    dset.update(classes.get(cls, {}).get("detector", {}))
    dset["tz_offset_s"] = tz_s
    pset = dict(policy)
    pset.update(classes.get(cls, {}).get("policy", {}))
    # frozen_s: the profile's or the meter's quirk, as on the agent (the device's check
    # used the 900 s default whatever the config said).
    out = {"id": mid, "unit": unit, "poll_s": poll_s, "profile": profile.name,
           "frozen_s": float(quirks.frozen_s), "detector": dset, "policy": pset}
    tq = classes.get(cls, {}).get("telemetry_quantities")
    if tq is not None:
        out["telemetry_quantities"] = list(tq)
    if protocol == "dlt645":
        # reads [0x11, DI, bytes]; fields [name, 0x11, DI, "bcd<n>"|"bcds<n>", offset in
        # the DI's reply, scale per BCD unit] (firmware_bridge/device/meter.py)
        items = plan_items(profile, names)
        out["address"] = address
        out["reads"] = [[0x11, r.di, r.reply_bytes - 4] for r in items]
        fields = []
        for r in items:
            off = 0
            for f in r.fields:
                if f.name in names:
                    fields.append([f.name, 0x11, r.di, "bcd%s%d" % ("s" if f.signed else "",
                                                                    f.size),
                                   off, f.scale / 10 ** f.decimals])
                off += f.size
        out["fields"] = fields
        return out
    fields = [profile.quantities[n] for n in names]
    reads = plan_reads(fields, quirks.max_gap, quirks.max_registers)
    order = quirks.word_order
    out["reads"] = [[r.fc, r.address, r.count] for r in reads]
    out["fields"] = [[f.name, f.fc, f.address, f.type, order or f.word_order, f.scale]
                     for f in fields]
    return out


def load(path: str | Path | None) -> dict:
    """The device JSON for a firmware config file (the built-in default when None)."""
    if path is None:
        return load_text(DEFAULT_TOML, "(built-in default firmware config)")
    p = Path(path)
    return load_text(read_config(p), str(p.resolve()), p.resolve().parent)
