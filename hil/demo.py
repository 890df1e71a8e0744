"""``loadwatch demo``: the whole product on one machine in about a minute.

Starts an embedded Mosquitto on a free loopback port, simulated meters (real pymodbus TCP
servers) serving household load, one of which gets a 1.4 kW ASIC miner part way, the real
agent on a fast simulated clock, and an MQTT subscriber standing in for the utility. It
shows a live table and prints every alert the subscriber received, as received.

With ``--protocol dlt645`` the meters are simulated DL/T 645-2007 meters (hil/dlt645.py,
profile dlt645_single, addressed 000012340001...) on one line that the agent reaches as a
transparent TCP gateway. That line is not paced at 2400 baud: at the demo's x13000 a real
2400-baud line could not carry one sweep per poll (``loadwatch hil run china-building``
shows the paced line).

Households are real SGSC traces when ``--data DIR`` is given or ``../shared/data`` sits next
to the checkout; otherwise synthetic households (see hil/loads), so a fresh clone works.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from agent.clock import Clock
from agent.config import load_text
from agent.runtime import Agent
from hil import toml_out
from hil.broker import MosquittoBroker
from hil.loads import demo_households
from hil.loads.miners import SCHEDULES
from hil.meters import SimMeterServer, SimUnit
from hil.shutdown import stop_run
from hil.subscriber import Recorder

DAY = 86400.0
REPO_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=60.0,
                   help="real seconds to run (default 60)")
    p.add_argument("--days", type=float, default=9.0,
                   help="simulated days to pass in that time (default 9)")
    p.add_argument("--speed", type=float, default=None,
                   help="simulated seconds per real second (default: days*86400/duration)")
    p.add_argument("--meters", type=int, default=6, help="number of meters, >= 2 (default 6)")
    p.add_argument("--miner-day", type=float, default=3.0,
                   help="simulated day on which the 1.4 kW miner is switched on (default 3)")
    p.add_argument("--miner-schedule", choices=SCHEDULES, default="constant",
                   help="when the miner runs: constant (24/7, default), night (22:00-07:00 "
                   "local, the valley tariff), duty (off 17:00-21:00 over the peak) or ramp "
                   "(one hash board more every ~2 days)")
    p.add_argument("--data", default=None,
                   help="folder with the public traces (sgsc25_halfhourly.csv.gz); default "
                   "../shared/data when present, else synthetic households")
    p.add_argument("--synthetic", action="store_true",
                   help="synthetic households even when the real traces are present")
    p.add_argument("--seed", type=int, default=1, help="seed for synthetic loads and noise")
    p.add_argument("--no-table", action="store_true", help="no live table (log lines only)")
    p.add_argument("--protocol", choices=("modbus", "dlt645"), default="modbus",
                   help="what the simulated meters speak (default modbus; dlt645: "
                   "DL/T 645-2007 meters behind a transparent TCP gateway)")


def _agent_config(port_broker: int, port_meters: int, units: list, state_dir: str,
                  tz_hours: float) -> str:
    """The agent's TOML, written from data (hil/toml_out.py, as the rig's); ``units`` are
    SimUnits (Modbus TCP) or SimDlt645Meters (one DL/T 645 line behind a transparent
    gateway)."""
    dlt = bool(units) and hasattr(units[0], "address")
    bus: dict = {"name": "street", "kind": "rtu-over-tcp" if dlt else "tcp"}
    if dlt:
        bus["protocol"] = "dlt645"
    bus.update(host="127.0.0.1", port=port_meters, timeout_ms=2000)
    meters = []
    for u in units:
        m: dict = {"id": u.name, "bus": "street"}
        if dlt:
            m["address"] = u.address
        else:
            m["unit"] = u.unit_id
        m["profile"] = u.profile.name
        if dlt:
            # One round trip per quantity: read what the detector and the telemetry use,
            # so a sweep keeps up with the demo's fast clock (as a slow line would).
            m["quantities"] = ["p_w", "pf", "e_import_kwh"]
        meters.append(m)
    return toml_out.dumps({
        "site": "demo", "gateway": "demo-gw", "tz_offset_hours": tz_hours,
        "state_dir": state_dir, "poll_s": 300, "telemetry_every_s": 3600,
        "checkpoint_every_s": 21600,
        "broker": {"host": "127.0.0.1", "port": port_broker, "tls": False},
        "buses": [bus], "meters": meters})


class Table:
    """The live view: redrawn in place on a terminal, a line per change otherwise."""

    def __init__(self, enabled: bool):
        self.tty = enabled and sys.stdout.isatty()
        self.enabled = enabled
        self.lines_drawn = 0
        self.last_plain = 0.0

    def draw(self, t: float, rows: list[dict], alerts: int, miner: str) -> None:
        if not self.enabled:
            return
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))
        out = ["simulated %s UTC   alerts received: %d   (miner on %s)" % (when, alerts, miner),
               "%-10s %-8s %8s %6s %-8s %-7s %s" % ("meter", "profile", "kW", "score", "state",
                                                     "health", "alert")]
        for r in rows:
            kw = "%.2f" % (r["p_w"] / 1000.0) if r["p_w"] is not None else "-"
            out.append("%-10s %-8s %8s %6.1f %-8s %-7s %s" % (
                r["meter"], r["profile"], kw, r["score"], r["state"], r["health"],
                "ALERT " + r["alert"] if r["alert"] else ""))
        if self.tty:
            if self.lines_drawn:
                sys.stdout.write("\x1b[%dA" % self.lines_drawn)
            sys.stdout.write("".join("\x1b[2K" + line + "\n" for line in out))
            self.lines_drawn = len(out)
        elif time.monotonic() - self.last_plain > 10.0:
            self.last_plain = time.monotonic()
            sys.stdout.write("\n".join(out) + "\n\n")
        sys.stdout.flush()

    def message(self, text: str) -> None:
        if self.tty and self.lines_drawn:
            sys.stdout.write("\x1b[%dA" % self.lines_drawn)
            sys.stdout.write("\x1b[J")
            self.lines_drawn = 0
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


async def run_demo(args: argparse.Namespace) -> int:
    if args.meters < 2:
        print("loadwatch demo: --meters must be at least 2", file=sys.stderr)
        return 2
    if args.duration <= 0 or args.days <= 0:
        print("loadwatch demo: --duration and --days must be > 0", file=sys.stderr)
        return 2
    if args.synthetic and args.data:
        print("loadwatch demo: --synthetic and --data exclude each other", file=sys.stderr)
        return 2
    data_dir = Path(args.data) if args.data else (REPO_SHARED if REPO_SHARED.is_dir() else None)
    if args.synthetic:
        data_dir = None
    if args.data and not (data_dir / "sgsc25_halfhourly.csv.gz").exists():
        print("loadwatch demo: --data %s has no sgsc25_halfhourly.csv.gz" % args.data,
              file=sys.stderr)
        return 2
    if args.speed is not None and not args.speed > 0:
        print("loadwatch demo: --speed must be > 0 (simulated seconds per real second)",
              file=sys.stderr)
        return 2
    speed = args.speed or args.days * DAY / args.duration
    days = speed * args.duration / DAY  # what the run really simulates
    if not 0 <= args.miner_day < days:
        print("loadwatch demo: --miner-day %g is outside the run (day 0 to %.1f): the "
              "miner would never switch on, so it cannot be caught; use a --miner-day "
              "below %.1f or more --days" % (args.miner_day, days, days), file=sys.stderr)
        return 2
    households = demo_households(args.meters, data_dir=data_dir, seed=args.seed,
                                 miner_index=args.meters // 2, miner_day=args.miner_day,
                                 miner_schedule=args.miner_schedule)
    t0 = households.t0
    clock = Clock(speed=speed, t0=t0)
    table = Table(not args.no_table)
    table.message("loadwatch demo: %d %smeters (%s), %.1f simulated days in %.0f s (x%.0f)" % (
        args.meters, "DL/T 645 " if args.protocol == "dlt645" else "",
        households.description, args.days, args.duration, speed))
    table.message("miner: %s gets a 1.4 kW ASIC (Antminer S9) from day %g%s" % (
        households.miner_meter, args.miner_day,
        {"constant": "", "night": ", running only 22:00-07:00 local",
         "duty": ", off 17:00-21:00 local", "ramp": ", one hash board at a time"}[
            args.miner_schedule]))

    workdir = tempfile.mkdtemp(prefix="loadwatch-demo-")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    broker = MosquittoBroker()
    server = None
    agent_task = None
    recorder = None
    try:
        broker.start()
        if args.protocol == "dlt645":
            from agent.profiles import load_profile
            from hil.dlt645 import Dlt645Line, SimDlt645Meter

            single = load_profile("dlt645_single")
            units = [SimDlt645Meter("%012d" % (12340001 + i), single, h.load, clock,
                                    name=h.meter) for i, h in enumerate(households.meters)]
            server = Dlt645Line(units, tcp=("127.0.0.1", 0))
        else:
            units = [SimUnit(i + 1, h.profile, h.load, clock, name=h.meter)
                     for i, h in enumerate(households.meters)]
            server = SimMeterServer(units, tcp=("127.0.0.1", 0))
        await server.start()
        plan = load_text(_agent_config(broker.port, server.port, units,
                                       os.path.join(workdir, "state"),
                                       households.tz_hours), "demo-config")
        recorder = Recorder("127.0.0.1", broker.port, plan.broker.prefix + "/#")
        recorder.start()
        alerts_seen = 0

        agent = Agent(plan, clock)
        agent_task = asyncio.create_task(agent.run())
        deadline = time.monotonic() + args.duration
        while not stop.is_set() and time.monotonic() < deadline:
            if agent_task.done():
                break
            for msg in recorder.take_alerts():
                alerts_seen += 1
                table.message("alert received on %s:\n%s" % (
                    msg["topic"], json.dumps(msg["payload"], indent=2)))
            table.draw(clock.now(), agent.snapshot(), alerts_seen, households.miner_meter)
            try:
                await asyncio.wait_for(stop.wait(), 0.25)
            except asyncio.TimeoutError:
                pass
        agent.request_stop()
        if agent_task is not None:
            await agent_task
        await asyncio.sleep(0.3)  # let the last messages reach the subscriber
        for msg in recorder.take_alerts():
            alerts_seen += 1
            table.message("alert received on %s:\n%s" % (
                msg["topic"], json.dumps(msg["payload"], indent=2)))
        raised = recorder.raised_meters()
        false_alarms = sorted(raised - {households.miner_meter})
        table.message("")
        table.message("summary: %d alert messages received; raised for: %s; miner was on %s"
                      % (alerts_seen, ", ".join(sorted(raised)) or "none",
                         households.miner_meter))
        if false_alarms:
            table.message("false alarms (no miner there): %s" % ", ".join(false_alarms))
        if stop.is_set():
            table.message("interrupted: everything stopped cleanly")
            return 130
        if households.miner_meter not in raised:
            table.message("the miner was NOT caught in this run (try --days 10 or more)")
            return 1
        table.message("the miner was caught.")
        return 0
    finally:
        await stop_run(agent_task, recorder, server, broker, workdir)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def demo_main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run_demo(args))
    except KeyboardInterrupt:
        return 130
