"""Simulated meters: self-consistent physics, every profile encoded as its map says,
faults as a master sees them, TCP and RTU servers."""

from __future__ import annotations

import math

import pytest
from pollkit import FixedClock

from agent.clock import Clock
from agent.decode import decode_field
from agent.modbus.transport import Transport, TransportError
from agent.profiles import available_profiles, load_profile
from hil.loads.base import Constant
from hil.meters import SimMeterServer, SimUnit
from hil.rs485 import LinkEmulator


def test_values_are_self_consistent() -> None:
    clock = FixedClock(1_700_000_000.0)
    u = SimUnit(3, load_profile("sdm630"), Constant(2400.0, 0.8), clock)
    v = u.values()
    assert v["p_w"] == pytest.approx(2400.0)
    assert v["s_va"] == pytest.approx(3000.0)
    assert v["q_var"] == pytest.approx(1800.0)
    assert v["pf"] == pytest.approx(0.8)
    assert sum(v["p_w_l%d" % k] for k in (1, 2, 3)) == pytest.approx(2400.0)
    for k in (1, 2, 3):
        assert v["v_v_l%d" % k] * v["i_a_l%d" % k] == pytest.approx(v["s_va_l%d" % k])
        assert 220 < v["v_v_l%d" % k] < 240
    assert v["i_a"] == pytest.approx(sum(v["i_a_l%d" % k] for k in (1, 2, 3)))
    assert 49.9 < v["f_hz"] < 50.1
    single = SimUnit(4, load_profile("sdm120"), Constant(1000.0, 1.0), clock).values()
    assert single["v_v"] * single["i_a"] == pytest.approx(1000.0)


def test_energy_integrates_power_over_clock_time() -> None:
    clock = FixedClock(1_700_000_040.0)
    u = SimUnit(1, load_profile("sdm120"), Constant(3600.0, 1.0), clock,
                energy_start_kwh=100.0)
    e0 = u.values()["e_import_kwh"]
    clock.t += 3600.0
    e1 = u.values()["e_import_kwh"]
    assert e1 - e0 == pytest.approx(3.6, rel=1e-9)
    # The counter does not depend on when (or whether) it was read in between.
    other = SimUnit(1, load_profile("sdm120"), Constant(3600.0, 1.0), clock,
                    energy_start_kwh=100.0)
    assert other.values()["e_import_kwh"] == pytest.approx(e1)
    # A reset restarts the counter at zero, every time.
    for _ in range(2):
        clock.t += 600.0
        u.set_fault("reset")
        assert u.values()["e_import_kwh"] == pytest.approx(0.0, abs=1e-9)
    clock.t += 3600.0
    assert u.values()["e_import_kwh"] == pytest.approx(3.6)


@pytest.mark.parametrize("name", available_profiles("modbus"))
def test_registers_encode_the_profile(name: str) -> None:
    """The served registers decode (with the profile's own types) to the values."""
    profile = load_profile(name)
    u = SimUnit(1, profile, Constant(1234.5, 0.93), FixedClock(1_700_000_000.0))
    values = u.values()
    for f in profile.quantities.values():
        regs = u.registers(f.fc, f.address, f.size)
        assert isinstance(regs, list), f.name
        got = decode_field(f, regs)
        want = values[f.name]
        # float32 keeps ~7 digits; integer types keep one step of their scale.
        tol = abs(want) * 1e-6 + (abs(f.scale) if f.type != "float32" else 1e-6)
        assert abs(got - want) <= tol, (f.name, got, want)
    # Outside the map: exception 2, as a real meter answers.
    assert int(u.registers(profile.quantities["p_w"].fc, 0xFF00, 2)) == 2


def test_tcp_server_faults_as_a_master_sees_them(arun) -> None:
    async def main() -> None:
        clock = Clock()
        units = [SimUnit(i, load_profile("sdm630"), Constant(500.0 * i, 0.9), clock)
                 for i in (1, 2)]
        server = SimMeterServer(units, tcp=("127.0.0.1", 0))
        await server.start()
        tr = Transport("tcp", host="127.0.0.1", port=server.port, timeout_s=0.3)
        try:
            regs = await tr.read(2, 4, 0x34, 2)
            assert decode_field(load_profile("sdm630").quantities["p_w"], regs) == 1000.0
            server.unit(2).set_fault("exception", rate=1.0, code=6)
            with pytest.raises(TransportError) as e:
                await tr.read(2, 4, 0x34, 2)
            assert e.value.kind == "exception" and e.value.exception_code == 6
            server.unit(2).set_fault("exception", on=False)
            server.unit(2).set_fault("silent", on=True)
            with pytest.raises(TransportError) as e:
                await tr.read(2, 4, 0x34, 2)
            assert e.value.kind == "timeout"
            # The other unit on the same connection is unaffected.
            assert len(await tr.read(1, 4, 0x34, 2)) == 2
            server.unit(1).set_fault("garbage", on=True)
            regs = await tr.read(1, 4, 0x34, 2)
            assert math.isnan(decode_field(load_profile("sdm630").quantities["p_w"], regs))
            server.unit(1).set_fault("garbage", on=False)
            server.unit(1).set_fault("slow", delay_ms=400)
            with pytest.raises(TransportError) as e:
                await tr.read(1, 4, 0x34, 2)
            assert e.value.kind == "timeout"
        finally:
            tr.close()
            await server.stop()

    arun(main())


def test_rtu_server_on_a_pty(arun) -> None:
    async def main() -> None:
        clock = Clock()
        link = LinkEmulator(baud=38400)
        await link.start()
        units = [SimUnit(7, load_profile("em24"), Constant(800.0, 0.95), clock)]
        server = SimMeterServer(units, rtu=link.device_port, baudrate=38400)
        await server.start()
        tr = Transport("rtu", port=link.master_port, baud=38400, timeout_s=0.3)
        try:
            p = load_profile("em24").quantities["p_w"]
            regs = await tr.read(7, 4, p.address, 2)
            assert decode_field(p, regs) == pytest.approx(800.0)
            with pytest.raises(TransportError) as e:  # no unit 8 on this bus
                await tr.read(8, 4, p.address, 2)
            assert e.value.kind == "timeout"
        finally:
            tr.close()
            await server.stop()
            await link.stop()

    arun(main())
