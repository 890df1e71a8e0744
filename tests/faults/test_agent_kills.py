"""Campaign: the real agent process killed with SIGKILL over and over (at random, and
within milliseconds after an alert event reached its outbox), and the broker killed once,
while simulated meters (real pymodbus TCP servers) serve four homes, one with a 1.4 kW
miner from day 2, on a fast clock; a persistent MQTT subscriber (the utility) judges it
from the outside. Then one clean run and a SIGTERM.

Counted: alert events the agent had made durable (it prints ``ALERT <id>`` after the
outbox write) that never reached the subscriber (lost), alert events that reached it
under a second id, alerts whose first event was not "raised", and starts that did not
come up (crash loops) or printed a traceback.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from campaign import record

from agent.clock import Clock
from hil.broker import MosquittoBroker
from hil.demo import _agent_config
from hil.loads import demo_households
from hil.meters import SimMeterServer, SimUnit
from hil.subscriber import Recorder

DAY = 86400.0
SPEED = DAY / 8.0  # a simulated day every 8 s
KILL_UNTIL_DAY = 7.0
END_DAY = 11.0  # then undisturbed: detection needs its days whatever the kills
AGENT = Path(__file__).with_name("agent_proc.py")


class Meters(threading.Thread):
    """The simulated meters' pymodbus server on its own event loop."""

    def __init__(self, units: list[SimUnit]):
        super().__init__(name="faults-meters", daemon=True)
        self.server = SimMeterServer(units, tcp=("127.0.0.1", 0))
        self.ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._halt: asyncio.Event | None = None

    def run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._halt = asyncio.Event()
            await self.server.start()
            self.ready.set()
            await self._halt.wait()
            await self.server.stop()

        asyncio.run(main())

    def stop(self) -> None:
        if self._loop is not None and self._halt is not None:
            self._loop.call_soon_threadsafe(self._halt.set)
        self.join(10)


class AgentRun:
    """One agent process; its output lines are collected by a reader thread."""

    def __init__(self, config: Path, clock: Clock, log: Path):
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(AGENT), "--config", str(config), "--clock",
             json.dumps(clock.spec())], stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.lines: list[str] = []
        self.alert = threading.Event()
        self.running = threading.Event()
        self.reader = threading.Thread(target=self._read, name="faults-agent-out",
                                       daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if line.startswith("ALERT"):
                self.alert.set()
            elif line.startswith("RUNNING"):
                self.running.set()

    def alerts(self) -> list[str]:
        return [x.split()[1] for x in list(self.lines) if x.startswith("ALERT ")]

    def end(self, sig_kill: bool) -> int:
        if sig_kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        rc = self.proc.wait(30)
        self.reader.join(10)
        self.log.close()
        return rc


@pytest.mark.slow
def test_agent_sigkill_at_random_and_after_alerts_with_a_broker_kill(tmp_path):
    rng = random.Random(20261129)
    homes = demo_households(4, seed=7, miner_index=1, miner_day=2.0)
    clock = Clock(speed=SPEED, t0=homes.t0)
    units = [SimUnit(i + 1, h.profile, h.load, clock, name=h.meter)
             for i, h in enumerate(homes.meters)]
    meters = Meters(units)
    meters.start()
    assert meters.ready.wait(20)
    kills = {"random": 0, "after-alert": 0}
    crash_loops = tracebacks = 0
    printed: list[str] = []
    broker_killed = False
    try:
        with MosquittoBroker() as broker:
            config = tmp_path / "agent.toml"
            text = _agent_config(broker.port, meters.server.port, units,
                                 str(tmp_path / "state"), homes.tz_hours)
            # An "updated" every simulated hour the score moves: more alert events to
            # kill the agent right after.
            config.write_text(text.replace("checkpoint_every_s = 21600",
                                           "checkpoint_every_s = 3600")
                              + "[policy]\nupdate_every_s = 3600\nupdate_delta = 0.5\n"
                              "update_step_kw = 0.01\n")
            utility = Recorder("127.0.0.1", broker.port, "loadwatch/v1/demo/demo-gw/#",
                               client_id="utility-faults", clean_start=False)
            utility.start()
            try:
                run = 0
                while clock.now() < homes.t0 + KILL_UNTIL_DAY * DAY:
                    run += 1
                    agent = AgentRun(config, clock, tmp_path / ("agent-%d.log" % run))
                    if not agent.running.wait(20):
                        crash_loops += 1
                    if rng.random() < 0.5:
                        mode = "after-alert"
                        if agent.alert.wait(rng.uniform(2.0, 4.0)):
                            time.sleep(rng.uniform(0.0, 0.01))  # within ~10 ms
                        else:
                            mode = "random"
                    else:
                        mode = "random"
                        time.sleep(rng.uniform(0.8, 3.0))
                    if agent.proc.poll() is not None:
                        crash_loops += 1  # it ended by itself
                    agent.end(sig_kill=True)
                    kills[mode] += 1
                    printed += agent.alerts()
                    if not broker_killed and clock.now() > homes.t0 + 4.5 * DAY:
                        broker.kill()
                        time.sleep(1.0)
                        broker.start()
                        broker_killed = True
                # The last run: undisturbed to the end, then an orderly stop.
                run += 1
                agent = AgentRun(config, clock, tmp_path / ("agent-%d.log" % run))
                assert agent.running.wait(20), "the agent did not start"
                while clock.now() < homes.t0 + END_DAY * DAY and agent.proc.poll() is None:
                    time.sleep(0.2)
                rc = agent.end(sig_kill=False)
                printed += agent.alerts()
                if rc != 0:
                    crash_loops += 1
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and \
                        not set(printed) <= {m["payload"]["id"] for m in utility.alerts()}:
                    time.sleep(0.2)
                received = [m["payload"] for m in utility.alerts()
                            if isinstance(m["payload"], dict) and "alert_id" in m["payload"]]
            finally:
                utility.stop()
    finally:
        meters.stop()
    for log in tmp_path.glob("agent-*.log"):
        tracebacks += log.read_text().count("Traceback")
    got = {p["id"] for p in received}
    lost = sorted(set(printed) - got)
    ids: dict[tuple[str, str], set[str]] = {}
    first: dict[str, str] = {}
    for p in received:
        ids.setdefault((p["alert_id"], p["id"].rsplit(":", 1)[-1]), set()).add(p["id"])
        first.setdefault(p["alert_id"], p["kind"])
    second = sum(len(v) - 1 for v in ids.values())
    orphans = sorted(a for a, k in first.items() if k != "raised")
    raised = sorted({p["meter"] for p in received if p["kind"] == "raised"})
    record("agent SIGKILL (random + after alerts), broker kill", runs=sum(kills.values()),
           alerts=len(set(printed)), lost=len(lost), second_id=second,
           crash_loops=crash_loops,
           note="%d random + %d after-alert kills, broker killed %s; raised for %s (miner "
           "%s); orphans %d; tracebacks %d" % (kills["random"], kills["after-alert"],
                                               broker_killed, raised, homes.miner_meter,
                                               len(orphans), tracebacks))
    assert kills["random"] + kills["after-alert"] >= 10
    assert not lost and second == 0 and crash_loops == 0 and tracebacks == 0
    assert not orphans, orphans
    assert homes.miner_meter in raised
