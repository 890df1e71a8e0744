"""Pollers against real pymodbus servers: TCP, RTU through the RS-485 link emulator on real
ptys, and RTU-over-TCP. Values in = values out for every profile; a dead meter among 16
costs the bus at most its timeouts once per back-off period; CRC noise and exception
replies are flagged; a vanished port is reconnected; per-host limits and pauses hold."""

from __future__ import annotations

import asyncio
import time

import pytest
from pollkit import Collector, FixedClock, sweep

from agent.clock import Clock
from agent.config import load_text
from agent.decode import Decoder
from agent.modbus.poller import BusPoller
from agent.model import Q_CRC, Q_EXCEPTION, Q_TIMEOUT
from agent.profiles import available_profiles, load_profile
from hil.loads.base import Constant
from hil.meters import SimMeterServer, SimUnit
from hil.rs485 import LinkEmulator


def config(bus: str, meters: list[tuple[int, str]], extra: str = "",
           meter_extra: str = "") -> str:
    out = ('site = "s"\ngateway = "g"\npoll_s = 10\n[broker]\nhost = "127.0.0.1"\n'
           "[[buses]]\n" + bus + "\n")
    for unit, profile in meters:
        out += ('[[meters]]\nid = "m%d"\nbus = "b"\nunit = %d\nprofile = "%s"\n%s\n'
                % (unit, unit, profile, meter_extra))
    return out + extra


def test_every_profile_values_in_values_out_over_tcp(arun) -> None:
    names = available_profiles("modbus")

    async def main() -> None:
        meter_clock = FixedClock(1_700_000_000.0)
        units = [SimUnit(i + 1, load_profile(n), Constant(700.0 + 111 * i, 0.87),
                         meter_clock) for i, n in enumerate(names)]
        server = SimMeterServer(units, tcp=("127.0.0.1", 0))
        await server.start()
        plan = load_text(config('name = "b"\nkind = "tcp"\nhost = "127.0.0.1"\nport = %d'
                                % server.port,
                                [(u.unit_id, u.profile.name) for u in units],
                                meter_extra='quantities = "all"'), "t.toml")
        got = Collector()
        poller = BusPoller(plan.buses[0], Clock(), got.on_poll, got.on_health)
        try:
            await poller.run_cycle()
        finally:
            poller.close()
            await server.stop()
        assert len(got.polls) == len(names)
        for raw in got.polls:
            assert raw.ok, raw.error
            m = next(m for m in plan.meters if m.id == raw.meter)
            unit = server.unit(m.unit)
            want = unit.values()
            reading = Decoder(m).decode(raw)
            assert reading.quality == 0, (m.profile.name, reading.quality)
            assert set(reading.values) == set(m.profile.quantities)
            for name, value in reading.values.items():
                f = m.profile.quantities[name]
                tol = abs(want[name]) * 1e-6 + (f.scale if f.type != "float32" else 1e-6)
                assert abs(value - want[name]) <= tol, (m.profile.name, name, value)
            assert got.health[m.id].state == "ok"

    arun(main())


async def _rtu_rig(n: int, baud: int = 38400, timeout_ms: int = 100, retries: int = 1):
    link = LinkEmulator(baud=baud)
    await link.start()
    clock = Clock()
    units = [SimUnit(i, load_profile("sdm630"), Constant(400.0 + 50 * i, 0.9), clock)
             for i in range(1, n + 1)]
    server = SimMeterServer(units, rtu=link.device_port, baudrate=baud)
    await server.start()
    plan = load_text(config('name = "b"\nkind = "rtu"\nport = "%s"\nbaud = %d\n'
                            "timeout_ms = %d\nretries = %d"
                            % (link.master_port, baud, timeout_ms, retries),
                            [(u.unit_id, "sdm630") for u in units]), "t.toml")
    return link, server, plan, clock


@pytest.mark.serial  # wall-clock timing: run alone, after the parallel part
def test_rtu_cycle_is_within_10_percent_of_the_baud_arithmetic(arun) -> None:
    """4 meters at 9600 baud: the cycle is the frames' wire time plus the silences."""

    async def main() -> None:
        link, server, plan, clock = await _rtu_rig(4, baud=9600, timeout_ms=500)
        poller = BusPoller(plan.buses[0], clock, lambda raw: None, lambda h: None)
        try:
            await sweep(poller)
            took = min([await sweep(poller) for _ in range(2)])
        finally:
            poller.close()
            await server.stop()
            await link.stop()
        char = 10 / 9600
        frames = sum((8 + 5 + 2 * r.count) * char for m in plan.meters for r in m.requests)
        silences = sum(link.turnaround + link.gap_time for m in plan.meters
                       for _ in m.requests)
        wire = frames + silences
        assert 0.9 * wire <= took <= 1.1 * wire, (took, wire)

    arun(main())


@pytest.mark.serial  # wall-clock timing: run alone, after the parallel part
def test_dead_meter_among_16_costs_one_timeout_per_backoff_period(arun) -> None:
    async def main() -> None:
        link, server, plan, clock = await _rtu_rig(16)
        got = Collector()
        poller = BusPoller(plan.buses[0], clock, got.on_poll, got.on_health)
        timeout = plan.buses[0].timeout_s
        try:
            await sweep(poller)  # open the port
            healthy = min([await sweep(poller) for _ in range(2)])
            server.unit(5).set_fault("silent", on=True)
            got.polls.clear()
            first = await sweep(poller)  # detection: 1 try + 1 retry
            assert [p.meter for p in got.polls if not p.ok] == ["m5"]
            h = got.health["m5"]
            assert h.state == "down" and h.backoff_s >= 2.0 and h.errors["timeout"] == 1
            assert all(got.health["m%d" % i].state == "ok" for i in range(1, 17) if i != 5)
            assert first <= 1.2 * healthy + 2 * timeout + 0.1, (first, healthy)
            # While it backs off, the bus runs at full speed without it.
            got.polls.clear()
            during = await sweep(poller)
            assert "m5" not in [p.meter for p in got.polls] and len(got.polls) == 15
            assert during <= 1.2 * healthy + 0.05, (during, healthy)
            # When its back-off expires it gets one probe: one timeout, no retry.
            poller.meters["m5"].retry_at = 0.0
            probe = await sweep(poller)
            assert during + 0.5 * timeout <= probe <= 1.2 * healthy + timeout + 0.1, (probe, during)
            assert got.health["m5"].backoff_s >= 4.0  # doubled
            # It comes back: polled normally and healthy again.
            server.unit(5).set_fault("silent", on=False)
            poller.meters["m5"].retry_at = 0.0
            got.polls.clear()
            await sweep(poller)
            assert all(p.ok for p in got.polls) and len(got.polls) == 16
            assert got.health["m5"].state == "ok" and got.health["m5"].backoff_s == 0.0
        finally:
            poller.close()
            await server.stop()
            await link.stop()

    arun(main())


def test_crc_noise_and_exception_replies_are_flagged_not_scored(arun) -> None:
    async def main() -> None:
        link, server, plan, clock = await _rtu_rig(3)
        got = Collector()
        poller = BusPoller(plan.buses[0], clock, got.on_poll, got.on_health)
        decoders = {m.id: Decoder(m) for m in plan.meters}
        try:
            await sweep(poller)
            link.set_fault("crc", rate=1.0)
            got.polls.clear()
            await sweep(poller)
            readings = [decoders[p.meter].decode(p) for p in got.polls]
            assert all(r.quality & Q_CRC and not r.scorable for r in readings)
            assert got.health["m1"].errors.get("crc") == 1
            link.set_fault("crc", on=False)
            for st in poller.meters.values():
                st.retry_at = 0.0
            link.set_fault("exception", unit=2, code=2, rate=1.0)
            got.polls.clear()
            await sweep(poller)
            by = {p.meter: p for p in got.polls}
            assert by["m1"].ok and by["m3"].ok
            assert by["m2"].error_kind == "exception" and by["m2"].exception_code == 2
            r = decoders["m2"].decode(by["m2"])
            assert r.quality & Q_EXCEPTION and not r.scorable
            assert got.health["m2"].state == "degraded"  # it answers: not backed off
        finally:
            poller.close()
            await server.stop()
            await link.stop()

    arun(main())


def test_port_that_vanishes_and_returns_is_reconnected(arun) -> None:
    async def main() -> None:
        link, server, plan, clock = await _rtu_rig(2)
        got = Collector()
        poller = BusPoller(plan.buses[0], clock, got.on_poll, got.on_health)
        try:
            await sweep(poller)
            assert all(p.ok for p in got.polls)
            link.set_fault("gone", on=True)
            await asyncio.sleep(0.05)
            got.polls.clear()
            await sweep(poller)
            assert [p.error_kind for p in got.polls] == ["io", "io"]
            assert all(Decoder(m).decode(p).quality & Q_TIMEOUT
                       for m, p in zip(plan.meters, got.polls))
            assert got.health["m1"].state == "down"
            link.set_fault("gone", on=False)
            await asyncio.sleep(0.6)  # the reconnect back-off starts at 0.5 s
            got.polls.clear()
            await sweep(poller)
            assert [p.ok for p in got.polls] == [True, True], [p.error for p in got.polls]
            assert got.health["m2"].state == "ok"
        finally:
            poller.close()
            await server.stop()
            await link.stop()

    arun(main())


def test_tcp_meters_poll_concurrently_within_the_per_host_limit(arun) -> None:
    async def main() -> None:
        clock = Clock()
        units = [SimUnit(i, load_profile("sdm120"), Constant(300.0, 1.0), clock)
                 for i in range(1, 9)]
        for u in units:
            u.set_fault("slow", delay_ms=100)
        server = SimMeterServer(units, tcp=("127.0.0.1", 0))
        await server.start()
        plan = load_text(config('name = "b"\nkind = "tcp"\nhost = "127.0.0.1"\nport = %d\n'
                                "per_host_limit = 4" % server.port,
                                [(u.unit_id, "sdm120") for u in units],
                                meter_extra='quantities = ["p_w"]'), "t.toml")
        got = Collector()
        poller = BusPoller(plan.buses[0], clock, got.on_poll, got.on_health)
        try:
            took = await sweep(poller)
        finally:
            poller.close()
            await server.stop()
        assert all(p.ok for p in got.polls) and len(got.polls) == 8
        # 8 meters x 100 ms, 4 at a time: two waves, not one and not eight.
        assert 0.19 <= took < 0.5, took

    arun(main())


def test_pause_and_per_meter_timeout_quirks(arun) -> None:
    async def main() -> None:
        clock = Clock()
        units = [SimUnit(1, load_profile("sdm120"), Constant(300.0, 1.0), clock),
                 SimUnit(2, load_profile("sdm120"), Constant(300.0, 1.0), clock)]
        units[1].set_fault("silent", on=True)
        server = SimMeterServer(units, tcp=("127.0.0.1", 0))
        await server.start()
        plan = load_text(config('name = "b"\nkind = "tcp"\nhost = "127.0.0.1"\nport = %d\n'
                                "timeout_ms = 3000\nretries = 0" % server.port,
                                [(1, "sdm120"), (2, "sdm120")],
                                meter_extra="[meters.quirks]\npause_ms = 80\n"
                                            "timeout_ms = 60"), "t.toml")
        assert len(plan.meters[0].requests) == 2
        got = Collector()
        poller = BusPoller(plan.buses[0], clock, got.on_poll, got.on_health)
        try:
            t0 = time.monotonic()
            ok = await poller.poll_now("m1")
            paused = time.monotonic() - t0
            t0 = time.monotonic()
            dead = await poller.poll_now("m2")
            timed_out = time.monotonic() - t0
        finally:
            poller.close()
            await server.stop()
        assert ok.ok and len(ok.blocks) == 2 and paused >= 0.08
        assert dead.error_kind == "timeout" and timed_out < 1.0  # the meter's 60 ms, not 3 s

    arun(main())


@pytest.mark.serial  # wall-clock timing: run alone, after the parallel part
def test_run_on_a_simulated_clock_and_rtu_over_tcp(arun) -> None:
    async def main() -> None:
        clock = Clock(speed=100.0)
        units = [SimUnit(i, load_profile("sdm630"), Constant(900.0, 0.9), clock)
                 for i in (1, 2)]
        server = SimMeterServer(units, tcp=("127.0.0.1", 0), framer="rtu")
        await server.start()
        plan = load_text(config('name = "b"\nkind = "rtu-over-tcp"\nhost = "127.0.0.1"\n'
                                "port = %d" % server.port, [(1, "sdm630"), (2, "sdm630")]),
                         "t.toml")
        got = Collector()
        poller = BusPoller(plan.buses[0], clock, got.on_poll, got.on_health)
        task = asyncio.create_task(poller.run())
        await asyncio.sleep(0.55)  # 55 simulated seconds at poll_s = 10
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()
        per_meter = [p for p in got.polls if p.meter == "m1"]
        # About 6 polls; fewer only when a loaded machine delays the loop, never more.
        assert 3 <= len(per_meter) <= 7, len(per_meter)
        assert all(p.ok for p in got.polls)
        gaps = [b.t - a.t for a, b in zip(per_meter, per_meter[1:])]
        assert all(g >= 9.0 for g in gaps), gaps  # never more often than poll_s
        assert not poller.transports[0].connected  # closed on cancel

    arun(main())


def test_tcp_host_that_goes_away_and_returns_is_reconnected(arun) -> None:
    async def main() -> None:
        clock = Clock()
        units = [SimUnit(1, load_profile("sdm630"), Constant(900.0, 0.9), clock)]
        server = SimMeterServer(units, tcp=("127.0.0.1", 0))
        await server.start()
        port = server.port
        plan = load_text(config('name = "b"\nkind = "tcp"\nhost = "127.0.0.1"\nport = %d\n'
                                "timeout_ms = 300" % port, [(1, "sdm630")]), "t.toml")
        got = Collector()
        poller = BusPoller(plan.buses[0], clock, got.on_poll, got.on_health)
        try:
            await sweep(poller)
            assert got.polls[-1].ok
            await server.stop()  # the gateway reboots
            await asyncio.sleep(0.05)
            await sweep(poller)
            assert got.polls[-1].error_kind == "io", got.polls[-1].error
            assert got.health["m1"].state == "down"
            server = SimMeterServer(units, tcp=("127.0.0.1", port))
            await server.start()
            await asyncio.sleep(0.6)  # past the reconnect back-off
            await sweep(poller)
            assert got.polls[-1].ok, got.polls[-1].error
            assert got.health["m1"].state == "ok"
        finally:
            poller.close()
            await server.stop()

    arun(main())
