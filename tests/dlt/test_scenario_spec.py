"""DL/T 645 lines in hil scenarios: addresses count up, the agent config says protocol and
address, bad keys are named with the file."""

from __future__ import annotations

import pytest

from hil.scenario import ScenarioError, load, parse_text

BASE = """
[scenario]
name = "t"
[timeline]
days = 1.0
[[buses]]
name = "b"
kind = "rtu"
protocol = "dlt645"
gateway = true
[[meters]]
id = "f-{address}"
count = 3
bus = "b"
address = "000012340998"
profile = "%s"
"""


def test_addresses_count_up_and_the_line_defaults_to_2400_8e1() -> None:
    sc = parse_text(BASE % "dlt645_single", "s.toml")
    assert [m.address for m in sc.meters] == ["000012340998", "000012340999",
                                              "000012341000"]
    assert sc.meters[2].id == "f-000012341000"
    bus = sc.buses[0]
    assert (bus.baud, bus.parity, bus.gateway) == (2400, "E", True)
    assert bus.describe() == "dlt645 2400 8E1 via a transparent TCP gateway"


@pytest.mark.parametrize("text,key,fragment", [
    (BASE % "sdm120", "meters[0].profile", "sdm120 is not a DL/T 645 profile"),
    ((BASE % "dlt645_single").replace('"000012340998"', '"12340998"'), "meters[0].address",
     "not a 12-digit DL/T 645 address"),
    ((BASE % "dlt645_single").replace('kind = "rtu"', 'kind = "tcp"'), "buses[0].kind",
     "a DL/T 645 line is kind"),
    ((BASE % "dlt645_single").replace('protocol = "dlt645"\n', ''), "buses[0].gateway",
     "transparent gateways are simulated for DL/T 645 lines"),
])
def test_bad_dlt645_scenario_keys(text: str, key: str, fragment: str) -> None:
    with pytest.raises(ScenarioError) as e:
        parse_text(text, "s.toml")
    assert str(e.value).startswith("scenario error: %s: " % key), str(e.value)
    assert fragment in str(e.value) and str(e.value).endswith("in s.toml")


def test_the_shipped_building_is_what_the_issue_describes() -> None:
    sc = load("china-building")
    (bus,) = sc.buses
    assert (bus.protocol, bus.baud, bus.parity, bus.gateway) == ("dlt645", 2400, "E", True)
    assert len(sc.meters) == 24 and {m.profile for m in sc.meters} == {"dlt645_single"}
    miners = [m for m in sc.meters if m.miner is not None]
    assert len(miners) == 1 and miners[0].miner.kind == "gpu"
