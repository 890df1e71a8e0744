"""Cross-check against an independent DL/T 645 implementation: the PyPI package
``dlt645`` (Apache-2.0, a dev/test dependency only, never in the agent's path).

* Its slave is a second simulator: the agent's poller reads it over a paced 2400-baud pty
  and must decode exactly the values it was given.
* Its master reads Loadwatch's simulated meters through the transparent gateway.

Known quirks of that package, handled here and not in the agent: it takes a meter's
address as the *wire-order* digit string (``"785634120000"`` for meter 000012345678;
the printed order would be sent backwards), and its slave answers frames addressed to any
meter, so each of its meters gets a pty of its own (``one_meter_line``).
"""

from __future__ import annotations

import asyncio

import dlt645  # the dev extra installs it (setup.cfg); a missing package fails here
import pytest
from pollkit import polling

from agent.clock import Clock
from agent.config import load_text
from agent.decode import Decoder
from agent.dlt645.transport import Dlt645Transport
from agent.link import TransportError
from hil.rs485 import LinkEmulator

from .rig import Rig, agent_config

# Cross-checks against another DL/T 645 implementation over real links: `make test` only.
pytestmark = pytest.mark.slow

ADDRESS = "000012345678"


def wire_order(address: str) -> str:
    """The digit string the package wants: the address's bytes low byte first."""
    return "".join(address[i:i + 2] for i in range(10, -1, -2))


VALUES = {  # DI -> value as set on the package's slave (its own units: kW, V, A, kWh)
    0x02030000: 1.2345, 0x02010100: 229.8, 0x02020100: 5.321, 0x02060000: 0.931,
    0x02800002: 50.01, 0x00010000: 1234.56,
}
EXPECTED = {"p_w": 1234.5, "v_v": 229.8, "i_a": 5.321, "pf": 0.931, "f_hz": 50.01,
            "e_import_kwh": 1234.56}


def test_package_is_installed_by_the_dev_extra() -> None:
    assert dlt645.__version__ >= "3.2"


def test_wire_order_address() -> None:
    assert wire_order("000012345678") == "785634120000"


def test_our_poller_reads_the_packages_slave_on_a_paced_pty(arun) -> None:
    async def main() -> None:
        link = LinkEmulator(baud=2400, parity="E", framing="dlt645")
        await link.start()
        # one pty for this one meter: the package's slave answers every address
        slave = dlt645.MeterServerService.new_rtu_server(link.device_port, 8, 1, 2400, "N",
                                                         1.0)
        slave.set_address(wire_order(ADDRESS))
        for di, v in VALUES.items():
            assert (slave.set_00 if di >> 24 == 0 else slave.set_02)(di, v)
        assert slave.server.start()
        try:
            plan = load_text(agent_config(
                'kind = "rtu"\nport = "%s"\nparity = "N"\ntimeout_ms = 1500' % link.master_port,
                [(ADDRESS, "dlt645_single")],
                'quantities = ["p_w", "v_v", "i_a", "pf", "f_hz", "e_import_kwh"]'), "x.toml")
            async with polling(plan.buses[0], Clock()) as (poller, got):
                await poller.run_cycle()
                raw = got.polls[0]
                assert raw.ok, raw.error
                reading = Decoder(plan.meters[0]).decode(raw)
                assert reading.quality == 0
                assert reading.values == pytest.approx(EXPECTED, abs=1e-9)
                # The package's slave answers a frame for another meter too, where a real
                # meter stays silent: that is why each of its meters needs its own pty.
                tr = poller.transports[0]
                with pytest.raises(TransportError) as e:
                    await tr.read_item("000012345679", 0x02030000, 1.5)
                assert e.value.kind != "timeout", e.value
        finally:
            await asyncio.to_thread(slave.server.stop)
            await link.stop()

    arun(main())


def test_the_packages_master_reads_our_meters_through_the_gateway(arun) -> None:
    async def main() -> None:
        async with Rig(3, gateway=True) as rig:
            want = rig.meter(2).values()
            port = rig.gateway.port

            def master() -> dict:
                c = dlt645.MeterClientService.new_tcp_client("127.0.0.1", port, 3.0)
                assert c.connect()
                try:
                    assert c.set_address(wire_order(rig.meter(2).address))
                    return {"p_w": c.read_02(0x02030000).value * 1000.0,
                            "v_v": c.read_02(0x02010100).value,
                            "e_import_kwh": c.read_00(0x00010000).value}
                finally:
                    c.disconnect()

            got = await asyncio.to_thread(master)
        assert got["p_w"] == pytest.approx(want["p_w"], abs=0.1)
        assert got["v_v"] == pytest.approx(want["v_v"], abs=0.1)
        assert got["e_import_kwh"] == pytest.approx(want["e_import_kwh"], abs=0.01)

    arun(main())


def test_the_packages_master_finds_our_lone_meter_by_broadcast(arun) -> None:
    async def main() -> None:
        async with Rig(1, gateway=True) as rig:
            port = rig.gateway.port

            def master():
                c = dlt645.MeterClientService.new_tcp_client("127.0.0.1", port, 3.0)
                assert c.connect()
                try:
                    return c.read_address()
                finally:
                    c.disconnect()

            item = await asyncio.to_thread(master)
        # the package reports the address as it came off the wire (low byte first)
        assert item is not None
        assert wire_order(rig.meter(1).address) in str(item.value).replace(" ", "")

    arun(main())


def test_our_transport_reads_the_packages_slave_over_tcp(arun) -> None:
    """The package's TCP slave as a transparent gateway with one meter behind it."""

    async def main() -> None:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        slave = dlt645.MeterServerService.new_tcp_server("127.0.0.1", port, 1.0)
        slave.set_address(wire_order(ADDRESS))
        slave.set_02(0x02030000, -0.5)  # export: the sign bit
        assert slave.server.start()
        tr = Dlt645Transport("rtu-over-tcp", host="127.0.0.1", port=port, timeout_s=2.0)
        try:
            data = await tr.read_item(ADDRESS, 0x02030000)
            assert data == bytes((0x00, 0x50, 0x80))
            assert await tr.read_address() == ADDRESS
        finally:
            tr.close()
            await asyncio.to_thread(slave.server.stop)

    arun(main())
