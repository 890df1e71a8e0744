"""The rig: the scenario's simulated meters on their buses (pymodbus TCP servers, RTU
servers behind the RS-485 link emulator on ptys, DL/T 645 lines behind a transparent
gateway), and the faults switched on and off on the timeline."""

from __future__ import annotations

from typing import Callable

from agent.clock import Clock
from hil.scenario import DAY, FaultSpec, Scenario


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
