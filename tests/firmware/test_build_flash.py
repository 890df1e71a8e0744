"""``loadwatch firmware build`` and ``flash`` through the real command line.

No board is attached to CI, so flashing is exercised on its failure paths, for real:
the real mpremote is run against a port with no board, and a missing mpremote binary.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_bridge.devconfig import load_text

LOADWATCH = [sys.executable, "-m", "agent.cli"]
ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LOADWATCH, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=False)


@pytest.mark.parametrize("board", ["esp32", "rp2"])
def test_build_writes_mpy_manifest_and_config(tmp_path, board):
    out = tmp_path / board
    proc = _run("firmware", "build", "--board", board, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["board"] == board
    assert manifest["march"] == {"esp32": "xtensawin", "rp2": "armv6m"}[board]
    paths = [e["path"] for e in manifest["files"]]
    # The shared core at its package path, the app as bytecode, main.py as source.
    for p in ("agent/signature/__init__.mpy", "agent/policy.mpy", "agent/model.mpy",
              "agent/bridge/framing.mpy", "app.mpy", "modbus_rtu.mpy", "rs485_line.mpy",
              "main.py", "config.json"):
        assert p in paths
    assert "machine.mpy" not in paths  # unix shims never go to a board
    for e in manifest["files"]:
        data = (out / e["path"]).read_bytes()
        assert len(data) == e["bytes"]
        assert hashlib.sha256(data).hexdigest() == e["sha256"]
        if e["path"].endswith(".mpy"):
            assert data[:2] == b"M\x06"  # .mpy v6: MicroPython 1.22 and later
    assert manifest["mpy_bytes"] < 64 * 1024  # issue 7 target
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["meters"][0]["reads"] == [[3, 0, 12]]  # generic: p_w..e_import_kwh coalesced
    assert "%d bytes of .mpy" % manifest["mpy_bytes"] in proc.stdout


def test_flash_without_a_board_names_the_port_and_what_to_check(tmp_path):
    out = tmp_path / "esp32"
    assert _run("firmware", "build", "--board", "esp32", "--out", str(out)).returncode == 0
    proc = _run("firmware", "flash", "--serial", "/dev/ttyACM0", "--build", str(out))
    assert proc.returncode == 1
    err = proc.stderr
    assert "firmware flash: probe failed on /dev/ttyACM0" in err
    assert "mpremote: failed to access /dev/ttyACM0" in err  # mpremote's own words
    assert "no board answered at /dev/ttyACM0" in err
    assert "serial ports mpremote can see now" in err


def test_flash_without_mpremote_says_how_to_install_it(tmp_path):
    out = tmp_path / "rp2"
    assert _run("firmware", "build", "--board", "rp2", "--out", str(out)).returncode == 0
    proc = _run("firmware", "flash", "--serial", "/dev/ttyACM0", "--build", str(out),
                "--mpremote", str(tmp_path / "no-such-mpremote"))
    assert proc.returncode == 1
    assert "mpremote not found at" in proc.stderr
    assert "pip install mpremote" in proc.stderr


def test_flash_refuses_a_missing_or_unix_build(tmp_path):
    proc = _run("firmware", "flash", "--serial", "/dev/ttyACM0", "--build", str(tmp_path))
    assert proc.returncode == 1
    assert "has no manifest.json: run `loadwatch firmware build" in proc.stderr
    unix = tmp_path / "unix"
    assert _run("firmware", "build", "--board", "unix", "--out", str(unix)).returncode == 0
    proc = _run("firmware", "flash", "--serial", "/dev/ttyACM0", "--build", str(unix))
    assert proc.returncode == 1
    assert "unix-port build (tests only)" in proc.stderr


def test_build_config_errors_name_the_key_and_file(tmp_path):
    bad = tmp_path / "fw.toml"
    bad.write_text('site = "s"\ngateway = "g"\n[[meters]]\nid = "m1"\nunit = 300\n'
                   'profile = "generic"\n')
    proc = _run("firmware", "build", "--config", str(bad), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("config error: meters[0].unit: 300 is not a Modbus unit "
                                   "id (1-247) in %s" % bad)


def test_device_config_merges_quirks_and_classes():
    cfg = load_text("""
site = "s"
gateway = "g"
uplink = "mqtt"
tz_offset_hours = 2
[mqtt]
host = "broker.example"
[classes.shop.policy]
raise_at = 70
[[meters]]
id = "a"
unit = 3
profile = "sdm120"
class = "shop"
quirks = { word_order = "CDAB" }
""", "inline")
    m = cfg["meters"][0]
    assert cfg["mqtt"]["prefix"] == "loadwatch/v1/s/g" and "link" not in cfg
    assert m["policy"] == {"raise_at": 70}
    assert m["detector"]["tz_offset_s"] == 7200.0
    assert {f[4] for f in m["fields"]} == {"CDAB"}
    assert m["fields"][0][0] == "p_w" and all(r[2] <= 125 for r in m["reads"])


COMBOS = """
site = "s"
gateway = "g"
uplink = "{uplink}"
[mqtt]
host = "broker.example"
[rs485]
protocol = "{protocol}"
[[meters]]
id = "m1"
{meter}
"""
METER = {"modbus": 'unit = 1\nprofile = "generic"',
         "dlt645": 'address = "000012340001"\nprofile = "dlt645_single"'}
ONLY = {"dlt645": {"agent/dlt645/__init__.mpy", "agent/dlt645/codec.mpy", "dlt645_master.mpy"},
        "modbus": {"modbus_rtu.mpy"},
        "mqtt": {"agent/publish/__init__.mpy", "agent/publish/payloads.mpy", "uplink_mqtt.mpy"},
        "serial": {"agent/bridge/__init__.mpy", "agent/bridge/framing.mpy",
                   "uplink_serial.mpy"}}


@pytest.mark.parametrize("protocol", ["modbus", "dlt645"])
@pytest.mark.parametrize("uplink", ["serial", "mqtt"])
def test_a_build_ships_what_its_config_uses_and_all_of_it_imports(tmp_path, micropython_bin,
                                                                   protocol, uplink):
    """A Modbus gateway carries no DL/T 645 master, a serial one no MQTT payload codec
    (and the reverse); every module a build ships imports on the real unix port, with
    nothing it needs left out. ``--all-modules`` still ships everything."""
    from firmware_bridge.build import build

    cfg = load_text(COMBOS.format(uplink=uplink, protocol=protocol, meter=METER[protocol]),
                    "combo.toml")
    m = build("unix", device_config=cfg, out=tmp_path / "fw")
    paths = {e["path"] for e in m["files"]}
    for key, only in ONLY.items():
        if key in (protocol, uplink):
            assert only <= paths, key
        else:
            assert not only & paths, key
    mods = sorted(p[:-4].replace("/", ".").replace(".__init__", "") for p in paths
                  if p.endswith(".mpy"))
    script = "import sys\nfor m in %r:\n    __import__(m)\nprint('ok', len(%r))" % (mods, mods)
    proc = subprocess.run([micropython_bin, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path / "fw", env={"MICROPYPATH": "."}, timeout=60,
                          check=False)
    assert proc.returncode == 0 and proc.stdout.split() == ["ok", str(len(mods))], (
        proc.stdout + proc.stderr)
    if (protocol, uplink) == ("modbus", "serial"):  # once is enough (a build takes ~1 s)
        everything = build("unix", device_config=cfg, out=tmp_path / "all", everything=True)
        assert set().union(*ONLY.values()) <= {e["path"] for e in everything["files"]}


def test_line_numbers_only_in_a_debugging_build(tmp_path):
    """The default build drops source line numbers (mpy-cross -O3: ~7 % less .mpy, and
    less heap once a board loads it); ``lines=True`` keeps them for a debugging build."""
    from firmware_bridge.build import build

    small = build("esp32", out=tmp_path / "small")
    debug = build("esp32", out=tmp_path / "debug", lines=True)
    assert not small["line_numbers"] and debug["line_numbers"]
    assert [e["path"] for e in small["files"]] == [e["path"] for e in debug["files"]]
    assert small["mpy_bytes"] < 0.95 * debug["mpy_bytes"]
