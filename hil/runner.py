"""Runs a scenario: meters, loads, faults, timeline, broker, agent, subscriber -> a report.

``run_local()`` is ``loadwatch hil run X.toml --agent local``: an embedded Mosquitto, the
simulated meters (pymodbus TCP servers, or RTU servers behind the RS-485 link emulator on
a pty pair), the real ``agent.runtime.Agent`` on a fast simulated clock, and a
``hil.subscriber.Recorder`` standing in for the utility. The verdict is taken from the
outside wherever possible: alerts and health are what the subscriber received; "lost" is
every alert or health event the agent emitted (seen through ``Agent.add_listener``) that
never reached the subscriber. Quality flags and poll errors are counted by wrapping the
agent's ``on_poll`` (the only in-process view the report uses), because telemetry merges a
slot's flags and cannot tell a scored reading from an unscored one.

``serve()`` is ``--agent none``: the same meters and faults in real time for an external
gateway under test, until Ctrl-C.

Why the clock is fast but not virtual: the agent's contract is ``Clock(speed, t0)`` and real
protocol timeouts, so a run at x50,000 really does poll a TCP server every few ms and an
RS-485 bus at its real baud rate. When the rig cannot keep up, simulated time still flows
and polls simply land further apart; the report prints the effective poll interval so a
too-ambitious ``--speed`` is visible rather than silently changing the test.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from agent.clock import Clock
from agent.model import ALERT_KINDS, Event, RawPoll, Reading, quality_names
from hil.scenario import DAY, FaultSpec, MeterSpec, Scenario

DRAIN_S = 30.0  # real seconds to wait for the outbox to reach the subscriber at the end
TICK_S = 0.05  # real seconds between timeline checks (fault schedule, end of run)


# --------------------------------------------------------------------------- the clock


class RigClock(Clock):
    """A ``Clock`` whose speed the rig may lower (and restore) while it runs.

    On a loaded machine (CI: 2 cores, many jobs) the agent can fall behind a very fast
    clock; polls then land hours apart in simulated time and the detector sees a different
    signal than the scenario means. The runner's governor watches the poll gaps and slows
    the clock instead, so a scenario tests the same thing on a busy or an idle machine and
    only takes longer. Re-anchoring keeps ``now()`` continuous and monotonic.
    """

    def __init__(self, speed: float, t0: float):
        super().__init__(speed=speed, t0=t0)
        self.target = self.speed
        self._t_anchor = self.t0
        self._m_anchor = time.monotonic()
        self.slowdowns = 0
        self.state_dir = ""

    def now(self) -> float:
        return self._t_anchor + (time.monotonic() - self._m_anchor) * self.speed

    def set_speed(self, speed: float) -> None:
        t = self.now()
        self._t_anchor = t
        self._m_anchor = time.monotonic()
        if speed < self.speed:
            self.slowdowns += 1
        self.speed = float(speed)


def govern(clock: RigClock, lag_s: float | None, poll_s: float) -> None:
    """Slow the clock when a meter has missed a whole poll; recover gradually.

    A poll that starts late is rescheduled to the next point of its grid (the poller skips
    what it missed), so gaps up to 2 intervals are a late poll, not yet a lost one; only
    beyond that is the detector's sampling really thinned.
    """
    if lag_s is None:
        return
    if lag_s > 2.2 * poll_s:
        clock.set_speed(max(clock.target / 50.0, clock.speed * 0.7))
    elif lag_s < 1.2 * poll_s and clock.speed < clock.target:
        clock.set_speed(min(clock.target, clock.speed * 1.05))


# --------------------------------------------------------------------------- loads


def build_load(sc: Scenario, m: MeterSpec, data_dir: Path | None, start: float):
    """The meter's Load: household + appliances + miner, each switched by its days."""
    from hil.loads.base import Sum, Window

    parts = []
    household = _household(sc, m, data_dir)
    if household is not None:
        parts.append(household)
    for i, spec in enumerate(m.appliances):
        parts.append(_windowed(Window, _appliance(sc, m, spec, i), spec, start))
    if m.miner is not None:
        parts.append(_windowed(Window, _miner(sc, m, m.miner, start), m.miner, start))
    if not parts:
        from hil.loads.base import Constant

        return Constant(0.0, 1.0, "empty")
    return parts[0] if len(parts) == 1 else Sum(*parts)


def _windowed(window_cls, load, spec, start: float):
    if spec.from_day <= 0.0 and spec.to_day is None:
        return load
    end = None if spec.to_day is None else start + spec.to_day * DAY
    return window_cls(load, start + spec.from_day * DAY, end)


def _seed(sc: Scenario, m: MeterSpec, salt: int) -> int:
    return sc.seed * 1000003 + m.index * 101 + salt


def _household(sc: Scenario, m: MeterSpec, data_dir: Path | None):
    kind = m.household
    if kind == "none":
        return None
    if kind == "auto":
        kind = "sgsc:%d" % m.index if data_dir is not None else "synthetic"
    if kind.startswith("sgsc:") or kind == "uci":
        if data_dir is None:
            raise ValueError("%s: household %r needs real traces: pass --data DIR (or use "
                             "household = \"auto\")" % (m.key, m.household))
        from hil.loads.traces import Trace, read_sgsc, read_uci

        if kind == "uci":
            return Trace(read_uci(data_dir).house)
        series = read_sgsc(data_dir)
        ids = sorted(series)
        return Trace(series[ids[int(kind.split(":")[1]) % len(ids)]])
    return _synthetic_household(sc, m)


def _synthetic_household(sc: Scenario, m: MeterSpec):
    from hil.loads import synthetic

    return synthetic.SyntheticHousehold(seed=_seed(sc, m, 1), tz_hours=sc.tz_hours)


def _appliance(sc: Scenario, m: MeterSpec, spec, i: int):
    from hil.loads.appliances import APPLIANCES

    cls = APPLIANCES[spec.kind]
    params = dict(spec.params)
    params.setdefault("seed", _seed(sc, m, 10 + i))
    params.setdefault("tz_hours", sc.tz_hours)
    try:
        return cls(**params)
    except (TypeError, ValueError) as e:
        raise ValueError("%s: %s" % (spec.key, e)) from None


def _miner(sc: Scenario, m: MeterSpec, spec, start: float):
    """A hil/loads/miners model; its own ``start`` is the onset, so restarts, drift and
    ``ramp`` schedules count from the day it was switched on."""
    from hil.loads import miners

    params = dict(spec.params)
    params.update(seed=_seed(sc, m, 5), tz_hours=sc.tz_hours,
                  start=start + spec.from_day * DAY)
    try:
        if spec.kind == "gpu":
            return miners.gpu_rig(int(params.pop("gpus", 6)), float(params.pop("gpu_w", 145.0)),
                                  float(params.pop("platform_w", 130.0)), **params)
        if spec.kind == "s9":
            return miners.antminer_s9(**params)
        if spec.kind == "s19":
            return miners.antminer_s19(**params)
        return miners.farm(float(params.pop("kw", 10.0)), **params)
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError("%s: %s" % (spec.key, e)) from None


# --------------------------------------------------------------------------- the report


class Check:
    def __init__(self, what: str, ok: bool, detail: str = ""):
        self.what = what
        self.ok = ok
        self.detail = detail


class Report:
    """Everything the run observed, the checks against the scenario, and the printout."""

    def __init__(self, sc: Scenario):
        self.sc = sc
        self.lines: list[str] = []
        self.checks: list[Check] = []
        self.real_s = 0.0
        self.sim_days = 0.0
        self.speed = sc.speed
        self.raised: dict[str, list[dict]] = {}
        self.false_alarms: list[str] = []
        self.lost: dict[str, int] = {}
        self.polls = 0
        self.poll_errors: dict[str, int] = {}
        self.flag_counts: dict[str, dict[str, int]] = {}
        self.scored_bad = 0
        self.health_seen: dict[str, list[tuple[float, str]]] = {}
        self.utilisation: dict[str, str] = {}
        self.warnings: list[str] = []
        self.peak_score: dict[str, float] = {}
        self.slowdowns = 0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def text(self) -> str:
        return "\n".join(self.lines)


def _day(sc: Scenario, t: float) -> float:
    return (t - sc.start) / DAY


class _Observer:
    """What the agent did, from inside (emitted events, polls) - used only for the
    lost-message count, poll errors and quality flags."""

    def __init__(self, sc: Scenario):
        self.sc = sc
        self.emitted: dict[str, Event] = {}  # id -> critical event (alerts, health)
        self.poll_times: dict[str, list[float]] = {}
        self.poll_ok: dict[str, list[bool]] = {}
        self.errors: dict[str, int] = {}
        self.flags: dict[str, dict[str, int]] = {}
        self.scored_bad = 0
        self.polls = 0
        self.stopped = False

    def on_event(self, ev: Event) -> None:
        if ev.kind in ALERT_KINDS or ev.kind == "health":
            self.emitted[ev.id] = ev

    def on_poll(self, raw: RawPoll, reading: Reading | None, learned: bool) -> None:
        """The agent's poll listener: every poll, the reading it became and whether the
        detector learned from it."""
        if self.stopped:  # the agent is shutting down: not part of the run
            return
        self.polls += 1
        self.poll_times.setdefault(raw.meter, []).append(raw.t)
        self.poll_ok.setdefault(raw.meter, []).append(raw.ok)
        if raw.error_kind:
            self.errors[raw.error_kind] = self.errors.get(raw.error_kind, 0) + 1
        if reading is None:
            return
        per = self.flags.setdefault(raw.meter, {})
        for n in quality_names(reading.quality):
            per[n] = per.get(n, 0) + 1
        if learned and not reading.scorable:
            self.scored_bad += 1

    def lag(self, now: float, health: dict) -> float | None:
        """The longest time since the last poll of a meter that should be answering.

        Meters in back-off ("down") are left out: their gaps are the back-off, by design.
        """
        worst = None
        for meter, ts in self.poll_times.items():
            h = health.get(meter)
            if h is not None and h.state == "down":
                continue
            gap = now - ts[-1]
            worst = gap if worst is None else max(worst, gap)
        return worst

    def _gaps(self) -> list[float]:
        """Gaps after a successful poll: a gap after a failure is the back-off, by design."""
        out = []
        for meter, ts in self.poll_times.items():
            ok = self.poll_ok[meter]
            out.extend(b - a for a, b, good in zip(ts, ts[1:], ok) if good)
        return out

    def max_gap_s(self) -> float | None:
        gaps = self._gaps()
        return max(gaps) if gaps else None

    def effective_poll_s(self) -> float | None:
        gaps = self._gaps()
        return statistics.median(gaps) if gaps else None


def judge(sc: Scenario, rep: Report, received: list[dict], obs: _Observer,
          t_end: float, outages: list | None = None) -> None:
    """Compare what the subscriber received with the scenario's expectations."""
    alerts = [m["payload"] for m in received if m["topic"].endswith("/alert")
              and isinstance(m["payload"], dict)]
    raised: dict[str, list[dict]] = {}
    for p in alerts:
        if p.get("kind") == "raised":
            raised.setdefault(p.get("meter", "?"), []).append(p)
    rep.raised = raised
    for p in received:
        pl = p["payload"]
        if p["topic"].endswith("/health") and isinstance(pl, dict):
            rep.health_seen.setdefault(pl.get("meter", "?"), []).append(
                (float(pl.get("t", 0.0)), str(pl.get("state", "?"))))

    peak: dict[str, float] = {}
    for p in received:
        pl = p["payload"]
        if p["topic"].endswith("/score") and isinstance(pl, dict) and isinstance(
                pl.get("score"), (int, float)):
            m = pl.get("meter", "?")
            peak[m] = max(peak.get(m, 0.0), float(pl["score"]))
    rep.peak_score = peak
    out = rep.lines
    expected = {a.meter: a for a in sc.alerts}
    out.append("alerts (expected vs received by the subscriber):")
    out.append("  %-10s %-26s %-36s %5s  %s" % ("meter", "expected", "received", "peak",
                                                "verdict"))
    for a in sc.alerts:
        got = sorted(raised.get(a.meter, []), key=lambda p: p["t"])
        lo, hi = sc.start + a.from_day * DAY, sc.start + a.to_day * DAY
        onset = _onset(sc, a.meter)
        if a.detected:
            exp = "raised day %g-%g" % (a.from_day, a.to_day)
            inside = [p for p in got if lo <= p["t"] <= hi]
            if inside:
                p = inside[0]
                delay = "" if onset is None else ", %.1f h after onset" % (
                    (p["t"] - onset) / 3600.0)
                recv = "raised day %.2f%s" % (_day(sc, p["t"]), delay)
                ok, verdict = True, "ok"
            elif got:
                recv = "raised day %.2f" % _day(sc, got[0]["t"])
                ok, verdict = False, "OUTSIDE WINDOW"
            else:
                recv, ok, verdict = "nothing", False, "MISSED"
        else:
            exp = "no alert (documented miss)" if _onset(sc, a.meter) is not None \
                else "no alert"
            if got:
                recv = "raised day %.2f" % _day(sc, got[0]["t"])
                ok, verdict = False, "UNEXPECTED ALERT"
            else:
                recv, ok, verdict = "nothing", True, "ok"
        out.append("  %-10s %-26s %-36s %5.1f  %s" % (a.meter, exp, recv,
                                                      peak.get(a.meter, 0.0), verdict))
        if a.note:
            out.append("  %-10s note: %s" % ("", a.note))
        rep.checks.append(Check("alert %s" % a.meter, ok, verdict))
    false = []
    for meter, ps in sorted(raised.items()):
        if meter in expected:
            a = expected[meter]
            if a.detected:
                # A raise before the expected window on a meter that later has a miner is
                # a false alarm too (it fired on the household, not on the miner).
                early = [p for p in ps if p["t"] < sc.start + a.from_day * DAY]
                false.extend("%s day %.2f" % (meter, _day(sc, p["t"])) for p in early)
            continue
        false.extend("%s day %.2f" % (meter, _day(sc, p["t"])) for p in ps)
    rep.false_alarms = false
    out.append("false alarms: %d (allowed %d)%s" % (
        len(false), sc.false_alarms, ": " + ", ".join(false) if false else ""))
    rep.checks.append(Check("false alarms", len(false) <= sc.false_alarms,
                            "%d > %d" % (len(false), sc.false_alarms)))

    # Lost messages: critical events the agent emitted up to the end of the timeline that
    # the subscriber never received (de-duplicated by payload id).
    got_ids = {m["payload"].get("id") for m in received if isinstance(m["payload"], dict)}
    emitted = [ev for ev in obs.emitted.values() if ev.t <= t_end]
    lost_alerts = [ev for ev in emitted if ev.is_alert and ev.id not in got_ids]
    # The outbox keeps only a meter's latest health while it waits (a subscriber needs the
    # current state, not every flap): a health event is lost only if no later health of
    # its meter arrived either.
    latest_health: dict[str, float] = {}
    for m in received:
        pl = m["payload"]
        if m["topic"].endswith("/health") and isinstance(pl, dict):
            meter = pl.get("meter", "?")
            latest_health[meter] = max(latest_health.get(meter, -math.inf), pl.get("t", 0.0))
    unseen = [ev for ev in emitted if ev.kind == "health" and ev.id not in got_ids]
    superseded = [ev for ev in unseen if latest_health.get(ev.meter, -math.inf) > ev.t]
    lost_health = [ev for ev in unseen if ev not in superseded]
    n_alert = sum(1 for ev in emitted if ev.is_alert)
    rep.lost = {"alert": len(lost_alerts), "health": len(lost_health)}
    out.append("messages: %d alert events emitted, %d received, %d lost; %d health events "
               "emitted, %d lost (%d superseded by a later one of their meter)"
               % (n_alert, n_alert - len(lost_alerts), len(lost_alerts),
                  len(emitted) - n_alert, len(lost_health), len(superseded)))
    for down, up in outages or []:
        up = t_end if up is None else up
        queued = [ev for ev in emitted if down <= ev.t < up]
        out.append("  while the broker was down (day %.2f-%.2f): %d alert and %d health events "
                   "queued in the outbox" % (_day(sc, down), _day(sc, up),
                                             sum(1 for ev in queued if ev.is_alert),
                                             sum(1 for ev in queued if not ev.is_alert)))
    rep.checks.append(Check("no alert lost", not lost_alerts,
                            ", ".join(ev.id for ev in lost_alerts[:5])))
    rep.checks.append(Check("no health event lost", not lost_health,
                            ", ".join(ev.id for ev in lost_health[:5])))

    rep.polls = obs.polls
    rep.poll_errors = dict(obs.errors)
    n_err = sum(obs.errors.values())
    out.append("poll errors: %d of %d polls%s" % (
        n_err, obs.polls, " (%s)" % ", ".join("%s %d" % kv for kv in sorted(obs.errors.items()))
        if n_err else ""))
    for h in sc.health:
        seen = rep.health_seen.get(h.meter, [])
        by = sc.start + h.by_day * DAY
        hit = [t for t, s in seen if s == h.state and t <= by]
        states = sorted({s for _, s in seen})
        ok = bool(hit)
        out.append("health %s: expected %s by day %g, %s" % (
            h.meter, h.state, h.by_day,
            "seen day %.2f" % _day(sc, hit[0]) if ok else "not seen (saw: %s)"
            % (", ".join(states) or "nothing")))
        rep.checks.append(Check("health %s %s" % (h.meter, h.state), ok))
    rep.flag_counts = obs.flags
    rep.scored_bad = obs.scored_bad
    for q in sc.quality:
        meters = [q.meter] if q.meter else [m.id for m in sc.meters_on(q.bus)]
        n = sum(obs.flags.get(mid, {}).get(q.flag, 0) for mid in meters)
        ok = n >= q.min_readings and obs.scored_bad == 0
        out.append("quality %s on %s: %d readings flagged (need >= %d), bad readings scored: %d"
                   % (q.flag, q.meter or "bus " + q.bus, n, q.min_readings, obs.scored_bad))
        rep.checks.append(Check("quality %s %s" % (q.flag, q.meter or q.bus), ok))


def _onset(sc: Scenario, meter: str) -> float | None:
    for m in sc.meters:
        if m.id == meter and m.miner is not None:
            return sc.start + m.miner.from_day * DAY
    return None


# --------------------------------------------------------------------------- the rig


class Rig:
    """Meters of every bus, served per the scenario, with fault switches.

    TCP buses are pymodbus TCP servers on 127.0.0.1 (or ``host``); RTU buses are RTU servers
    on one end of the RS-485 link emulator (two ptys) whose other end is what a master
    opens, or directly on a real serial port from ``serial``.
    """

    def __init__(self, sc: Scenario, clock: Clock, loads: dict, host: str = "127.0.0.1",
                 serial: list[str] | None = None, tcp_port: int = 0):
        self.sc = sc
        self.clock = clock
        self.loads = loads
        self.host = host
        self.serial = list(serial or [])
        self.tcp_port = tcp_port
        self.units: dict[str, object] = {}
        self.servers: dict[str, object] = {}
        self.links: dict[str, object] = {}
        self.gateways: dict[str, object] = {}
        self.endpoints: dict[str, dict] = {}  # bus -> where a master connects
        self._active: set[int] = set()

    async def start(self) -> None:
        from agent.profiles import load_profile
        from hil.meters import SimMeterServer, SimUnit

        serial = list(self.serial)
        for i, bus in enumerate(self.sc.buses):
            if bus.protocol == "dlt645":
                await self._start_dlt645(bus)
                continue
            units = []
            for m in self.sc.meters_on(bus.name):
                u = SimUnit(m.unit, load_profile(m.profile), self.loads[m.id], self.clock,
                            name=m.id)
                self.units[m.id] = u
                units.append(u)
            if bus.kind == "tcp":
                port = self.tcp_port + i if self.tcp_port else 0
                server = SimMeterServer(units, tcp=(self.host, port))
                await server.start()
                self.endpoints[bus.name] = {"kind": "tcp", "host": self.host,
                                            "port": server.port}
            elif serial:
                path = serial.pop(0)
                server = SimMeterServer(units, rtu=path, **_serial_kw(bus))
                await server.start()
                self.endpoints[bus.name] = {"kind": "rtu", "port": path,
                                            "parity": bus.parity}
            else:
                from hil.rs485 import LinkEmulator

                link = LinkEmulator(**_link_kw(bus))
                await link.start()
                self.links[bus.name] = link
                # A Linux pty refuses parity settings (EINVAL) and carries bytes, not
                # bits: both ends open it 8N1 while the emulator paces the wire with the
                # bus's real character length (11 bits for 8E1).
                kw = dict(_serial_kw(bus), parity="N")
                server = SimMeterServer(units, rtu=link.device_port, **kw)
                await server.start()
                self.endpoints[bus.name] = {"kind": "rtu", "port": link.master_port,
                                            "parity": "N"}
            self.servers[bus.name] = server

    async def _start_dlt645(self, bus) -> None:
        """A DL/T 645 line: simulated meters behind the link emulator (paced at the bus's
        baud rate), reached on its pty or through a transparent TCP gateway."""
        from agent.profiles import load_profile
        from hil.dlt645 import Dlt645Line, SimDlt645Meter, TransparentGateway
        from hil.rs485 import LinkEmulator

        if self.serial:
            raise RuntimeError("DL/T 645 lines run on the link emulator only (no --serial)")
        meters = []
        for m in self.sc.meters_on(bus.name):
            meter = SimDlt645Meter(m.address, load_profile(m.profile), self.loads[m.id],
                                   self.clock, name=m.id)
            self.units[m.id] = meter
            meters.append(meter)
        link = LinkEmulator(framing="dlt645", **_link_kw(bus))
        await link.start()
        self.links[bus.name] = link
        line = Dlt645Line(meters, serial=link.device_port)
        await line.start()
        self.servers[bus.name] = line
        if bus.gateway:
            gw = TransparentGateway(link.master_port, host=self.host)
            await gw.start()
            self.gateways[bus.name] = gw
            self.endpoints[bus.name] = {"kind": "rtu-over-tcp", "host": self.host,
                                        "port": gw.port}
        else:
            self.endpoints[bus.name] = {"kind": "rtu", "port": link.master_port,
                                        "parity": "N"}

    async def stop(self) -> None:
        for gw in self.gateways.values():
            await gw.stop()
        self.gateways.clear()
        for server in self.servers.values():
            try:
                await server.stop()
            except Exception:  # keep stopping the rest
                pass
        for link in self.links.values():
            await link.stop()
        self.servers.clear()
        self.links.clear()

    # ------------------------------------------------------------- faults

    def apply_faults(self, t: float, broker_switch: Callable[[bool], None] | None) -> None:
        """Switch every fault on or off for simulated time ``t`` (edge-triggered)."""
        for i, f in enumerate(self.sc.faults):
            on = self.sc.start + f.from_day * DAY <= t < self.sc.start + f.to_day * DAY
            if on == (i in self._active):
                continue
            if on:
                self._active.add(i)
            else:
                self._active.discard(i)
            self._switch(f, on, broker_switch)

    def _switch(self, f: FaultSpec, on: bool,
                broker_switch: Callable[[bool], None] | None) -> None:
        if f.kind == "broker_down":
            if broker_switch is not None:
                broker_switch(not on)
            return
        if f.kind == "crc":
            link = self.links.get(f.bus)
            if link is not None:
                link.set_fault("crc", rate=f.rate if on else 0.0)
            return
        if f.kind == "bus_gone":
            link = self.links.get(f.bus)
            if link is not None:
                link.set_fault("gone", on=on)
            return
        unit = self.units[f.meter]
        if f.kind == "dead":
            unit.set_fault("silent", on=on)
        elif f.kind == "exception" and getattr(unit, "address", ""):
            # a DL/T 645 meter's "exception" is an 0xD1 reply with that error byte
            unit.set_fault("error", on=on, rate=f.rate, code=f.code)
        elif f.kind == "exception":
            unit.set_fault("exception", rate=f.rate if on else 0.0, code=f.code)
        elif f.kind == "slow":
            unit.set_fault("slow", delay_ms=f.delay_ms if on else 0)

    def utilisation(self) -> dict[str, str]:
        out = {}
        for bus in self.sc.buses:
            link = self.links.get(bus.name)
            if link is not None:
                st = link.stats()
                out[bus.name] = "%s: %.1f%% busy, %d frames, %d bytes" % (
                    bus.describe(), 100.0 * st["utilisation"], st["frames"], st["bytes"])
            elif bus.kind == "tcp":
                out[bus.name] = "tcp: n/a (no shared medium)"
            else:
                out[bus.name] = "%s on %s: not measured (real port)" % (
                    bus.describe(), self.endpoints[bus.name]["port"])
        return out


def _serial_kw(bus) -> dict:
    return {"baudrate": bus.baud, "parity": bus.parity, "stopbits": bus.stopbits}


def _link_kw(bus) -> dict:
    return {"baud": bus.baud, "parity": bus.parity, "stopbits": bus.stopbits}


def agent_config(sc: Scenario, rig: Rig, broker_port: int, state_dir: str) -> str:
    """The agent's TOML for this rig: one [[buses]] per scenario bus, meters in order."""
    lines = [
        'site = "hil"', 'gateway = "%s"' % sc.name, "tz_offset_hours = %r" % sc.tz_hours,
        "state_dir = %s" % json.dumps(state_dir), "poll_s = %r" % sc.poll_s,
        "telemetry_every_s = %r" % sc.telemetry_every_s,
        "checkpoint_every_s = %r" % max(3600.0, sc.telemetry_every_s),
        "[broker]", 'host = "127.0.0.1"', "port = %d" % broker_port, "tls = false",
    ]
    for bus in sc.buses:
        ep = rig.endpoints[bus.name]
        lines += ["[[buses]]", 'name = "%s"' % bus.name, 'kind = "%s"' % ep["kind"]]
        if bus.protocol != "modbus":
            lines.append('protocol = "%s"' % bus.protocol)
        if ep["kind"] in ("tcp", "rtu-over-tcp"):
            lines += ['host = "%s"' % ep["host"], "port = %d" % ep["port"]]
        else:
            lines += ["port = %s" % json.dumps(ep["port"]), "baud = %d" % bus.baud,
                      'parity = "%s"' % ep["parity"], "stopbits = %d" % bus.stopbits]
        lines += ["timeout_ms = %d" % bus.timeout_ms, "retries = %d" % bus.retries,
                  "backoff_max_s = %r" % max(1.0, min(86400.0, 4 * sc.poll_s))]
    for m in sc.meters:
        where = 'address = "%s"' % m.address if m.address else "unit = %d" % m.unit
        lines += ["[[meters]]", 'id = "%s"' % m.id, 'bus = "%s"' % m.bus, where,
                  "profile = %s" % json.dumps(m.profile)]
        if m.quantities:
            lines.append("quantities = %s" % json.dumps(m.quantities))
    return "\n".join(lines) + "\n"


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
        obs = _Observer(sc)
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
                                                     _day(sc, clock.now())))
            say(broker_events[-1])
            pending.append(loop.run_in_executor(None, broker.start if up else broker.stop))

        last_day = -1
        while clock.now() < sc.end:
            if agent_task.done():
                agent_task.result()  # raises the agent's error
                raise RuntimeError("the agent stopped before the end of the timeline")
            rig.apply_faults(clock.now(), broker_switch)
            day = int(_day(sc, clock.now()))
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
        rep.sim_days = _day(sc, clock.now())
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
        if agent_task is not None and not agent_task.done():
            agent_task.cancel()
            await asyncio.gather(agent_task, return_exceptions=True)
        if recorder is not None:
            recorder.stop()
        if rig is not None:
            await rig.stop()
        await loop.run_in_executor(None, broker.close)
        shutil.rmtree(workdir, ignore_errors=True)


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


def _header(sc: Scenario, rep: Report, obs: _Observer, data_dir: Path | None,
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
        extra = [_appliance(sc, m, spec, i).description + _days(spec)
                 for i, spec in enumerate(m.appliances)]
        if m.miner is not None:
            extra.append("MINER " + _miner(sc, m, m.miner, sc.start).description
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
