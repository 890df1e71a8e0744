"""A meter goes away while ``loadwatch run`` polls it, and comes back (issue 13 item 1).

The real command in a subprocess, two real pymodbus servers as two meters on two TCP
buses and a third meter on a real pty behind the RS-485 link emulator, a real Mosquitto:
the second server is stopped (a gateway unplugged) and later started again on the same
port; then the serial port vanishes (a USB-RS485 adapter pulled out) and comes back. The
agent's log (what journalctl shows) must name the meter, the real reason ("connection
refused", "errno 2 ... (adapter unplugged?", not "timeout") and what to check within
one poll cycle, say nothing more while the meter stays down (never once per poll), and
log the recovery; the good meter stays silent. The retained health payload and
``loadwatch status`` carry the same reason.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from campaign import record

from agent.clock import Clock
from agent.profiles import load_profile
from hil.broker import MosquittoBroker
from hil.loads.base import Constant
from hil.meters import SimMeterServer, SimUnit
from hil.rs485 import LinkEmulator
from hil.subscriber import Recorder

# Fault campaigns (tests/faults): `make test` and `make faults` only.
pytestmark = pytest.mark.slow

POLL_S = 1.0
TIMEOUT_MS = 300


def _config(path: Path, broker_port: int, good_port: int, bad_port: int,
            serial: str) -> None:
    path.write_text("\n".join([
        'site = "field"', 'gateway = "gw1"', "state_dir = %s" % json.dumps(str(path.parent)),
        "poll_s = %g" % POLL_S, "checkpoint_every_s = 1",
        "[broker]", 'host = "127.0.0.1"', "port = %d" % broker_port, 'prefix = "lw/v1"',
        "[[buses]]", 'name = "a"', 'kind = "tcp"', 'host = "127.0.0.1"',
        "port = %d" % good_port, "timeout_ms = %d" % TIMEOUT_MS, "backoff_max_s = 2",
        "[[buses]]", 'name = "b"', 'kind = "tcp"', 'host = "127.0.0.1"',
        "port = %d" % bad_port, "timeout_ms = %d" % TIMEOUT_MS, "backoff_max_s = 2",
        "[[meters]]", 'id = "m-good"', 'bus = "a"', "unit = 1", 'profile = "sdm630"',
        "[[buses]]", 'name = "usb"', 'kind = "rtu"', "port = %s" % json.dumps(serial),
        "baud = 38400", "timeout_ms = %d" % TIMEOUT_MS, "backoff_max_s = 2",
        "[[meters]]", 'id = "m-gone"', 'bus = "b"', "unit = 1", 'profile = "sdm630"',
        "[[meters]]", 'id = "m-usb"', 'bus = "usb"', "unit = 4", 'profile = "sdm120"',
    ]) + "\n")


async def _wait_line(lines: list[str], pred, timeout: float) -> float:
    """Seconds until a log line matching ``pred`` appeared (TimeoutError if none)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if any(pred(ln) for ln in lines):
            return time.monotonic() - t0
        await asyncio.sleep(0.05)
    raise TimeoutError("no matching log line in %.0f s; log:\n%s" % (timeout, "\n".join(lines)))


def _health(rec: Recorder, meter: str) -> list[dict]:
    return [m["payload"] for m in list(rec.messages)
            if m["topic"] == "lw/v1/meter/%s/health" % meter]


def test_unplugged_meter_is_logged_once_with_its_reason_and_recovery(tmp_path, arun) -> None:
    async def main() -> None:
        clock = Clock()
        profile = load_profile("sdm630")
        good = SimMeterServer([SimUnit(1, profile, Constant(850.0, 0.95), clock)],
                              tcp=("127.0.0.1", 0))
        gone = SimMeterServer([SimUnit(1, profile, Constant(850.0, 0.95), clock)],
                              tcp=("127.0.0.1", 0))
        await good.start()
        await gone.start()
        link = LinkEmulator(baud=38400)
        await link.start()
        usb = SimMeterServer([SimUnit(4, load_profile("sdm120"), Constant(850.0, 0.95), clock)],
                             rtu=link.device_port, baudrate=38400)
        await usb.start()
        bad_port = gone.port
        back: SimMeterServer | None = None
        cfg = tmp_path / "lw.toml"
        lines: list[str] = []
        with MosquittoBroker() as broker:
            _config(cfg, broker.port, good.port, bad_port, link.master_port)
            rec = Recorder("127.0.0.1", broker.port, "lw/v1/meter/+/health")
            rec.start()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent.cli", "run", str(cfg),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)

            async def pump() -> None:
                assert proc.stderr is not None
                async for raw in proc.stderr:
                    lines.append(raw.decode().rstrip())

            reader = asyncio.create_task(pump())
            try:
                # Both meters answer: nothing about them in the log.
                await asyncio.sleep(4 * POLL_S)
                assert not [ln for ln in lines if "meter m-" in ln], lines
                # Unplug: the reason, what to check, within one poll cycle.
                await gone.stop()
                unplugged = time.monotonic()
                took = await _wait_line(
                    lines, lambda ln: "meter m-gone: ok -> down" in ln, 3 * POLL_S)
                took = time.monotonic() - unplugged
                down = [ln for ln in lines if "meter m-gone" in ln]
                assert "WARNING" in down[0] and "connection refused" in down[0], down
                assert "hint: check" in down[0] and "timeout" not in down[0].split("hint:")[0]
                # Down for a while: still one line, not one per poll.
                await asyncio.sleep(5 * POLL_S)
                assert len([ln for ln in lines if "meter m-gone" in ln]) == 1, lines
                payloads = _health(rec, "m-gone")
                assert payloads and payloads[-1]["state"] == "down"
                assert "connection refused" in payloads[-1]["reason"], payloads[-1]
                assert payloads[-1]["cause"] == "io" and payloads[-1]["hint"]
                status = subprocess.run(
                    [sys.executable, "-m", "agent.cli", "status", "-c", str(cfg)],
                    capture_output=True, text=True, timeout=30, check=False)
                row = [ln for ln in status.stdout.splitlines() if ln.startswith("m-gone")]
                assert row and "connection refused" in row[0], status.stdout + status.stderr
                assert "last reading: timeout" not in status.stdout
                # Plug it back in, on the same port: the recovery is logged, at INFO.
                back = SimMeterServer([SimUnit(1, profile, Constant(850.0, 0.95), clock)],
                                      tcp=("127.0.0.1", bad_port))
                await back.start()
                recovered = await _wait_line(
                    lines, lambda ln: "meter m-gone: down -> ok" in ln, 10.0)
                ok_line = next(ln for ln in lines if "meter m-gone: down -> ok" in ln)
                assert " INFO " in ok_line, ok_line
                # The USB-RS485 adapter is pulled out, and plugged back in.
                # (On a loaded machine a retry may have made it "degraded" just before.)
                n0 = len(lines)
                link.set_fault("gone", on=True)

                def usb_went_down(ln: str) -> bool:
                    return "meter m-usb: " in ln and " -> down" in ln

                await _wait_line(lines, lambda ln: usb_went_down(ln) and ln in lines[n0:],
                                 3 * POLL_S + 1)
                usb_down = next(ln for ln in lines[n0:] if usb_went_down(ln))
                # Pulled between polls: "serial port X does not exist"; pulled with the
                # port open: "connection to X ... lost; now: errno 2". Both name it.
                assert link.master_port in usb_down and "(adapter unplugged?" in usb_down \
                    and ("does not exist" in usb_down or "now: errno 2" in usb_down), usb_down
                assert "hint: check that the USB-RS485 adapter" in usb_down, usb_down
                link.set_fault("gone", on=False)
                await _wait_line(lines, lambda ln: "meter m-usb: down -> ok" in ln, 10.0)
                # Once per change: from the unplug on, down is logged once however many
                # polls it missed, and every line is a change from the state the line
                # before it left. (Before the unplug, a loaded machine can time a poll out
                # and log a real down and recovery of its own.)
                changes = [ln.split("meter m-usb: ", 1)[1].split(":", 1)[0].split(" (")[0]
                           for ln in lines[n0:] if "meter m-usb: " in ln]
                assert sum(1 for tr in changes if tr.endswith("-> down")) == 1, lines
                states = [tr.split(" -> ") for tr in changes]
                assert all(a != b for a, b in states), lines
                assert all(prev[1] == nxt[0] for prev, nxt in zip(states, states[1:])), lines
                assert not [ln for ln in lines if "meter m-good" in ln], lines
                assert "Traceback" not in "\n".join(lines)
                record("meter unplugged under `loadwatch run`", runs=2, crash_loops=0,
                       note="down logged after %.1f s, recovery after %.1f s, %d lines"
                       % (took, recovered, len([ln for ln in lines if "m-gone" in ln])))
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(proc.wait(), 30)
                    except asyncio.TimeoutError:
                        proc.kill()
                        await proc.wait()
                await reader
                rec.stop()
                await good.stop()
                if back is not None:
                    await back.stop()
                await usb.stop()
                await link.stop()
        assert proc.returncode == 0, "\n".join(lines)

    arun(main())
