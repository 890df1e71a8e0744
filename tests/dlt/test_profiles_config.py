"""DL/T 645 profiles and config: shipped maps valid and cited, block planning, bad maps
and bad addresses refused with the key and the file named."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, load_text
from agent.dlt645.plan import plan_items
from agent.profiles import (
    DiField,
    ProfileError,
    available_profiles,
    load_profile,
    parse_profile,
)

DLT = available_profiles("dlt645")


def test_the_required_dlt645_profiles_are_shipped() -> None:
    assert {"dlt645_single", "dlt645_three", "ddsu666_645", "dtsu666_645"} <= set(DLT)


@pytest.mark.parametrize("name", DLT)
def test_shipped_dlt645_profile_is_valid_and_cited(name: str) -> None:
    p = load_profile(name)
    assert "DL/T 645-2007" in p.source and len(p.source) > 100
    assert "p_w" in p.quantities
    for f in p.quantities.values():
        assert isinstance(f, DiField) and 1 <= f.size <= 4
    # power is kW on the wire, XX.XXXX, signed (appendix A)
    p_w = p.quantities["p_w"]
    assert (p_w.di, p_w.format, p_w.signed, p_w.scale) == (0x02030000, "XX.XXXX", True, 1000.0)
    assert p.quantities["e_import_kwh"].di == 0x00010000


def test_blocks_replace_their_members_only_when_two_are_wanted() -> None:
    p = load_profile("dlt645_three")
    reqs = plan_items(p, ("p_w", "pf", "f_hz", "e_import_kwh"))
    assert [r.di for r in reqs] == [0x02030000, 0x02060000, 0x02800002, 0x00010000]
    reqs = plan_items(p, ("p_w", "p_w_l1", "p_w_l2", "f_hz"))
    assert [r.di for r in reqs] == [0x0203FF00, 0x02800002]
    assert reqs[0].names == ("p_w", "p_w_l1", "p_w_l2", "p_w_l3")
    assert reqs[0].reply_bytes == 4 + 4 * 3


BASE = 'name = "t"\nprotocol = "dlt645"\nsource = "test"\n[quantities]\n'


@pytest.mark.parametrize("body,fragment", [
    ('p_w = { di = "0203", format = "XX.XXXX" }', "8 hex digits"),
    ('p_w = { di = "02030000", format = "XX.XXX" }', "whole bytes"),
    ('p_w = { di = "02030000" }', "format is required"),
    ('p_w = { di = "02030000", format = "XX.XXXX", address = 3 }', "unknown key 'address'"),
    ('p_w = { di = "02030000", format = "XX.XXXX" }\npf = { di = "02030000", format = "X.XXX" }',
     "also p_w"),
    ('p_w = { di = "02030000", format = "XX.XXXX" }\n[blocks]\n"0203FF00" = ["p_w", "pf"]',
     "'pf' is not a quantity"),
])
def test_bad_dlt645_maps_name_file_and_quantity(body: str, fragment: str) -> None:
    with pytest.raises(ProfileError) as e:
        parse_profile(BASE + body, "my.toml")
    assert "profile my.toml" in str(e.value) and fragment in str(e.value), str(e.value)


def config(bus: str, meter: str, more_buses: str = "") -> str:
    return ('site = "s"\ngateway = "g"\n[broker]\nhost = "127.0.0.1"\n'
            '[[buses]]\nname = "b"\n%s\n%s[[meters]]\nid = "m1"\nbus = "b"\n%s\n'
            % (bus, more_buses, meter))


LINE = 'protocol = "dlt645"\nkind = "rtu"\nport = "/dev/ttyUSB0"'


def test_a_dlt645_bus_defaults_to_2400_8e1_and_plans_dis() -> None:
    plan = load_text(config(LINE, 'address = "000012345678"\nprofile = "dlt645_single"'),
                     "/etc/lw.toml")
    bus = plan.buses[0]
    assert (bus.protocol, bus.baud, bus.parity) == ("dlt645", 2400, "E")
    m = plan.meters[0]
    assert m.address == "000012345678" and len(m.requests) == 7
    assert "DI 02030000" in plan.describe()


@pytest.mark.parametrize("meter,key,fragment", [
    ('address = "12345678"\nprofile = "dlt645_single"', "meters[0].address",
     "not a 12-digit DL/T 645 address"),
    ('address = 12345678\nprofile = "dlt645_single"', "meters[0].address", "must be a string"),
    ('unit = 3\nprofile = "dlt645_single"', "meters[0].unit", "12-digit address"),
    ('address = "000012345678"\nprofile = "sdm120"', "meters[0].profile",
     "sdm120 is a modbus profile but bus b speaks dlt645"),
])
def test_bad_dlt645_meters_name_the_key_and_the_file(meter: str, key: str,
                                                     fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_text(config(LINE, meter), "/etc/lw.toml")
    msg = str(e.value)
    assert msg.startswith("config error: %s: " % key) and fragment in msg, msg
    assert msg.endswith("in /etc/lw.toml"), msg


def test_modbus_meter_with_an_address_and_tcp_kind_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"meters\[0\]\.address: bus b speaks Modbus"):
        load_text(config('kind = "rtu"\nport = "/dev/ttyUSB0"',
                         'address = "000012345678"\nprofile = "sdm120"'), "x.toml")
    with pytest.raises(ConfigError, match=r"buses\[0\]\.kind: 'tcp' cannot carry DL/T 645"):
        load_text(config('protocol = "dlt645"\nkind = "tcp"\nhost = "10.0.0.1"',
                         'address = "000012345678"\nprofile = "dlt645_single"'), "x.toml")


def test_one_gateway_two_lines_but_not_one_line_two_protocols() -> None:
    gw = 'protocol = "dlt645"\nkind = "rtu-over-tcp"\nhost = "10.0.0.9"\nport = 8899'
    ok = ('[[buses]]\nname = "mb"\nkind = "rtu-over-tcp"\nhost = "10.0.0.9"\nport = 8900\n')
    plan = load_text(config(gw, 'address = "000012345678"\nprofile = "dlt645_single"',
                            ok) + '[[meters]]\nid = "m2"\nbus = "mb"\nunit = 1\n'
                     'profile = "sdm120"\n', "x.toml")
    assert [b.protocol for b in plan.buses] == ["dlt645", "modbus"]
    clash = ok.replace("8900", "8899")
    with pytest.raises(ConfigError) as e:
        load_text(config(gw, 'address = "000012345678"\nprofile = "dlt645_single"', clash)
                  + '[[meters]]\nid = "m2"\nbus = "mb"\nunit = 1\nprofile = "sdm120"\n',
                  "x.toml")
    assert "buses[1].protocol" in str(e.value) and "may share a gateway but not a bus" in str(
        e.value)


def test_duplicate_address_on_one_bus() -> None:
    text = config(LINE, 'address = "000012345678"\nprofile = "dlt645_single"')
    text += '[[meters]]\nid = "m2"\nbus = "b"\naddress = "000012345678"\n' \
            'profile = "dlt645_single"\n'
    with pytest.raises(ConfigError, match=r"meters\[1\]\.address: address 000012345678 is "
                       "already used on bus b"):
        load_text(text, "x.toml")


def test_the_example_configs_dlt645_block_is_valid_when_uncommented() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "deploy" / "loadwatch.example.toml") \
        .read_text()
    block = text[text.index("# [[buses]]\n# name = \"building-7\""):]
    uncommented = "\n".join(line[2:] if line.startswith("# ") else
                            ("" if line == "#" else line) for line in block.splitlines())
    plan = load_text(text + "\n" + uncommented, "example.toml")
    bus = next(b for b in plan.buses if b.name == "building-7")
    assert (bus.protocol, bus.kind, bus.port) == ("dlt645", "rtu-over-tcp", 8899)
    assert [m.address for m in bus.meters] == ["000012340917"]
