"""Config -> Plan: golden error cases (tests/golden/config/<case>/) and the happy paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load, load_text

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "config"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES)
def test_golden_config_error(case: str, tmp_path: Path) -> None:
    src = GOLDEN / case / "config.toml"
    cfg = tmp_path / "loadwatch.toml"
    cfg.write_text(src.read_text())
    expected = (GOLDEN / case / "error.txt").read_text().strip()
    expected = expected.replace("{file}", str(cfg.resolve())).replace("{dir}", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        load(cfg)
    message = str(err.value)
    if expected.endswith("..."):
        assert message.startswith(expected[:-3]), message
    else:
        assert message == expected
    # Every error names the file.
    assert str(cfg.resolve()) in message


def test_example_config_is_accepted_and_planned() -> None:
    plan = load(ROOT / "deploy" / "loadwatch.example.toml")
    assert plan.site == "north-depot" and plan.gateway == "gw-0001"
    assert plan.broker.prefix == "loadwatch/v1/north-depot/gw-0001"
    assert plan.broker.tls is False  # loopback host: auto means off
    assert [b.name for b in plan.buses] == ["rs485-1", "plant-lan"]
    rtu = plan.buses[0]
    assert rtu.kind == "rtu" and rtu.port == "/dev/ttyUSB0" and rtu.timeout_s == 0.5
    m = rtu.meters[0]
    assert m.profile.name == "sdm630"
    # Requests cover every quantity planned, and no request exceeds the profile's limit.
    covered = {f for r in m.requests for f in r.fields}
    assert covered == set(m.quantities) and "p_w" in covered
    assert all(r.count <= m.quirks.max_registers for r in m.requests)
    assert rtu.meters[1].poll_s == 30.0


def test_tls_is_automatic_for_remote_brokers() -> None:
    base = 'site = "s"\ngateway = "g"\n[broker]\nhost = "%s"\n' \
           '[[buses]]\nname = "b"\nkind = "tcp"\nhost = "127.0.0.1"\n' \
           '[[meters]]\nid = "m"\nbus = "b"\nprofile = "sdm630"\n'
    remote = load_text(base % "broker.example.net", "x.toml")
    assert remote.broker.tls is True and remote.broker.port == 8883
    local = load_text(base % "::1", "x.toml")
    assert local.broker.tls is False and local.broker.port == 1883


def test_password_never_printed(tmp_path: Path) -> None:
    secret = "s3cr3t-Pa55"
    (tmp_path / "pw").write_text(secret + "\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text('site = "s"\ngateway = "g"\n[broker]\nhost = "127.0.0.1"\nusername = "u"\n'
                   'password_file = "pw"\n[[buses]]\nname = "b"\nkind = "tcp"\n'
                   'host = "127.0.0.1"\n[[meters]]\nid = "m"\nbus = "b"\nprofile = "sdm630"\n')
    plan = load(cfg)
    assert plan.broker.password == secret
    assert secret not in repr(plan.broker) and secret not in plan.describe()
    out = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", str(cfg)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok\n")
    assert secret not in out.stdout + out.stderr


def test_check_config_exit_code_and_message(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('site = "s"\ngateway = "g"\npoll_s = -1\n')
    out = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", str(cfg)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "config error: poll_s: -1.0 is below the minimum 0.1 in %s" % cfg.resolve())
    missing = subprocess.run([sys.executable, "-m", "agent.cli", "check-config",
                              str(tmp_path / "nope.toml")],
                             capture_output=True, text=True, check=False)
    assert missing.returncode == 2
    assert "file not found" in missing.stderr and "nope.toml" in missing.stderr


# -- issue 14 item 3: one settings module ---------------------------------------------

_MIN = """
site = "s1"
gateway = "g1"
state_dir = "state"
%s
[[buses]]
name = "b1"
kind = "tcp"
host = "127.0.0.1"
[[meters]]
id = "m1"
bus = "b1"
profile = "sdm630"
%s
"""


def test_detector_tz_offset_s_is_honoured_by_the_agent_exactly_as_by_replay(
        tmp_path: Path) -> None:
    from agent.config import load_detector_settings, load_text

    text = _MIN % ("[detector]\ntz_offset_s = 3600", "")
    plan = load_text(text, "t.toml", tmp_path)
    assert plan.detector_settings("residential")["tz_offset_s"] == 3600.0
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert load_detector_settings(cfg)[0]["tz_offset_s"] == 3600.0
    # The documented spelling keeps working, the same on both paths.
    text = _MIN % ("tz_offset_hours = 8", "")
    assert load_text(text, "t.toml", tmp_path).detector_settings("x")["tz_offset_s"] == 28800.0
    cfg.write_text(text)
    assert load_detector_settings(cfg)[0]["tz_offset_s"] == 28800.0
    cfg.write_text(_MIN % ("tz_offset_hours = 8\n[detector]\ntz_offset_s = 3600", ""))
    with pytest.raises(ConfigError, match=r"detector\.tz_offset_s: set either"):
        load_detector_settings(cfg)


def test_frozen_s_is_a_quirk_per_meter_as_in_a_profile(tmp_path: Path) -> None:
    from agent.config import load_text

    plan = load_text(_MIN % ("", "quirks = { frozen_s = 3600 }"), "t.toml", tmp_path)
    assert plan.meters[0].quirks.frozen_s == 3600.0
    with pytest.raises(ConfigError, match=r"meters\[0\]\.quirks\.frozen_s: 0\.5 is below"):
        load_text(_MIN % ("", "quirks = { frozen_s = 0.5 }"), "t.toml", tmp_path)


def test_firmware_meter_table_carries_frozen_s_and_the_time_zone(tmp_path: Path) -> None:
    from firmware_bridge.devconfig import DEFAULT_TOML, load_text

    text = DEFAULT_TOML.replace('profile = "generic"',
                                'profile = "generic"\nquirks = { frozen_s = 1800 }')
    text = "tz_offset_hours = 8\n" + text
    meter = load_text(text, "fw.toml")["meters"][0]
    assert meter["frozen_s"] == 1800.0 and meter["detector"]["tz_offset_s"] == 28800.0


def test_a_refused_setting_is_named_without_reading_the_error_message() -> None:
    """The key comes from the component refusing it (``SettingsError.key``), not from its
    message's words, nor from trying each setting alone: with two wrong settings, the key
    is the one the message is about."""
    from agent.settings import check_settings

    with pytest.raises(ConfigError) as err:
        check_settings("detector", {"slot_s": 700.0}, {}, "t.toml")
    assert err.value.key == "detector.slot_s"
    with pytest.raises(ConfigError) as err:
        check_settings("classes.shop", {}, {"clear_at": 95.0}, "t.toml")
    assert err.value.key == "classes.shop.policy.clear_at"
    # Only the combination is wrong: the policy names the key itself.
    with pytest.raises(ConfigError) as err:
        check_settings("detector", {}, {"clear_at": 50.0, "raise_at": 40.0}, "t.toml")
    assert err.value.key == "policy.clear_at"
    # Both wrong: the detector refuses slot_s first, and the key says slot_s too (a
    # guess that tried each setting alone named min_block_h, the first refused by name).
    with pytest.raises(ConfigError) as err:
        check_settings("detector", {"min_block_h": 30.0, "slot_s": 700.0}, {}, "t.toml")
    assert err.value.key == "detector.slot_s" and "slot_s=700" in str(err.value)


def test_detector_and_policy_raise_a_settings_error_that_names_the_key() -> None:
    from agent.model import SettingsError
    from agent.policy import Policy
    from agent.signature import Detector

    for bad, key in (({"nope": 1.0}, "nope"), ({"slot_s": "900"}, "slot_s"),
                     ({"slot_s": 700.0}, "slot_s"), ({"min_block_h": 30.0}, "min_block_h"),
                     ({"min_cover": float("nan")}, "min_cover"),
                     ({"learn_down": 1.5}, "learn_down"), ({"z_lo": -1.0}, "z_lo"),
                     ({"persist_full_h": 0.0}, "persist_full_h"),
                     ({"tz_offset_s": 90000.0}, "tz_offset_s")):
        with pytest.raises(SettingsError) as err:
            Detector(bad)
        assert err.value.key == key, (bad, err.value)
    Detector({"tz_offset_s": -36000.0, "w_rise": 0.0})  # negative only for the time zone
    for bad, key in (({"nope": 1.0}, "nope"), ({"hold_s": float("inf")}, "hold_s"),
                     ({"clear_at": 99.0}, "clear_at")):
        with pytest.raises(SettingsError) as err:
            Policy("m", bad)
        assert err.value.key == key, (bad, err.value)


@pytest.mark.parametrize("table,body,key,words", [
    ("detector", "min_block_h = nan", "detector.min_block_h", "finite"),
    ("detector", "learn_up = 2", "detector.learn_up", "share"),
    ("detector", "persist_full_h = 0", "detector.persist_full_h", "above 0"),
    ("detector", "step_lo_kw = -0.1", "detector.step_lo_kw", "negative"),
    ("policy", "hold_s = inf", "policy.hold_s", "finite"),
    ("classes.shop.detector", "slot_s = 700", "classes.shop.detector.slot_s", "divide"),
])
def test_a_wrong_scoring_value_is_one_line_naming_the_key_and_the_file(
        tmp_path: Path, table: str, body: str, key: str, words: str) -> None:
    """A value the detector or the policy cannot work with (NaN and inf are TOML floats)
    stops check-config and replay with one line naming the key and the file; before,
    NaN, a zero persistence or a share above 1 were accepted and failed (or misjudged)
    only once the meters ran."""
    cfg = tmp_path / "lw.toml"
    cfg.write_text(_MIN % ("[%s]\n%s" % (table, body), ""))
    runs = [(["check-config", str(cfg)], "")]
    if not table.startswith("classes."):  # (replay reads [detector] and [policy] only)
        runs.append((["replay", "--config", str(cfg), "-"], "loadwatch replay: "))
    for argv, lead in runs:
        out = subprocess.run([sys.executable, "-m", "agent.cli"] + argv, input="",
                             capture_output=True, text=True, check=False)
        assert out.returncode == 2, (argv, out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith("%sconfig error: %s: " % (lead, key)), lines[0]
        assert lines[0].endswith(" in %s" % cfg.resolve()) and words in lines[0], lines[0]


_TELEMETRY_BASE = ('site = "s"\ngateway = "g"\n[broker]\nhost = "127.0.0.1"\n%s\n'
                   '[[buses]]\nname = "b"\nkind = "tcp"\nhost = "127.0.0.1"\n'
                   '[[meters]]\nid = "m"\nbus = "b"\nprofile = "sdm630"\nclass = "flat"\n'
                   'quantities = "all"\n[classes.flat]\n%s\n')


def test_telemetry_quantities_per_class_and_the_score_topic() -> None:
    plan = load_text(_TELEMETRY_BASE % ("score_topic = true",
                                        'telemetry_quantities = ["p_w", "v_v_l1"]'), "x.toml")
    assert plan.telemetry_quantities("flat") == ("p_w", "v_v_l1")
    assert plan.telemetry_quantities("residential") is None  # not set: all
    assert plan.broker.score_topic is True
    plan = load_text(_TELEMETRY_BASE % ("", ""), "x.toml")
    assert plan.telemetry_quantities("flat") is None and plan.broker.score_topic is False


@pytest.mark.parametrize("value, says", [
    ('["p_w", "volts"]', "volts: not a quantity name"),
    ('"some"', "must be a list of quantity names or \"all\""),
    ("[1]", "must be a list of quantity names"),
])
def test_telemetry_quantities_refused_with_its_key_and_file(value: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(_TELEMETRY_BASE % ("", "telemetry_quantities = %s" % value), "x.toml")
    message = str(err.value)
    assert "classes.flat.telemetry_quantities" in message and "x.toml" in message, message
    assert says in message and "\n" not in message, message


def test_agent_firmware_and_replay_configs_are_read_alike(tmp_path: Path) -> None:
    """One reader for the three config files (agent/config.py ``read_config``): a missing
    file, one that is not UTF-8 and bad TOML are each the same one-line ConfigError naming
    the file. (The firmware config and replay's read raised UnicodeDecodeError on a
    Latin-1 file, and said "cannot read: No such file or directory" for a missing one.)"""
    from agent.config import load_detector_settings
    from firmware_bridge import devconfig

    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('site = "Zürich"\n'.encode("latin-1"))
    bad = tmp_path / "bad.toml"
    bad.write_text("site = \n")
    for reader in (load, devconfig.load, load_detector_settings):
        with pytest.raises(ConfigError) as err:
            reader(tmp_path / "nope.toml")
        assert str(err.value).startswith("config error: file not found in "), reader
        with pytest.raises(ConfigError) as err:
            reader(latin1)
        assert str(err.value).startswith("config error: not UTF-8 text in "), reader
        with pytest.raises(ConfigError) as err:
            reader(bad)
        assert str(err.value).startswith("config error: not valid TOML: "), reader
        assert "bad.toml" in str(err.value)


def test_firmware_meter_class_error_lists_the_known_classes(tmp_path: Path) -> None:
    """The agent and firmware configs check a meter's class with one function: an unknown
    class names the ones that exist in both (the firmware config named none)."""
    from firmware_bridge.devconfig import DEFAULT_TOML
    from firmware_bridge.devconfig import load_text as fw_load_text

    text = DEFAULT_TOML.replace('profile = "generic"', 'profile = "generic"\nclass = "shpo"')
    text = text.replace('uplink = "serial"', 'uplink = "serial"\n[classes.shop]')
    with pytest.raises(ConfigError, match=r"meters\[0\]\.class: 'shpo' is not defined in "
                       r"\[classes\] \(known: residential, shop\)"):
        fw_load_text(text, "fw.toml")
