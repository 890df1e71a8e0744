"""Simulated meters: real pymodbus servers serving any profile from a load model.

``SimUnit(unit_id, profile, load, clock)`` is one meter: at every request it asks
``load.power(clock.now())`` for (P, PF) and serves a self-consistent electrical picture in
the profile's own encoding (function code, address, type, word order, scale; the inverse
of agent/decode.py): Q = P tan(acos PF), S = |P| / PF, per-phase V with a slow drift and
I = S / V, frequency near 50 Hz, and an import energy counter that integrates P over
clock time on a fixed 60 s grid (so it is the same whatever the poll times were).

``SimMeterServer(units, tcp=(host, port))`` or ``SimMeterServer(units, rtu=path,
baudrate=..., parity=..., stopbits=...)`` serves many units on one pymodbus server
(Modbus TCP, or RTU on a serial port or a pseudo-terminal such as the device end of
hil/rs485.py). ``await start()``, ``.port`` (the bound TCP port), ``await stop()``.

Faults, switched at run time by the hil scenarios and tests::

    unit.set_fault("silent", on=True)                 # never answers (dead meter)
    unit.set_fault("exception", rate=1.0, code=2)     # answers with a Modbus exception
    unit.set_fault("slow", delay_ms=300)              # answers late
    unit.set_fault("garbage", on=True)                # NaN / all-ones registers
    unit.set_fault("frozen", on=True)                 # repeats the last values forever
    unit.set_fault("reset", on=True)                  # energy counter restarts at zero

Reads outside the registers the profile maps answer exception 2 (illegal data address),
a function code the map does not use answers exception 1, as real meters do; registers
in small gaps between mapped ones read as zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from typing import Any

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from agent.decode import encode_field, family
from agent.profiles import Profile

ENERGY_STEP_S = 60.0
# Mapped registers closer than this are one readable region (gaps read as zero).
REGION_GAP = 64
NOMINAL_V = 230.0

for _name in ("pymodbus", "pymodbus.logging"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


class SimUnit:
    """One simulated meter: a profile, a load, a clock and switchable faults."""

    def __init__(self, unit_id: int, profile: Profile, load: Any, clock: Any, name: str = "",
                 energy_start_kwh: float | None = None, seed: int | None = None):
        if not 1 <= unit_id <= 247:
            raise ValueError("unit id must be 1..247, got %r" % unit_id)
        self.unit_id = unit_id
        self.profile = profile
        self.load = load
        self.clock = clock
        self.name = name or "unit%d" % unit_id
        self.three_phase = any(n.endswith("_l3") for n in profile.quantities)
        self.energy_start_kwh = (1000.0 + 37.0 * unit_id if energy_start_kwh is None
                                 else energy_start_kwh)
        self._rng = random.Random(seed if seed is not None else unit_id)
        # The integral starts at the clock's epoch (t0), so two units on one clock agree
        # whatever their poll times; without one, at the first read.
        self.energy_epoch: float | None = getattr(clock, "t0", None)
        self._e_t: float | None = None  # grid time the energy integral has reached
        self._e_kwh = 0.0
        self._e_base: float | None = None
        self.faults: dict[str, Any] = {"silent": False, "exception_rate": 0.0,
                                       "exception_code": 4, "delay_s": 0.0,
                                       "garbage": False, "frozen": False}
        self._frozen_values: dict[str, float] | None = None
        self.requests = 0
        self._regions = _regions(profile)

    # ---------------------------------------------------------------- faults

    def set_fault(self, kind: str, on: bool = True, rate: float = 1.0, code: int = 4,
                  delay_ms: float = 0.0) -> None:
        """Switch one fault (see the module docstring)."""
        if kind == "silent":
            self.faults["silent"] = bool(on)
        elif kind == "exception":
            self.faults["exception_rate"] = float(rate) if on else 0.0
            self.faults["exception_code"] = int(code)
        elif kind == "slow":
            self.faults["delay_s"] = max(0.0, float(delay_ms) / 1000.0) if on else 0.0
        elif kind == "garbage":
            self.faults["garbage"] = bool(on)
        elif kind == "frozen":
            self.faults["frozen"] = bool(on)
            self._frozen_values = None
        elif kind == "reset":
            if on:  # the counter restarts from zero now (meter replaced or reset)
                raw = self.energy_kwh(self.clock.now()) - (self._e_base or 0.0)
                self._e_base = -raw
        else:
            raise ValueError("unknown fault %r (silent|exception|slow|garbage|frozen|reset)"
                             % kind)

    # ---------------------------------------------------------------- physics

    def energy_kwh(self, t: float) -> float:
        """Import counter at ``t``: start + integral of max(P, 0) on a 60 s grid."""
        if self._e_t is None or t < self._e_t:
            start = t if self.energy_epoch is None or self.energy_epoch > t else \
                self.energy_epoch
            self._e_t = math.floor(start / ENERGY_STEP_S) * ENERGY_STEP_S
            self._e_kwh = 0.0
        while self._e_t + ENERGY_STEP_S <= t:
            p, _ = self.load.power(self._e_t)
            self._e_kwh += max(0.0, p) * ENERGY_STEP_S / 3.6e6
            self._e_t += ENERGY_STEP_S
        p, _ = self.load.power(self._e_t)
        partial = max(0.0, p) * (t - self._e_t) / 3.6e6
        total = self.energy_start_kwh + self._e_kwh + partial
        if self._e_base is not None:
            total += self._e_base
        return total

    def values(self, t: float | None = None) -> dict[str, float]:
        """Every standard quantity the profile could ask for, self-consistent, at ``t``."""
        t = self.clock.now() if t is None else t
        if self.faults["frozen"] and self._frozen_values is not None:
            return dict(self._frozen_values)
        p, pf = self.load.power(t)
        pf = min(1.0, max(0.05, abs(pf)))
        q = abs(p) * math.tan(math.acos(pf))
        s = math.hypot(p, q)
        f = 50.0 + 0.03 * math.sin(t / 47.0) + 0.01 * math.sin(t / 5.3)
        out: dict[str, float] = {"p_w": p, "q_var": q, "s_va": s, "pf": pf if p >= 0 else -pf,
                                 "f_hz": f}
        phases = ("l1", "l2", "l3") if self.three_phase else ("l1",)
        share = 1.0 / len(phases)
        volts = []
        amps = []
        for k, ph in enumerate(phases):
            v = NOMINAL_V + 2.5 * math.sin(2 * math.pi * t / 86400.0 + k) + 0.3 * math.sin(
                t / 13.0 + k)
            i = s * share / v
            volts.append(v)
            amps.append(i)
            out["v_v_%s" % ph] = v
            out["i_a_%s" % ph] = i
            out["p_w_%s" % ph] = p * share
            out["q_var_%s" % ph] = q * share
            out["s_va_%s" % ph] = s * share
            out["pf_%s" % ph] = out["pf"]
        out["v_v"] = sum(volts) / len(volts)
        out["i_a"] = sum(amps)
        e = self.energy_kwh(t)
        out["e_import_kwh"] = e
        out["e_export_kwh"] = 0.0
        out["e_total_kwh"] = e
        for k, ph in enumerate(phases):
            out["e_import_kwh_%s" % ph] = e * share if k else e - e * share * (len(phases) - 1)
        self._frozen_values = dict(out)
        return out

    def registers(self, fc: int, address: int, count: int) -> list[int] | ExcCodes:
        """The registers a read would return, or the exception code it would raise."""
        end = address + count
        if fc not in self.profile.function_codes:
            return ExcCodes.ILLEGAL_FUNCTION  # e.g. input registers asked of a holding map
        if not any(rfc == fc and lo <= address and end <= hi for rfc, lo, hi in self._regions):
            return ExcCodes.ILLEGAL_ADDRESS
        regs = [0] * count
        values = self.values()
        for f in self.profile.quantities.values():
            if f.fc != fc or f.end <= address or f.address >= end:
                continue
            if self.faults["garbage"]:
                words = [0x7FC0, 0x0000] if f.type == "float32" else [0xFFFF] * f.size
            else:
                v = values.get(f.name, values.get(family(f.name), 0.0))
                words = encode_field(f, v)
            for k, w in enumerate(words):
                if address <= f.address + k < end:
                    regs[f.address + k - address] = w
        return regs

    async def serve(self, fc: int, address: int, count: int) -> list[int] | ExcCodes:
        """One request as the server sees it, faults applied."""
        self.requests += 1
        if self.faults["silent"]:
            raise NoSuchIdException("unit %d is silent" % self.unit_id)
        if self.faults["delay_s"]:
            await asyncio.sleep(self.faults["delay_s"])
        rate = self.faults["exception_rate"]
        if rate and self._rng.random() < rate:
            return ExcCodes(self.faults["exception_code"])
        return self.registers(fc, address, count)


def _regions(profile: Profile) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for fc in profile.function_codes:
        fields = sorted((f for f in profile.quantities.values() if f.fc == fc),
                        key=lambda f: f.address)
        lo, hi = fields[0].address, fields[0].end
        for f in fields[1:]:
            if f.address - hi <= REGION_GAP:
                hi = max(hi, f.end)
            else:
                out.append((fc, lo, hi))
                lo, hi = f.address, f.end
        out.append((fc, lo, hi))
    return out


class _UnitsContext(ModbusServerContext):
    """A pymodbus datastore that asks the SimUnits at request time.

    pymodbus 3.16 calls ``async_getValues(device_id, fc, address, count)`` on an
    "old simulator" context; returning an ExcCodes makes an exception reply, and
    NoSuchIdException with ``ignore_missing_devices`` makes no reply at all.
    """

    def __init__(self, units: dict[int, SimUnit], absent_exception: int = 0,
                 ignore_unit_id: bool = False):  # no super(): it only warns and copies
        self.units = units
        self.absent_exception = absent_exception
        self.ignore_unit_id = ignore_unit_id
        self.active: set[asyncio.Task] = set()
        self.old_simulator = True
        self.simdevices = []
        self._devices = {}

    async def async_getValues(self, device_id: int, func_code: int, address: int,
                              count: int = 1) -> Any:
        unit = self.units.get(device_id)
        if unit is None and self.ignore_unit_id and self.units:
            unit = next(iter(self.units.values()))  # a device that answers every id
        if unit is None and self.absent_exception:
            # A gateway answering for a unit that did not: exception 10 or 11.
            return ExcCodes(self.absent_exception)
        if unit is None:
            raise NoSuchIdException("no unit %d here" % device_id)
        if func_code not in (3, 4):
            return ExcCodes.ILLEGAL_FUNCTION
        # Remember the handler task so that stop() can cancel a slow reply in flight.
        task = asyncio.current_task()
        if task is not None:
            self.active.add(task)
        try:
            return await unit.serve(func_code, address, count)
        finally:
            if task is not None:
                self.active.discard(task)

    async def async_setValues(self, device_id: int, func_code: int, address: int,
                              values: Any) -> Any:
        return ExcCodes.ILLEGAL_FUNCTION  # meters are read-only here

    def device_ids(self) -> list[int]:
        return list(self.units)


class SimMeterServer:
    """Many SimUnits on one pymodbus server, Modbus TCP or RTU on a serial port."""

    def __init__(self, units: list[SimUnit], tcp: tuple[str, int] | None = None,
                 rtu: str | None = None, baudrate: int = 9600, parity: str = "N",
                 stopbits: int = 1, bytesize: int = 8, framer: str = "",
                 absent_exception: int = 0, ignore_unit_id: bool = False):
        """``absent_exception`` (10 or 11): answer for a missing unit with that gateway
        exception instead of silence, as an RS-485 gateway does; ``ignore_unit_id``: the
        first unit answers every unit id, as some single meters do."""
        if (tcp is None) == (rtu is None):
            raise ValueError("give exactly one of tcp=(host, port) or rtu=serial_port")
        ids = [u.unit_id for u in units]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate unit ids: %r" % sorted(ids))
        self.units = {u.unit_id: u for u in units}
        self.tcp = tcp
        self.rtu = rtu
        self.serial = {"baudrate": baudrate, "parity": parity, "stopbits": stopbits,
                       "bytesize": bytesize}
        self.framer = framer  # "rtu" serves RTU frames over TCP (an RTU-over-TCP gateway)
        self.port: int = tcp[1] if tcp else 0
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._context: _UnitsContext | None = None
        self.absent_exception = absent_exception
        self.ignore_unit_id = ignore_unit_id

    def unit(self, unit_id: int) -> SimUnit:
        return self.units[unit_id]

    async def start(self) -> None:
        context = self._context = _UnitsContext(self.units, self.absent_exception,
                                                self.ignore_unit_id)
        if self.tcp is not None:
            framer = FramerType.RTU if self.framer == "rtu" else FramerType.SOCKET
            self._server = ModbusTcpServer(context, framer=framer, address=self.tcp,
                                           ignore_missing_devices=True)
        else:
            self._server = ModbusSerialServer(context, framer=FramerType.RTU, port=self.rtu,
                                              ignore_missing_devices=True, **self.serial)
        await self._server.serve_forever(background=True)
        if self.tcp is not None:
            sockets = getattr(self._server.transport, "sockets", None) or []
            if sockets:
                self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            with contextlib.suppress(Exception):
                await server.shutdown()
            pending = list(self._context.active) if self._context is not None else []
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            # Give the transports one loop turn to close their sockets.
            await asyncio.sleep(0)
