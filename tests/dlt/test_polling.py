"""DL/T 645 polling on the shared bus scheduler: over a paced pty at 2400 8E1 and through
a transparent TCP gateway, values in = values out; a dead meter is isolated and backed off
while the others keep their pace."""

from __future__ import annotations

from pollkit import Collector, polling, sweep

from agent.decode import Decoder
from agent.model import Q_TIMEOUT

from .rig import Rig


def _check_values(rig: Rig, got: Collector) -> None:
    assert len(got.polls) == rig.n
    for raw in got.polls:
        assert raw.ok, raw.error
        m = next(m for m in rig.plan.meters if m.id == raw.meter)
        want = rig.line.meter(m.address).values()
        reading = Decoder(m).decode(raw)
        assert reading.quality == 0, reading
        assert set(reading.values) == set(m.quantities)
        for name, value in reading.values.items():
            f = m.profile.quantities[name]
            step = f.scale / 10 ** f.decimals  # one BCD digit
            assert abs(value - want.get(name, want.get(name[:-3]))) <= step, (name, value)
        assert got.health[m.id].state == "ok"


def test_values_in_values_out_over_a_paced_pty(arun) -> None:
    async def main() -> None:
        async with Rig(3) as rig:
            async with polling(rig.plan.buses[0], rig.clock) as (poller, got):
                await sweep(poller)
            _check_values(rig, got)
            # Each of the 7 quantities is one DI read: 7 round trips per meter, paced.
            assert rig.link.stats()["frames"] == 2 * 7 * 3
            assert rig.line.frames == 7 * 3

    arun(main())


def test_three_phase_block_reads_through_a_transparent_gateway(arun) -> None:
    async def main() -> None:
        async with Rig(2, profile="dlt645_three", gateway=True,
                       meter_extra='quantities = "all"') as rig:
            async with polling(rig.plan.buses[0], rig.clock) as (poller, got):
                await sweep(poller)
            _check_values(rig, got)
            m = rig.plan.meters[0]
            # 5 blocks + f_hz + 5 energies instead of 24 single reads
            assert len(m.requests) == 11
            assert rig.gateway.bytes_down > 0 and rig.gateway.bytes_up > 0

    arun(main())


def test_dead_meter_is_isolated_and_backed_off(arun) -> None:
    async def main() -> None:
        # One quantity per meter keeps a sweep (~1 s at 2400 baud) inside the first
        # back-off period (2 s), so the next sweep must skip the dead meter.
        async with Rig(4, timeout_ms=300, meter_extra='quantities = ["p_w"]') as rig:
            async with polling(rig.plan.buses[0], rig.clock) as (poller, got):
                await sweep(poller)
                healthy = await sweep(poller)
                rig.meter(2).set_fault("silent")
                got.polls.clear()
                await sweep(poller)
                dead = next(p for p in got.polls if not p.ok)
                h = got.health[dead.meter]
                assert dead.meter == rig.plan.meters[1].id and dead.error_kind == "timeout"
                assert "no answer" in h.last_error and rig.meter(2).address in h.last_error
                assert h.state == "down" and h.backoff_s >= 2.0
                assert "12-digit address" in h.hint and "unit id" not in h.hint, h.hint
                assert Decoder(rig.plan.meters[1]).decode(dead).quality & Q_TIMEOUT
                assert sum(p.ok for p in got.polls) == 3
                got.polls.clear()
                during = await sweep(poller)
                assert len(got.polls) == 3 and all(p.ok for p in got.polls)
                assert during <= healthy, (during, healthy)

    arun(main())
