"""Runs a scenario: meters, loads, faults, timeline, broker, agent, subscriber -> a report.

``run_local()`` is ``loadwatch hil run X.toml --agent local``: an embedded Mosquitto, the
simulated meters (pymodbus TCP servers, or RTU servers behind the RS-485 link emulator on
a pty pair), the real ``agent.runtime.Agent`` on a fast simulated clock, and a
``hil.subscriber.Recorder`` standing in for the utility; the verdict is hil/judge.py's.
The parts have a module each: the clock governor (hil/rigclock.py), the loads
(hil/loadbuild.py), the meters and faults (hil/rig.py), the agent's config written from
data (hil/toml_out.py); this one only runs the timeline.

``serve()`` is ``--agent none``: the same meters and faults in real time for an external
gateway under test, until Ctrl-C.

"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from agent.clock import Clock
from hil import toml_out
from hil.judge import Observer, Report, judge, sim_day
from hil.loadbuild import appliance, build_load, miner_load
from hil.rig import Rig
from hil.rigclock import RigClock, govern
from hil.scenario import DAY, Scenario
from hil.shutdown import stop_run

DRAIN_S = 30.0  # real seconds to wait for the outbox to reach the subscriber at the end
TICK_S = 0.05  # real seconds between timeline checks (fault schedule, end of run)


def agent_config(sc: Scenario, rig: Rig, broker_port: int, state_dir: str) -> str:
    """The agent's TOML for this rig: one [[buses]] per scenario bus, meters in order."""
    buses = []
    for bus in sc.buses:
        ep = rig.endpoints[bus.name]
        b: dict = {"name": bus.name, "kind": ep["kind"]}
        if bus.protocol != "modbus":
            b["protocol"] = bus.protocol
        if ep["kind"] in ("tcp", "rtu-over-tcp"):
            b.update(host=ep["host"], port=ep["port"])
        else:
            b.update(port=ep["port"], baud=bus.baud, parity=ep["parity"],
                     stopbits=bus.stopbits)
        b.update(timeout_ms=bus.timeout_ms, retries=bus.retries,
                 backoff_max_s=max(1.0, min(86400.0, 4 * sc.poll_s)))
        buses.append(b)
    meters = []
    for m in sc.meters:
        one: dict = {"id": m.id, "bus": m.bus}
        if m.address:
            one["address"] = m.address
        else:
            one["unit"] = m.unit
        one["profile"] = m.profile
        if m.quantities:
            one["quantities"] = list(m.quantities)
        meters.append(one)
    return toml_out.dumps({
        "site": "hil", "gateway": sc.name, "tz_offset_hours": sc.tz_hours,
        "state_dir": state_dir, "poll_s": sc.poll_s,
        "telemetry_every_s": sc.telemetry_every_s,
        "checkpoint_every_s": max(3600.0, sc.telemetry_every_s),
        "broker": {"host": "127.0.0.1", "port": broker_port, "tls": False},
        "buses": buses, "meters": meters})


def _fast_dir() -> str | None:
    """Where the agent under test keeps its state and outbox: tmpfs when there is one.

    The outbox fsyncs every alert and health event (DESIGN.md 6). On a disk that is
    4-12 ms each, and at x43200 a street's hourly health refreshes alone arrive ~100 times
    a real second: the event loop would spend most of its time in fsync and polls would
    slip by hours of simulated time. On tmpfs the same SQLite code runs, WAL and all; only
    the flush to a platter is free. Durability across power cuts is the publish room's
    kill -9 campaigns' business, not the scenarios'.
    """
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


async def run_local(sc: Scenario, data_dir: Path | None = None,
                    log: Callable[[str], None] | None = None,
                    state_root: str | None = None) -> Report:
    """Run the scenario against the embedded agent and return the judged report.

    ``state_root`` is where the agent's state dir and outbox go (default: tmpfs, see
    ``_fast_dir``; give a disk path to include real fsync cost in the run).
    """
    from agent.config import load_text
    from agent.runtime import Agent
    from hil.broker import MosquittoBroker
    from hil.subscriber import Recorder

    say = log or (lambda s: None)
    rep = Report(sc)
    workdir = tempfile.mkdtemp(prefix="loadwatch-hil-", dir=state_root or _fast_dir())
    broker = MosquittoBroker()
    recorder = None
    rig = None
    agent_task = None
    loop = asyncio.get_running_loop()
    broker_events: list[str] = []
    outages: list[list] = []  # [sim t down, sim t up or None]
    try:
        await loop.run_in_executor(None, broker.start)
        # A persistent session: messages the agent sends while the recorder is still
        # reconnecting after a broker restart are queued for it, not lost to the report.
        recorder = Recorder("127.0.0.1", broker.port, "loadwatch/v1/hil/%s/#" % sc.name,
                            client_id="loadwatch-hil-recorder", clean_start=False)
        recorder.client.reconnect_delay_set(1, 2)
        await loop.run_in_executor(None, recorder.start)
        loads = {m.id: build_load(sc, m, data_dir, sc.start) for m in sc.meters}
        # The clock starts only now, so broker start-up does not eat simulated days.
        clock = RigClock(speed=sc.speed, t0=sc.start)
        rig = Rig(sc, clock, loads)
        await rig.start()
        plan = load_text(agent_config(sc, rig, broker.port, os.path.join(workdir, "state")),
                         "hil scenario %s" % sc.name)
        agent = Agent(plan, clock)
        obs = Observer(sc)
        agent.add_listener(obs.on_event)
        agent.add_poll_listener(obs.on_poll)
        real0 = time.monotonic()
        before = set(asyncio.all_tasks())
        agent_task = asyncio.create_task(agent.run(), name="hil-agent")
        pending: list[asyncio.Future] = []

        def broker_switch(up: bool) -> None:
            if up and outages and outages[-1][1] is None:
                outages[-1][1] = clock.now()
            elif not up:
                outages.append([clock.now(), None])
            broker_events.append("%s at day %.2f" % ("broker up" if up else "broker down",
                                                     sim_day(sc, clock.now())))
            say(broker_events[-1])
            pending.append(loop.run_in_executor(None, broker.start if up else broker.stop))

        last_day = -1
        while clock.now() < sc.end:
            if agent_task.done():
                agent_task.result()  # raises the agent's error
                raise RuntimeError("the agent stopped before the end of the timeline")
            rig.apply_faults(clock.now(), broker_switch)
            day = int(sim_day(sc, clock.now()))
            if day != last_day:
                last_day = day
                say("day %d" % day)
            if sc.hold_poll_interval:
                govern(clock, obs.lag(clock.now(), agent.health), sc.poll_s)
            await asyncio.sleep(TICK_S)
        t_end = sc.end
        for fut in pending:
            await fut
        if not broker.running:
            await loop.run_in_executor(None, broker.start)
        # Drain: every alert/health event emitted by the end must reach the subscriber.
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline:
            got = {m["payload"].get("id") for m in recorder.messages
                   if isinstance(m["payload"], dict)}
            if all(ev.id in got for ev in list(obs.emitted.values()) if ev.t <= t_end):
                break
            await asyncio.sleep(0.1)
        rep.real_s = time.monotonic() - real0
        rep.slowdowns = clock.slowdowns
        rep.sim_days = sim_day(sc, clock.now())
        obs.stopped = True
        agent.request_stop()
        await agent_task
        agent_task = None
        leftovers = await _reap(before)
        if leftovers:
            rep.warnings.append("the agent left %d task(s) running after it stopped (%s); "
                                "the rig cancelled them" % (len(leftovers),
                                                            ", ".join(leftovers)))
        rep.utilisation = rig.utilisation()
        rep.state_dir = workdir
        _header(sc, rep, obs, data_dir, broker_events)
        judge(sc, rep, list(recorder.messages), obs, t_end, outages)
        _footer(rep)
        return rep
    finally:
        await stop_run(agent_task, recorder, rig, broker, workdir)


async def _reap(before: set) -> list[str]:
    """Tasks the agent started and did not finish by the time ``run()`` returned.

    A shutdown bug, not a scenario failure: they are named in the report and cancelled so
    the rig can stop its servers cleanly instead of having them polled after the end.
    """
    me = asyncio.current_task()
    await asyncio.sleep(0.2)
    left = [t for t in asyncio.all_tasks() if t not in before and t is not me and not t.done()]
    names = []
    for t in left:
        coro = t.get_coro()
        names.append(getattr(coro, "__qualname__", t.get_name()))
        t.cancel()
    if left:
        await asyncio.wait(left, timeout=5.0)
    return names


def _header(sc: Scenario, rep: Report, obs: Observer, data_dir: Path | None,
            broker_events: list[str]) -> None:
    out = rep.lines
    out.append("scenario %s: %s" % (sc.name, sc.description))
    households = "real traces from %s" % data_dir if data_dir else "synthetic households"
    out.append("rig: %d meters on %d bus(es), %s; agent local (state in %s), embedded "
               "Mosquitto" % (len(sc.meters), len(sc.buses), households,
                              os.path.dirname(rep.state_dir) or rep.state_dir))
    eff = obs.effective_poll_s()
    mean_speed = sc.days * DAY / rep.real_s if rep.real_s > 0 else sc.speed
    slowed = ""
    if rep.slowdowns:
        slowed = ", slowed %d time%s to keep the poll interval" % (
            rep.slowdowns, "" if rep.slowdowns == 1 else "s")
    out.append("timeline: %.1f simulated days in %.1f s real (x%.0f asked, x%.0f mean%s)" % (
        sc.days, rep.real_s, sc.speed, mean_speed, slowed))
    out.append("polls: every %gs asked, %s median, %s longest gap after a good poll" % (
        sc.poll_s, "%.0fs" % eff if eff is not None else "n/a",
        "%.0fs" % obs.max_gap_s() if obs.max_gap_s() is not None else "n/a"))
    for m in sc.meters:
        extra = [appliance(sc, m, spec, i).description + _days(spec)
                 for i, spec in enumerate(m.appliances)]
        if m.miner is not None:
            extra.append("MINER " + miner_load(sc, m, m.miner, sc.start).description
                         + _days(m.miner))
        if extra:
            out.append("  %s: %s" % (m.id, "; ".join(extra)))
    if sc.faults:
        out.append("faults: " + "; ".join(f.describe() for f in sc.faults))
    if broker_events:
        out.append("broker: " + ", ".join(broker_events))
    for name, text in rep.utilisation.items():
        out.append("bus %s %s" % (name, text))
    for w in rep.warnings:
        out.append("warning: " + w)


def _days(spec) -> str:
    if spec.from_day <= 0.0 and spec.to_day is None:
        return ""
    if spec.to_day is None:
        return " from day %g" % spec.from_day
    return " day %g-%g" % (spec.from_day, spec.to_day)


def _footer(rep: Report) -> None:
    failed = [c for c in rep.checks if not c.ok]
    rep.lines.append("result: %s (%d of %d checks hold%s)" % (
        "PASS" if not failed else "FAIL", len(rep.checks) - len(failed), len(rep.checks),
        "; failed: " + ", ".join(c.what for c in failed) if failed else ""))


# --------------------------------------------------------------------------- serve only


async def serve(sc: Scenario, data_dir: Path | None, serial: list[str], host: str,
                tcp_port: int, speed: float, stop: asyncio.Event,
                say: Callable[[str], None]) -> None:
    """Serve the scenario's meters in (scaled) real time until ``stop`` is set.

    Day 0 is now: miners switch on ``from_day`` days after the start, faults follow their
    schedule, and the loads' local hour is the wall clock's in the scenario's time zone.
    """
    start = time.time()
    loads = {m.id: build_load(sc, m, data_dir, start) for m in sc.meters}
    clock = Clock(speed=speed, t0=start)
    sc.start = start
    rig = Rig(sc, clock, loads, host=host, serial=serial, tcp_port=tcp_port)
    await rig.start()
    try:
        for bus in sc.buses:
            ep = rig.endpoints[bus.name]
            where = ("%s:%d" % (ep["host"], ep["port"]) if ep["kind"] in ("tcp", "rtu-over-tcp")
                     else ep["port"])
            units = ", ".join("%s=%s" % (m.id, m.address or m.unit)
                              for m in sc.meters_on(bus.name))
            say("bus %s (%s) on %s: units %s" % (bus.name, bus.describe(), where, units))
            if bus.name in rig.links:
                say("  a pty has no parity: open it at %d 8N1; the link emulator paces the "
                    "wire as %s" % (bus.baud, bus.describe()))
        for m in sc.meters:
            if m.miner is not None:
                say("miner on %s (%s) from day %g" % (m.id, m.miner.kind, m.miner.from_day))
        for f in sc.faults:
            if f.kind == "broker_down":
                continue
            if f.kind in ("crc", "bus_gone") and f.bus not in rig.links:
                say("fault: %s - ignored: it needs the link emulator, not a real port"
                    % f.describe())
            else:
                say("fault: %s" % f.describe())
        say("serving at x%g; Ctrl-C to stop" % speed)
        while not stop.is_set():
            rig.apply_faults(clock.now(), None)
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        for name, text in rig.utilisation().items():
            say("bus %s %s" % (name, text))
    finally:
        await rig.stop()
