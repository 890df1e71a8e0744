"""Two meters behind a server that accepts one TCP connection (issue 13 item 6).

Cheap Modbus TCP meters and RS-485 gateways serve one connection: a second one is closed
at once. With several connections per host by default, two meters behind such a server
lost 40-100 % of their polls and flapped. The default is now one connection per host;
the config can still raise it for a host that serves several.
"""

from __future__ import annotations

import asyncio
import contextlib

from pollkit import sweep
from tcpkit import LoopbackServer

from agent.clock import Clock
from agent.config import load_text
from agent.modbus.poller import BusPoller
from agent.model import RawPoll
from agent.profiles import load_profile
from hil.loads.base import Constant
from hil.meters import SimMeterServer, SimUnit

CYCLES = 8


class OneConnectionGateway(LoopbackServer):
    """A real TCP front for a real pymodbus server that, like a cheap gateway, serves one
    client at a time and closes any other connection as soon as it opens."""

    def __init__(self, target_port: int):
        super().__init__()
        self.target_port = target_port
        self.busy = False
        self.refused = 0

    async def handle(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        if self.busy:
            self.refused += 1
            return
        self.busy = True
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                    while data := await src.read(512):
                        dst.write(data)
                        await dst.drain()
                dst.close()

            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        finally:
            self.busy = False


def _plan(port: int, extra: str = ""):
    text = ('site = "s"\ngateway = "g"\npoll_s = 1\n[broker]\nhost = "127.0.0.1"\n'
            '[[buses]]\nname = "b"\nkind = "tcp"\nhost = "127.0.0.1"\nport = %d\n'
            "timeout_ms = 500\n%s\n" % (port, extra))
    for unit in (1, 2):
        text += ('[[meters]]\nid = "m%d"\nbus = "b"\nunit = %d\nprofile = "sdm120"\n'
                 'quantities = ["p_w"]\n' % (unit, unit))
    return load_text(text, "t.toml")


async def _polls(port: int, extra: str = "") -> list[RawPoll]:
    got: list[RawPoll] = []
    poller = BusPoller(_plan(port, extra).buses[0], Clock(), got.append, lambda h: None)
    try:
        for _ in range(CYCLES):
            await sweep(poller, backoff=True)
    finally:
        poller.close()
        await asyncio.sleep(0.05)  # let the gateway see the close
    return got


def test_two_meters_behind_a_one_connection_gateway_lose_nothing(arun) -> None:
    async def main() -> None:
        clock = Clock()
        units = [SimUnit(u, load_profile("sdm120"), Constant(640.0, 0.97), clock) for u in (1, 2)]
        server = SimMeterServer(units, tcp=("127.0.0.1", 0))
        await server.start()
        gateway = OneConnectionGateway(server.port)
        await gateway.start()
        try:
            polls = await _polls(gateway.port)
            assert len(polls) == 2 * CYCLES
            assert all(p.ok for p in polls), [p.error for p in polls if not p.ok]
            assert gateway.refused == 0
            # A config that asks for more connections gets them (and here, loses polls).
            polls = await _polls(gateway.port, "per_host_limit = 2")
            assert gateway.refused > 0 and not all(p.ok for p in polls)
        finally:
            await gateway.stop()
            await server.stop()

    arun(main())
