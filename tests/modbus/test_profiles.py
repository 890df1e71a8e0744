"""The profile library: every shipped map is valid and cited; bad maps are refused with
the file and the quantity named; a user's own file works through the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load_text
from agent.profiles import (
    KNOWN_QUANTITIES,
    ProfileError,
    Quirks,
    available_profiles,
    load_profile,
    parse_profile,
)

# The DL/T 645 profiles have their own checks (tests/dlt645/test_profiles.py).
SHIPPED = available_profiles("modbus")


def test_the_required_meters_are_shipped() -> None:
    for name in ("sdm120", "sdm630", "dtsu666", "dtsu666_ir", "ddsu666", "adl400", "em24",
                 "generic"):
        assert name in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_is_valid_and_cited(name: str) -> None:
    p = load_profile(name)
    assert p.name == name
    assert "p_w" in p.quantities
    assert len(p.source) > 40, "every map cites its public source"
    assert set(p.quantities) <= KNOWN_QUANTITIES
    assert 1 <= p.quirks.max_registers <= 125
    if name != "generic":
        assert p.identify["quantity"] in p.quantities
    for f in p.quantities.values():
        assert f.fc in (3, 4) and f.size in (1, 2)
        assert f.word_order in ("ABCD", "CDAB")


BASE = """
name = "t"
source = "test"
[defaults]
fc = 4
type = "float32"
[quantities]
"""


@pytest.mark.parametrize("body,quantity,fragment", [
    ("p_w = { address = 0 }\nq_var = { address = 1 }", "q_var", "overlap p_w"),
    ("p_w = { address = 0, type = \"float64\" }", "p_w", "type 'float64'"),
    ("p_w = { address = 0 }\npower = { address = 4 }", "power", "unknown quantity name"),
    ("p_w = { address = 0, fc = 5 }", "p_w", "fc 5 must be 3"),
    ("p_w = { address = 0, word_order = \"BADC\" }", "p_w", "word_order 'BADC'"),
    ("p_w = { address = 0, unit = \"kW\" }", "p_w", "always in 'W'"),
    ("p_w = { address = 70000 }", "p_w", "outside 0..65535"),
    ("p_w = { address = 0, scale = 0 }", "p_w", "non-zero"),
    ("p_w = { adress = 0 }", "p_w", "unknown key 'adress'"),
])
def test_bad_maps_name_file_and_quantity(body: str, quantity: str, fragment: str) -> None:
    with pytest.raises(ProfileError) as e:
        parse_profile(BASE + body, "/etc/loadwatch/mine.toml")
    msg = str(e.value)
    assert msg.startswith("profile /etc/loadwatch/mine.toml: %s: " % quantity), msg
    assert fragment in msg


def test_bad_quirks_and_unknown_names() -> None:
    with pytest.raises(ProfileError, match=r"quirks\.max_registers 200"):
        parse_profile(BASE + "p_w = { address = 0 }\n[quirks]\nmax_registers = 200",
                      "x.toml")
    with pytest.raises(ProfileError, match=r"quirks\.word_order 'DCBA'"):
        parse_profile(BASE + "p_w = { address = 0 }\n[quirks]\nword_order = \"DCBA\"",
                      "x.toml")
    with pytest.raises(ProfileError, match="no such shipped profile"):
        load_profile("sdm999")
    with pytest.raises(ProfileError, match="file not found"):
        load_profile("nope/meter.toml")


def test_quirks_merge_is_a_copy() -> None:
    q = Quirks(max_registers=80, max_gap=10)
    m = q.merged({"pause_ms": 20, "word_order": "CDAB"})
    assert (m.max_registers, m.pause_ms, m.word_order) == (80, 20, "CDAB")
    assert q.pause_ms == 0 and q.word_order is None
    with pytest.raises(ValueError):
        q.merged({"colour": 1})


def test_users_own_profile_through_the_config(tmp_path: Path) -> None:
    (tmp_path / "meters").mkdir()
    (tmp_path / "meters" / "mine.toml").write_text(
        (Path(load_profile("generic").path)).read_text().replace('name = "generic"',
                                                                  'name = "mine"'))
    cfg = ('site = "s"\ngateway = "g"\n[broker]\nhost = "127.0.0.1"\n[[buses]]\nname = "b"\n'
           'kind = "tcp"\nhost = "127.0.0.1"\n[[meters]]\nid = "m"\nbus = "b"\n'
           'profile = "meters/mine.toml"\n[meters.quirks]\nmax_registers = 4\n')
    plan = load_text(cfg, str(tmp_path / "c.toml"), tmp_path)
    m = plan.meters[0]
    assert m.profile.name == "mine"
    assert all(r.count <= 4 for r in m.requests)
    assert {f for r in m.requests for f in r.fields} == set(m.quantities)
