"""The MCU app polls DL/T 645-2007 meters too, under the real MicroPython unix port:
two simulated DL/T 645 meters on a 2400-baud line paced by the link emulator, the
device's small DL/T 645 master (the agent's own codec, bundled as .mpy), readings over
the serial uplink to the agent's bridge source. One meter is dead: it is reported with
timeouts and backs off while the other keeps its poll rate."""

from __future__ import annotations

import os

import pytest

from agent.clock import Clock
from agent.config import ConfigError, load_text
from agent.model import Q_TIMEOUT, Reading
from agent.profiles import load_profile
from firmware_bridge import devconfig
from firmware_bridge.build import build
from hil.dlt645 import Dlt645Line, SimDlt645Meter
from hil.rs485 import LinkEmulator

from .harness import T0, PtyRelay, household, run_bridged

# End to end: the MCU app polling DL/T 645 meters on a paced line: `make test` only.
pytestmark = pytest.mark.slow

FIRMWARE = """
site = "rig"
gateway = "mcu-645"
uplink = "serial"
wdt_ms = 5000
state_dir = "{state_dir}"
poll_s = 1.0
[rs485]
protocol = "dlt645"
uart = 1
timeout_ms = 400
retries = 0
backoff_max_s = 3.0
port = "{rs485}"
[link]
uart = 0
baud = 115200
ack_ms = 100
port = "{link}"
[[meters]]
id = "m1"
address = "000012340001"
profile = "dlt645_single"
quantities = ["p_w", "pf", "e_import_kwh"]
[[meters]]
id = "m2"
address = "000012340002"
profile = "dlt645_single"
"""
AGENT = """
site = "rig"
gateway = "host-1"
state_dir = "{state_dir}"
[broker]
host = "127.0.0.1"
[[buses]]
name = "mcu"
kind = "bridge"
port = "{link}"
baud = 115200
[[meters]]
id = "m1"
bus = "mcu"
[[meters]]
id = "m2"
bus = "mcu"
"""


def test_device_config_for_dlt645_meters(tmp_path) -> None:
    cfg = devconfig.load_text(FIRMWARE.format(state_dir=tmp_path, rs485="/x", link="/y"),
                              "fw.toml")
    assert (cfg["rs485"]["protocol"], cfg["rs485"]["baud"], cfg["rs485"]["parity"]) == (
        "dlt645", 2400, "E")
    m1 = cfg["meters"][0]
    assert m1["address"] == "000012340001"
    assert m1["reads"] == [[0x11, 0x02030000, 3], [0x11, 0x02060000, 2],
                           [0x11, 0x00010000, 4]]
    assert m1["fields"][0] == ["p_w", 0x11, 0x02030000, "bcds3", 0, pytest.approx(0.1)]
    bad = FIRMWARE.replace('address = "000012340002"', 'address = "12340002"')
    with pytest.raises(ConfigError, match=r"meters\[1\]\.address: '12340002' is not a "
                       "12-digit DL/T 645 address"):
        devconfig.load_text(bad.format(state_dir=tmp_path, rs485="/x", link="/y"), "fw.toml")


def test_mcu_polls_dlt645_meters_on_a_paced_line(tmp_path, micropython_bin, arun) -> None:
    readings: list[Reading] = []

    async def scenario() -> str:
        relay = await PtyRelay(tmp_path).start()
        link = LinkEmulator(baud=2400, parity="E", framing="dlt645")
        await link.start()
        os.symlink(link.master_port, tmp_path / "rs485")
        cfg = devconfig.load_text(FIRMWARE.format(state_dir=tmp_path / "flash",
                                                  rs485=tmp_path / "rs485",
                                                  link=relay.device_port), "fw.toml")
        cfg["stop_at"] = T0 + 8.0
        fw = tmp_path / "fw"
        build("unix", device_config=cfg, out=fw)
        # the host's calendar starts now: the device takes it from the bridge's ack
        clock = Clock(speed=1.0, t0=T0)
        profile = load_profile("dlt645_single")
        meters = [SimDlt645Meter("000012340001", profile, household(), clock),
                  SimDlt645Meter("000012340002", profile, household(), clock)]
        meters[1].set_fault("silent")
        line = Dlt645Line(meters, serial=link.device_port)
        await line.start()
        bus = load_text(AGENT.format(state_dir=tmp_path / "agent", link=relay.host_port),
                        "t").buses[0]
        try:
            return await run_bridged(micropython_bin, fw, bus, clock, readings.append,
                                     lambda h: None, tmp_path / "device.log", 40.0)
        finally:
            await line.stop()
            await link.stop()
            await relay.stop()

    log = arun(scenario(), 90.0)
    m1 = [r for r in readings if r.meter == "m1"]
    m2 = [r for r in readings if r.meter == "m2"]
    assert len(m1) >= 4, log
    want = household().power(T0)[0]
    for r in m1:
        assert r.scorable, (r, log)
        assert set(r.values) == {"p_w", "pf", "e_import_kwh"}
        assert abs(r.values["p_w"] - want) < 150.0  # the household moves slowly
        assert r.values["e_import_kwh"] > 1000.0
    assert m2 and all(r.quality & Q_TIMEOUT for r in m2)
    assert len(m2) < len(m1)  # the dead meter backs off
