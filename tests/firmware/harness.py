"""Rig for running the device app in the real MicroPython unix port.

* ``household(t0)`` / ``miner_load(t0, onset_days)``: pure, deterministic loads (the
  hil/loads contract) for the simulated meter.
* ``MeterRig``: hil/meters SimMeterServer on the device end of a hil/rs485 LinkEmulator
  (115200 baud, paced, 3.5-char gaps); the MCU opens ``rig.port``.
* ``PtyRelay``: the MCU's uplink UART and the host's serial port as two real ptys joined
  by a relay that can corrupt one chosen device->host frame (a noisy cable).
* ``device_config`` / ``build_unix`` / ``Device``: build the firmware for the unix port
  with ``firmware_bridge.build`` (the .mpy files a board would get, plus shims) and run
  ``micropython main.py config.json`` in it as a child process.
* ``device_on_a_miner_bus``: all of the above for one device and one miner meter.
* ``run_bridged``: run a built firmware to its end with the agent's bridge source reading
  its serial uplink (the host half of a ``PtyRelay``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import tty
from pathlib import Path
from typing import Callable

from agent.bridge.framing import SYNC
from agent.bridge.source import BridgeSource
from agent.clock import Clock
from agent.config import BusPlan
from agent.profiles import load_profile
from firmware_bridge import devconfig
from firmware_bridge.build import build
from hil.loads.base import Function, Sum
from hil.loads.miners import Miner
from hil.meters import SimMeterServer, SimUnit
from hil.rs485 import LinkEmulator

DAY = 86400.0
T0 = 1767225600.0  # 2026-01-01T00:00:00Z
# The policy holds 6 h before raising (default); the device and the reference use the
# same settings, whatever they are.
FIRMWARE_TOML = """
site = "rig"
gateway = "mcu-1"
uplink = "{uplink}"
telemetry_every_s = 3600
state_every_s = 3600
wdt_ms = 5000
state_dir = "{state_dir}"

[rs485]
uart = 1
baud = 115200
de = 4
timeout_ms = 300
retries = 1
port = "{rs485_port}"

[link]
uart = 0
baud = 115200
ack_ms = 100
port = "{link_port}"

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
keepalive_s = 30
retry_max_s = 2

[[meters]]
id = "m1"
unit = 1
profile = "generic"
poll_s = {poll_s}
"""


def household(t0: float = T0) -> Function:
    """A home with a morning and an evening peak, a 250 W floor and some wobble."""

    def power(t: float) -> tuple[float, float]:
        h = ((t - t0) % DAY) / 3600.0
        p = 250.0 + 900.0 * math.exp(-((h - 19.0) ** 2) / 4.0) + \
            400.0 * math.exp(-((h - 8.0) ** 2) / 2.0) + 60.0 * math.sin(t / 700.0)
        return p, 0.9

    return Function(power, "household")


def miner_load(t0: float = T0, onset_days: float = 2.2) -> Sum:
    return Sum(household(t0), Miner(1400.0, 0.97, seed=3, start=t0 + onset_days * DAY))


def device_config(workdir: Path, uplink: str, rs485_port: str, link_port: str = "",
                  mqtt_port: int = 1883, poll_s: float = 600.0) -> dict:
    text = FIRMWARE_TOML.format(uplink=uplink, state_dir=workdir / "flash",
                                rs485_port=rs485_port, link_port=link_port,
                                mqtt_port=mqtt_port, poll_s=poll_s)
    return devconfig.load_text(text, "tests/firmware rig")


def sim_clock(speed: float) -> Clock:
    return Clock(speed=speed, t0=T0)


def build_unix(workdir: Path, cfg: dict, stop_at: float) -> Path:
    """The unix-port firmware; the clock goes in later (``set_clock``), just before the
    device starts, so that building does not eat simulated days."""
    cfg = dict(cfg)
    cfg["stop_at"] = stop_at
    out = workdir / "fw"
    build("unix", device_config=cfg, out=out)
    return out


def set_clock(fw_dir: Path, clock: Clock) -> None:
    """Point the device at the rig's simulated clock (same t0, speed and wall start)."""
    path = fw_dir / "config.json"
    cfg = json.loads(path.read_text())
    spec = clock.spec()
    cfg["clock"] = {"mode": "sim", "t0": spec["t0"], "speed": spec["speed"],
                    "wall_start": spec["wall_start"]}
    path.write_text(json.dumps(cfg))


class MeterRig:
    """One simulated generic meter (unit 1) behind an RS-485 link emulator."""

    def __init__(self, load: object, clock: Clock):
        self.link = LinkEmulator(baud=115200)
        self.unit = SimUnit(1, load_profile("generic"), load, clock, name="m1")
        self.server: SimMeterServer | None = None

    @property
    def port(self) -> str:
        return self.link.master_port

    async def start(self) -> MeterRig:
        await self.link.start()
        self.server = SimMeterServer([self.unit], rtu=self.link.device_port, baudrate=115200)
        await self.server.start()
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        await self.link.stop()


class PtyRelay:
    """Two ptys joined back to back; ``corrupt_frame = n`` flips a byte inside the n-th
    frame the device sends (counting from 1), once."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.device_port = str(workdir / "tty-mcu")
        self.host_port = str(workdir / "tty-host")
        self.corrupt_frame = 0
        self.corrupted = 0
        self.frames_up = 0
        self.bytes_up = 0
        self._fds: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def _pty(self, link: str) -> tuple[int, int]:
        master, slave = os.openpty()
        tty.setraw(slave)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.symlink(os.ttyname(slave), link)
        self._fds += [master, slave]
        return master, slave

    async def start(self) -> PtyRelay:
        self._loop = asyncio.get_running_loop()
        self.dev_master, _ = self._pty(self.device_port)
        self.host_master, _ = self._pty(self.host_port)
        self._loop.add_reader(self.dev_master, self._up)
        self._loop.add_reader(self.host_master, self._down)
        return self

    def _read(self, fd: int) -> bytes:
        try:
            return os.read(fd, 65536)
        except OSError:  # EIO while the other side has the pty closed
            return b""

    def _up(self) -> None:
        data = bytearray(self._read(self.dev_master))
        if not data:
            return
        self.bytes_up += len(data)
        i = data.find(SYNC)
        while i >= 0:
            self.frames_up += 1
            if self.frames_up == self.corrupt_frame and i + 10 < len(data):
                data[i + 10] ^= 0x20  # a payload byte: the CRC no longer matches
                self.corrupted += 1
            i = data.find(SYNC, i + 2)
        os.write(self.host_master, bytes(data))

    def _down(self) -> None:
        data = self._read(self.host_master)
        if data:
            os.write(self.dev_master, data)

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.dev_master)
            self._loop.remove_reader(self.host_master)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        for link in (self.device_port, self.host_port):
            with contextlib.suppress(OSError):
                os.unlink(link)


class Device:
    """``micropython main.py config.json`` in a built firmware folder."""

    def __init__(self, micropython: str, fw_dir: Path, log_path: Path):
        self.micropython = micropython
        self.fw_dir = fw_dir
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.runs = 0

    async def start(self) -> None:
        self.runs += 1
        log = open(self.log_path, "ab")
        try:
            env = dict(os.environ, MICROPYPATH=".")
            self.proc = await asyncio.create_subprocess_exec(
                self.micropython, "main.py", "config.json", cwd=str(self.fw_dir),
                stdout=log, stderr=asyncio.subprocess.STDOUT, env=env)
        finally:
            log.close()

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def run_to_end(self, timeout: float) -> None:
        """Start the device and wait up to ``timeout`` s for it to exit at its ``stop_at``;
        an exit status other than 0 fails the test with the device's log."""
        await self.start()
        code = await self.wait(timeout)
        assert code == 0, self.log()

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


async def run_bridged(micropython: str, fw_dir: Path, bus: BusPlan, clock: Clock,
                      on_reading: Callable, on_health: Callable, log_path: Path,
                      timeout: float) -> str:
    """Run the firmware in ``fw_dir`` until it exits at its ``stop_at`` while the agent's
    bridge source for ``bus`` reads its uplink; the device's log. A device that does not
    exit cleanly in ``timeout`` s fails the test with its log; the device and the source
    are stopped however it ends (the caller stops its own line, relay and meters)."""
    source = BridgeSource(bus, clock, on_reading, lambda ev: None, on_health)
    task = asyncio.create_task(source.run())
    device = Device(micropython, fw_dir, log_path)
    try:
        await device.run_to_end(timeout)
        await asyncio.sleep(0.2)  # the last frames reach the source
    finally:
        await device.kill()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return device.log()


async def device_on_a_miner_bus(workdir: Path, micropython: str, cfg: dict, stop_at: float,
                                speed: float) -> tuple[Clock, MeterRig, Device]:
    """The firmware for ``cfg`` built into ``workdir``/fw to stop at ``stop_at``, on a
    simulated clock at ``speed``, its RS-485 port (``workdir``/rs485, as
    ``device_config`` names it) wired to one simulated meter with a miner load: the
    clock, the meter rig (started: the caller stops it) and the device (not started)."""
    fw = build_unix(workdir, cfg, stop_at)
    clock = sim_clock(speed)
    rig = await MeterRig(miner_load(), clock).start()
    os.symlink(rig.port, workdir / "rs485")
    set_clock(fw, clock)
    return clock, rig, Device(micropython, fw, workdir / "device.log")
