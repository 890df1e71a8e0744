"""A DL/T 645 line for tests: simulated meters behind the RS-485 link emulator (paced
2400 8E1 on real ptys), optionally behind a transparent TCP gateway, and the agent's
config for it. Shared by tests/dlt and tests/faults/test_dlt645_*.py."""

from __future__ import annotations

from pollkit import FixedClock

from agent.clock import Clock
from agent.config import load_text
from agent.profiles import load_profile
from hil.dlt645 import Dlt645Line, SimDlt645Meter, TransparentGateway
from hil.loads.base import Constant
from hil.rs485 import LinkEmulator


def address(i: int) -> str:
    return "%012d" % (12340000 + i)


def agent_config(bus: str, meters: list[tuple[str, str]], meter_extra: str = "") -> str:
    out = ('site = "s"\ngateway = "g"\npoll_s = 10\n[broker]\nhost = "127.0.0.1"\n'
           '[[buses]]\nname = "b"\nprotocol = "dlt645"\n' + bus + "\n")
    for addr, profile in meters:
        out += ('[[meters]]\nid = "m%s"\nbus = "b"\naddress = "%s"\nprofile = "%s"\n%s\n'
                % (addr[-4:], addr, profile, meter_extra))
    return out


class Rig:
    """``async with Rig(n, gateway=True) as rig``: rig.plan, rig.line, rig.link."""

    def __init__(self, n: int, profile: str = "dlt645_single", gateway: bool = False,
                 baud: int = 2400, timeout_ms: int = 600, retries: int = 1,
                 clock: object | None = None, meter_extra: str = ""):
        self.n = n
        self.profile = profile
        self.gateway_on = gateway
        self.baud = baud
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.meter_clock = clock if clock is not None else FixedClock(1_700_000_000.0)
        self.meter_extra = meter_extra
        self.clock = Clock()
        self.link: LinkEmulator | None = None
        self.line: Dlt645Line | None = None
        self.gateway: TransparentGateway | None = None

    async def __aenter__(self) -> Rig:
        self.link = LinkEmulator(baud=self.baud, parity="E", framing="dlt645")
        await self.link.start()
        prof = load_profile(self.profile)
        self.meters = [SimDlt645Meter(address(i), prof, Constant(300.0 + 100 * i, 0.93),
                                      self.meter_clock) for i in range(1, self.n + 1)]
        self.line = Dlt645Line(self.meters, serial=self.link.device_port)
        await self.line.start()
        common = "timeout_ms = %d\nretries = %d" % (self.timeout_ms, self.retries)
        if self.gateway_on:
            self.gateway = TransparentGateway(self.link.master_port)
            await self.gateway.start()
            bus = 'kind = "rtu-over-tcp"\nhost = "127.0.0.1"\nport = %d\n%s' % (
                self.gateway.port, common)
        else:
            # A pty refuses parity settings: the agent opens it 8N1 while the emulator
            # paces the wire at the line's real 11-bit 8E1 characters.
            bus = 'kind = "rtu"\nport = "%s"\nbaud = %d\nparity = "N"\n%s' % (
                self.link.master_port, self.baud, common)
        self.plan = load_text(agent_config(bus, [(m.address, self.profile)
                                                 for m in self.meters], self.meter_extra),
                              "t.toml")
        return self

    def meter(self, i: int) -> SimDlt645Meter:
        return self.meters[i - 1]

    async def __aexit__(self, *exc: object) -> None:
        if self.gateway is not None:
            await self.gateway.stop()
        if self.line is not None:
            await self.line.stop()
        if self.link is not None:
            await self.link.stop()
