"""Bus benchmark: one full poll cycle of N SDM630 meters on an emulated 9600-baud RS-485
bus, against the theoretical wire minimum and against one request per quantity (how mbmd
polls), measured in one run; then Modbus TCP meters per second against 200 simulated TCP
meters; then a DL/T 645-2007 line (16 single-phase meters x 7 quantities at 2400 8E1).

    .venv/bin/python bench/bus.py                 # 32 meters, 9600 8N1, both quantity sets
    .venv/bin/python bench/bus.py --meters 8 --quick
    .venv/bin/python bench/bus.py --only dlt645   # the DL/T 645 line alone

DL/T 645 wire minimum: every transaction is its request and reply frames at 11 bits a
character (8E1), wake-up bytes (FE FE FE FE) included since master and meters send them,
plus the meter's reply delay (DL/T 645-2007 section 6.3: 20 ms to 500 ms; the bench's
meters answer at the 20 ms minimum, ``--dlt645-turnaround-ms``) and a 3.5-character
silence before the next request. DL/T 645 has no coalescing: one data identifier per
quantity (a block DI would group phases, which a single-phase meter does not have).

The wire minimum of one transaction is its two frames at the character time
(10 bits per character at 8N1) plus the two silences the Modbus serial line spec makes
mandatory: the device's turnaround after the request (here the 3.5-character minimum,
or ``--turnaround-ms``) and 3.5 characters after the reply before the next request.
"Bytes only" is the same without any silence. Everything runs on the real stack: the
agent's BusPoller and pymodbus client on a pty, the hil/rs485.py link emulator pacing the
bytes, and pymodbus servers (hil/meters.py) behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.clock import Clock
from agent.config import DEFAULT_QUANTITIES, load_text
from agent.dlt645.codec import FRAME_OVERHEAD, PREAMBLE
from agent.modbus.blocks import rtu_request_bytes, rtu_response_bytes
from agent.modbus.poller import BusPoller
from agent.profiles import load_profile
from hil.dlt645 import Dlt645Line, SimDlt645Meter
from hil.meters import SimMeterServer, SimUnit
from hil.rs485 import LinkEmulator


class SteadyLoad:
    def __init__(self, p_w: float):
        self.p_w = p_w

    def power(self, t: float) -> tuple[float, float]:
        return self.p_w, 0.92


def _config(bus: str, units: list[int], quantities: str, quirks: str) -> str:
    out = ('site = "bench"\ngateway = "bench"\n[broker]\nhost = "127.0.0.1"\n'
           "[[buses]]\n" + bus + "\n")
    for u in units:
        out += ('[[meters]]\nid = "m%d"\nbus = "b"\nunit = %d\nprofile = "sdm630"\n'
                "quantities = %s\n%s\n" % (u, u, quantities, quirks))
    return out


async def _rtu_cycle(link: LinkEmulator, plan, cycles: int) -> tuple[float, dict]:
    got: list = []
    poller = BusPoller(plan.buses[0], Clock(), got.append, lambda h: None)
    try:
        await poller.run_cycle()  # open the port, warm up
        best = None
        stats: dict = {}
        for _ in range(cycles):
            for st in poller.meters.values():
                st.next_due = 0.0
            got.clear()
            await asyncio.sleep(0.05)
            link.reset_stats()
            t0 = time.monotonic()
            await poller.run_cycle()
            took = time.monotonic() - t0
            bad = [p for p in got if not p.ok]
            if bad:
                raise SystemExit("bench: %d polls failed: %s" % (len(bad), bad[0].error))
            if best is None or took < best:
                best, stats = took, link.stats()
        return best or 0.0, stats
    finally:
        poller.close()


def _wire_minimum(link: LinkEmulator, plan) -> tuple[float, float, int]:
    byte_s = 0.0
    silences = 0.0
    n = 0
    for m in plan.meters:
        for r in m.requests:
            n += 1
            byte_s += link.frame_time(rtu_request_bytes() + rtu_response_bytes(r.count))
            silences += link.turnaround + link.gap_time
    return byte_s, byte_s + silences, n


async def rtu_bench(n: int, baud: int, turnaround_ms: float | None, cycles: int,
                    sets: list[str]) -> list[str]:
    link = LinkEmulator(baud=baud, turnaround_ms=turnaround_ms)
    await link.start()
    clock = Clock()
    units = [SimUnit(i, load_profile("sdm630"), SteadyLoad(300.0 + 10 * i), clock)
             for i in range(1, n + 1)]
    server = SimMeterServer(units, rtu=link.device_port, baudrate=baud)
    await server.start()
    bus = 'name = "b"\nkind = "rtu"\nport = "%s"\nbaud = %d\ntimeout_ms = 1000' % (
        link.master_port, baud)
    lines = []
    try:
        for qset in sets:
            quantities = ('"all"' if qset == "all" else
                          "[%s]" % ", ".join('"%s"' % q for q in DEFAULT_QUANTITIES))
            nq = (len(load_profile("sdm630").quantities) if qset == "all"
                  else len(DEFAULT_QUANTITIES))
            ours = load_text(_config(bus, [u.unit_id for u in units], quantities, ""), "b")
            # mbmd's way: every quantity its own request (max_registers = one float).
            per_q = load_text(_config(bus, [u.unit_id for u in units], quantities,
                                      "[meters.quirks]\nmax_registers = 2\nmax_gap = 0"),
                              "b")
            t_ours, st_ours = await _rtu_cycle(link, ours, cycles)
            t_perq, _ = await _rtu_cycle(link, per_q, cycles)
            bytes_only, wire_min, nreq = _wire_minimum(link, ours)
            _, wire_min_perq, nreq_q = _wire_minimum(link, per_q)
            lines += [
                "RTU %d x SDM630, %d baud 8N1, %d quantities per meter (%s), turnaround %.2f ms"
                % (n, baud, nq, "detector + telemetry defaults" if qset != "all"
                   else "every mapped quantity", 1000 * link.turnaround),
                "  coalesced (Loadwatch): %3d requests  cycle %7.3f s   wire minimum %7.3f s "
                "(bytes only %.3f s)   ratio %.3fx   bus busy %.0f%%"
                % (nreq, t_ours, wire_min, bytes_only, t_ours / wire_min,
                   100 * st_ours.get("utilisation", 0.0)),
                "  one request/quantity:  %3d requests  cycle %7.3f s   wire minimum %7.3f s"
                "                      -> Loadwatch is %.2fx faster"
                % (nreq_q, t_perq, wire_min_perq, t_perq / t_ours),
                "  targets: within 1.15x of the wire minimum: %s; >= 3x faster than one "
                "request per quantity: %s"
                % ("met" if t_ours / wire_min <= 1.15 else "MISSED",
                   "met" if t_perq / t_ours >= 3 else "missed (%.2fx)" % (t_perq / t_ours)),
            ]
    finally:
        await server.stop()
        await link.stop()
    return lines


def _dlt645_wire_minimum(link: LinkEmulator, plan) -> tuple[float, float, int]:
    byte_s = 0.0
    silences = 0.0
    n = 0
    for m in plan.meters:
        for r in m.requests:
            n += 1
            request = len(PREAMBLE) + FRAME_OVERHEAD + 4
            reply = len(PREAMBLE) + FRAME_OVERHEAD + r.reply_bytes
            byte_s += link.frame_time(request + reply)
            silences += link.turnaround + link.gap_time
    return byte_s, byte_s + silences, n


async def dlt645_bench(n: int, turnaround_ms: float, cycles: int) -> list[str]:
    """N single-phase DL/T 645 meters x 7 quantities on one 2400 8E1 line, paced."""
    link = LinkEmulator(baud=2400, parity="E", turnaround_ms=turnaround_ms,
                        framing="dlt645")
    await link.start()
    clock = Clock()
    profile = load_profile("dlt645_single")
    meters = [SimDlt645Meter("%012d" % (12340000 + i), profile, SteadyLoad(300.0 + 10 * i),
                             clock) for i in range(1, n + 1)]
    line = Dlt645Line(meters, serial=link.device_port)
    await line.start()
    # A pty takes no parity setting; the emulator paces 11-bit (8E1) characters anyway.
    cfg = ('site = "bench"\ngateway = "bench"\n[broker]\nhost = "127.0.0.1"\n'
           '[[buses]]\nname = "b"\nprotocol = "dlt645"\nkind = "rtu"\nport = "%s"\n'
           'baud = 2400\nparity = "N"\ntimeout_ms = 1000\n' % link.master_port)
    for m in meters:
        cfg += ('[[meters]]\nid = "d%s"\nbus = "b"\naddress = "%s"\n'
                'profile = "dlt645_single"\n' % (m.address[-4:], m.address))
    plan = load_text(cfg, "dlt645")
    try:
        took, st = await _rtu_cycle(link, plan, cycles)
    finally:
        await line.stop()
        await link.stop()
    bytes_only, wire_min, nreq = _dlt645_wire_minimum(link, plan)
    nq = len(plan.meters[0].quantities)
    ratio = took / wire_min
    return [
        "DL/T 645 %d x single-phase (dlt645_single), 2400 baud 8E1, %d quantities per meter "
        "(%s), reply delay %.0f ms" % (n, nq, ", ".join(plan.meters[0].quantities),
                                       1000 * link.turnaround),
        "  one DI per quantity:    %3d requests  cycle %7.3f s   wire minimum %7.3f s "
        "(bytes only %.3f s)   ratio %.3fx   bus busy %.0f%%   (%.2f s per meter)"
        % (nreq, took, wire_min, bytes_only, ratio, 100 * st.get("utilisation", 0.0),
           took / n),
        "  target: within 1.15x of the wire minimum: %s" % ("met" if ratio <= 1.15
                                                           else "MISSED"),
    ]


async def tcp_bench(n: int, cycles: int) -> list[str]:
    clock = Clock()
    servers = []
    try:
        for i in range(n):
            s = SimMeterServer([SimUnit(1, load_profile("sdm630"), SteadyLoad(500.0 + i),
                                        clock)], tcp=("127.0.0.1", 0))
            await s.start()
            servers.append(s)
        pollers = []
        for i, s in enumerate(servers):
            cfg = _config('name = "b"\nkind = "tcp"\nhost = "127.0.0.1"\nport = %d' % s.port,
                          [1], '"all"', "").replace('id = "m1"', 'id = "t%d"' % i)
            plan = load_text(cfg, "tcp")
            pollers.append(BusPoller(plan.buses[0], clock, lambda raw: None, lambda h: None))
        try:
            await asyncio.gather(*(p.run_cycle() for p in pollers))  # connect
            best = None
            for _ in range(cycles):
                for p in pollers:
                    for st in p.meters.values():
                        st.next_due = 0.0
                t0 = time.monotonic()
                results = await asyncio.gather(*(p.run_cycle() for p in pollers))
                took = time.monotonic() - t0
                failed = sum(1 for r in results for raw in r if not raw.ok)
                if failed:
                    raise SystemExit("bench: %d TCP polls failed" % failed)
                best = took if best is None else min(best, took)
        finally:
            for p in pollers:
                p.close()
        reqs = sum(len(m.requests) for p in pollers for m in p.bus.meters)
        return ["TCP %d simulated meters (one pymodbus server each, SDM630, all %d quantities, "
                "%d requests per cycle): cycle %.3f s -> %.0f meters/s"
                % (n, len(load_profile("sdm630").quantities), reqs, best, n / best)]
    finally:
        for s in servers:
            await s.stop()


async def main(args: argparse.Namespace) -> None:
    sets = ["default"] if args.quick else ["default", "all"]
    cycles = 1 if args.quick else 2
    if args.only in ("", "modbus"):
        for line in await rtu_bench(args.meters, args.baud, args.turnaround_ms, cycles,
                                    sets):
            print(line, flush=True)
        for line in await tcp_bench(args.tcp_meters, 1 if args.quick else 3):
            print(line, flush=True)
    if args.only in ("", "dlt645") and args.dlt645_meters:
        for line in await dlt645_bench(args.dlt645_meters, args.dlt645_turnaround_ms,
                                       cycles):
            print(line, flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meters", type=int, default=32, help="RTU meters (default 32)")
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--turnaround-ms", type=float, default=None,
                    help="device turnaround (default: the 3.5-character minimum)")
    ap.add_argument("--tcp-meters", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="one quantity set, one cycle")
    ap.add_argument("--dlt645-meters", type=int, default=16,
                    help="DL/T 645 meters on the 2400-baud line (default 16; 0: skip)")
    ap.add_argument("--dlt645-turnaround-ms", type=float, default=20.0,
                    help="DL/T 645 meters' reply delay (default 20 ms, the standard's minimum)")
    ap.add_argument("--only", choices=("modbus", "dlt645"), default="",
                    help="run one protocol's benchmarks only")
    asyncio.run(main(ap.parse_args()))
