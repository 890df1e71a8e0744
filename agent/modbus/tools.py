"""Technician tools: ``loadwatch scan`` and ``loadwatch read``.

``scan`` walks a range of unit ids on a serial bus (or a TCP host / RTU-over-TCP gateway),
shows a progress bar on stderr, and for every unit that answers tries to recognise its
profile: each shipped profile names one quantity and a plausible range in ``[identify]``
(e.g. a phase voltage of 80..300 V); the first profile, most specific first, whose probe
reads a plausible value wins.

``read`` reads every quantity of one meter once and prints one table with units. Both say
what a field technician needs when it does not work: no reply means A/B polarity, baud,
parity or the unit id; exception 2 means the registers are not there (wrong profile);
exception 1 means the function code is wrong (another variant of the meter); garbled
replies mean termination, shielding or a baud mismatch. A missing port or a permission
problem exits non-zero with the reason.

With ``--protocol dlt645`` both commands hand over to agent/dlt645/tools.py (meters
found by their 12-digit address; line defaults 2400 baud 8E1).

Exit codes: 0 success, 1 nothing found / the meter did not answer / the port is missing,
2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TextIO

from agent.cliargs import deprecated_alias, tcp_port
from agent.modbus.blocks import plan_reads
from agent.modbus.transport import Transport, TransportError
from agent.plausibility import HINT as PROFILE_HINT
from agent.plausibility import implausible
from agent.profiles import Profile, ProfileError, available_profiles, load_profile

EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "device failure", 6: "device busy", 10: "gateway path unavailable",
                   11: "gateway target did not respond"}

HINT_NO_REPLY = ("no reply: check the A/B wires (swap them if unsure: polarity is not "
                 "standardised), the baud rate (--baud), parity (--parity), stop bits and "
                 "the unit id; a long bus needs 120 ohm termination at both ends")
HINT_EXC = {1: "the meter does not support this function code: wrong profile, or another "
               "variant of the same meter (e.g. dtsu666 vs dtsu666_ir)? run `loadwatch scan`",
            2: "the meter does not have these registers: wrong profile? run `loadwatch scan`",
            11: "the gateway got no answer from the unit: see the no-reply hints"}
HINT_CRC = ("garbled replies: check termination, cable shielding and that every device "
            "on the bus uses the same baud rate and parity")


# ----------------------------------------------------------------------- arguments


def _add_connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", choices=("modbus", "dlt645"), default="modbus",
                   help="what the meters speak (default modbus; dlt645: DL/T 645-2007)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--serial", metavar="PATH", help="serial port, e.g. /dev/ttyUSB0")
    where.add_argument("--host", help="Modbus TCP host (meter or RTU-over-TCP gateway)")
    deprecated_alias(where, "--port", "--serial", "serial")
    p.add_argument("--tcp-port", type=tcp_port, default=502, help="TCP port (default 502)")
    p.add_argument("--rtu-over-tcp", action="store_true",
                   help="the TCP host is a transparent serial gateway (RTU framing)")
    p.add_argument("--baud", type=int, default=None,
                   help="serial baud rate (default 9600; 2400 with --protocol dlt645)")
    p.add_argument("--parity", choices=("N", "E", "O"), default=None,
                   help="serial parity (default N; E with --protocol dlt645)")
    p.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    p.add_argument("--timeout-ms", type=int, default=None,
                   help="answer timeout per request (default 300 serial, 1000 TCP)")


def add_scan_arguments(p: argparse.ArgumentParser) -> None:
    _add_connection(p)
    p.add_argument("--units", default="1-247",
                   help="unit ids to try, e.g. 1-247 or 1-10,20 (default 1-247)")
    p.add_argument("--profiles", default="",
                   help="comma-separated profiles to try (default: every shipped one)")
    p.add_argument("--addresses", default="",
                   help="dlt645: addresses to try, a list or a range such as "
                   "000012340001-000012340024 (default: the read-address broadcast, which "
                   "finds a meter alone on its line)")


def add_read_arguments(p: argparse.ArgumentParser) -> None:
    _add_connection(p)
    p.add_argument("--unit", type=int, default=None, help="Modbus unit id (1-247)")
    p.add_argument("--address", default="",
                   help="dlt645: the meter's 12-digit address, e.g. 000012345678")
    p.add_argument("--profile", default=None,
                   help="shipped profile name (%s) or a .toml path (dlt645: default "
                   "dlt645_single)" % ", ".join(available_profiles()))


def _line_defaults(args: argparse.Namespace) -> bool:
    """Fill in the protocol's line defaults; True when the meters speak DL/T 645."""
    dlt = args.protocol == "dlt645"
    if args.baud is None:
        args.baud = 2400 if dlt else 9600
    if args.parity is None:
        args.parity = "E" if dlt else "N"
    return dlt


def parse_units(text: str) -> list[int]:
    """``"1-5,9"`` -> [1, 2, 3, 4, 5, 9]; ValueError naming the bad part."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo_s, _, hi_s = part.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if hi_s else lo
        except ValueError:
            raise ValueError("--units: %r is not a number or a range like 1-247" % part) \
                from None
        if not (1 <= lo <= hi <= 247):
            raise ValueError("--units: %r is outside 1-247" % part)
        out.extend(range(lo, hi + 1))
    if not out:
        raise ValueError("--units: no unit ids given")
    return sorted(set(out))


def _transport(args: argparse.Namespace) -> Transport:
    if args.serial:
        timeout = (args.timeout_ms or 300) / 1000.0
        return Transport("rtu", port=args.serial, baud=args.baud, parity=args.parity,
                         stopbits=args.stopbits, timeout_s=timeout)
    timeout = (args.timeout_ms or 1000) / 1000.0
    return Transport("rtu-over-tcp" if args.rtu_over_tcp else "tcp", host=args.host,
                     port=args.tcp_port, timeout_s=timeout)


def _fail(command: str, message: str) -> int:
    print("loadwatch %s: %s" % (command, message), file=sys.stderr)
    return 1


# ----------------------------------------------------------------------- scan


class Progress:
    """A one-line progress bar on stderr (redrawn in place on a terminal)."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, width: int = 30):
        self.total = total
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.last = 0.0

    def show(self, done: int, unit: int, found: int) -> None:
        now = time.monotonic()
        if not self.tty and done not in (1, self.total) and now - self.last < 1.0:
            return
        self.last = now
        fill = int(self.width * done / max(1, self.total))
        line = "[%s%s] %3d/%d units, unit %d, %d found" % (
            "#" * fill, "." * (self.width - fill), done, self.total, unit, found)
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _candidates(names: list[str]) -> list[Profile]:
    profiles = [load_profile(n) for n in names]
    profiles = [p for p in profiles if p.identify]
    # Most specific first: a three-phase map's probe fails on a single-phase meter, not
    # the other way round.
    profiles.sort(key=lambda p: (-len(p.quantities), p.name))
    return profiles


async def _probe(tr: Transport, unit: int, profile: Profile) -> tuple[str, str]:
    """('match'|'answer'|'timeout'|'crc', description) for one profile's probe."""
    from agent.decode import decode_field

    ident = profile.identify
    f = profile.quantities[ident["quantity"]]
    try:
        regs = await tr.read(unit, f.fc, f.address, f.size)
    except TransportError as e:
        if e.kind == "exception":
            return "answer", "exception %d" % e.exception_code
        if e.kind == "io":
            raise
        return e.kind, ""
    value = decode_field(f, regs, profile.quirks.word_order)
    text = "%s=%.1f %s" % (f.name, value, f.unit)
    if ident["min"] <= value <= ident["max"]:
        return "match", text
    return "answer", text


async def _scan(args: argparse.Namespace, units: list[int], profiles: list[Profile],
                out: TextIO) -> int:
    tr = _transport(args)
    try:
        await tr.connect()
    except TransportError as e:
        return _fail("scan", str(e))
    progress = Progress(len(units))
    found: list[tuple[int, str, str]] = []
    noisy = 0
    # One probe per function code decides whether anybody is there at all.
    first_per_fc: dict[int, Profile] = {}
    for p in profiles:
        first_per_fc.setdefault(p.quantities[p.identify["quantity"]].fc, p)
    try:
        for n, unit in enumerate(units, 1):
            progress.show(n, unit, len(found))
            answered = ""
            match = None
            for p in profiles:
                is_gate = first_per_fc.get(p.quantities[p.identify["quantity"]].fc) is p
                if not answered and not is_gate:
                    continue  # nobody answered this function code's first probe
                status, text = await _probe(tr, unit, p)
                if status == "crc":
                    noisy += 1
                if status in ("match", "answer"):
                    answered = answered or text
                if status == "match":
                    match = (p, text)
                    break
            if match is not None:
                found.append((unit, match[0].name, "%s  (%s)" % (match[0].title, match[1])))
            elif answered:
                found.append((unit, "?", "answers (%s) but no shipped profile matched; "
                              "try `loadwatch read --profile ...`" % answered))
            if args.pause_s:
                await asyncio.sleep(args.pause_s)
    except TransportError as e:
        progress.end()
        return _fail("scan", str(e))
    finally:
        tr.close()
    progress.end()
    where = args.serial or "%s:%d" % (args.host, args.tcp_port)
    if not found:
        out.write("no unit answered on %s (units %d-%d).\n%s\n" % (
            where, units[0], units[-1], HINT_NO_REPLY))
        if noisy:
            out.write("%d garbled replies were seen: %s\n" % (noisy, HINT_CRC))
        return 1
    out.write("%-5s %-11s %s\n" % ("unit", "profile", "identified as"))
    for unit, name, text in found:
        out.write("%-5d %-11s %s\n" % (unit, name, text))
    out.write("%d unit(s) found on %s\n" % (len(found), where))
    if noisy:
        out.write("warning: %d garbled replies: %s\n" % (noisy, HINT_CRC))
    return 0


def scan_main(args: argparse.Namespace) -> int:
    if _line_defaults(args):
        from agent.dlt645.tools import scan_main as dlt645_scan
        return dlt645_scan(args)
    if args.addresses:
        print("loadwatch scan: --addresses is for --protocol dlt645 (Modbus: --units)",
              file=sys.stderr)
        return 2
    try:
        units = parse_units(args.units)
        names = [n.strip() for n in args.profiles.split(",") if n.strip()] or \
            available_profiles("modbus")
        profiles = _candidates(names)
    except (ValueError, ProfileError) as e:
        print("loadwatch scan: %s" % e, file=sys.stderr)
        return 2
    if not profiles:
        print("loadwatch scan: none of those profiles has an [identify] section",
              file=sys.stderr)
        return 2
    args.pause_s = 0.0
    try:
        return asyncio.run(_scan(args, units, profiles, sys.stdout))
    except KeyboardInterrupt:
        return 130


# ----------------------------------------------------------------------- read


def _fmt(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 1e7:
        return "%.3f" % value
    return "%.4g" % value


async def _read(args: argparse.Namespace, profile: Profile, out: TextIO) -> int:
    from agent.decode import Decoder
    from agent.model import RawBlock, RawPoll, quality_names

    fields = list(profile.quantities.values())
    requests = plan_reads(fields, profile.quirks.max_gap, profile.quirks.max_registers)
    tr = _transport(args)
    try:
        await tr.connect()
    except TransportError as e:
        return _fail("read", str(e))
    blocks: list[RawBlock] = []
    problems: list[str] = []
    t0 = time.time()
    unsupported: set[int] = set()
    try:
        for r in requests:
            if r.fc in unsupported:
                continue  # the meter said it has no such function code: do not repeat it
            try:
                regs = await tr.read(args.unit, r.fc, r.address, r.count,
                                     (profile.quirks.timeout_ms / 1000.0
                                      if profile.quirks.timeout_ms and not args.timeout_ms
                                      else None))
            except TransportError as e:
                where = "fc%d 0x%04X+%d (%s)" % (r.fc, r.address, r.count, ", ".join(r.fields))
                if e.kind == "io":
                    return _fail("read", str(e))
                if e.kind == "exception":
                    if e.exception_code == 1:
                        unsupported.add(r.fc)
                    name = EXCEPTION_NAMES.get(e.exception_code, "exception")
                    problems.append("unit %d answered exception %d (%s) at %s: %s" % (
                        args.unit, e.exception_code, name, where,
                        HINT_EXC.get(e.exception_code, "see the meter's manual")))
                elif e.kind == "crc":
                    problems.append("garbled reply at %s: %s" % (where, HINT_CRC))
                elif e.kind == "mismatch":
                    problems.append("%s at %s: bad data, not shown" % (e, where))
                else:
                    problems.append("unit %d: %s" % (args.unit, HINT_NO_REPLY))
                    break  # a silent meter will not answer the next request either
                continue
            blocks.append(RawBlock(r.fc, r.address, regs))
            if profile.quirks.pause_ms:
                await asyncio.sleep(profile.quirks.pause_ms / 1000.0)
    finally:
        tr.close()

    class _Plan:  # the decoder needs only these attributes of a MeterPlan
        def __init__(self) -> None:
            self.profile = profile
            self.quantities = tuple(profile.quantities)
            self.quirks = profile.quirks

    raw = RawPoll("unit%d" % args.unit, t0, blocks)
    reading = Decoder(_Plan()).decode(raw)  # type: ignore[arg-type]
    values = Decoder(_Plan()).values_from(raw)  # type: ignore[arg-type]
    where = args.serial or "%s:%d" % (args.host, args.tcp_port)
    out.write("%s, unit %d on %s, profile %s\n" % (profile.title, args.unit, where,
                                                   profile.name))
    if values:
        out.write("%-16s %14s  %-4s %s\n" % ("quantity", "value", "unit", "register"))
        for name, f in profile.quantities.items():
            if name not in values:
                continue
            flag = "" if name in reading.values else "  <- implausible"
            out.write("%-16s %14s  %-4s fc%d 0x%04X %s%s\n" % (
                name, _fmt(values[name]), f.unit, f.fc, f.address, f.type, flag))
    flags = [n for n in quality_names(reading.quality) if n != "missing" or values]
    if flags and values:
        out.write("quality: %s\n" % ", ".join(flags))
    mismatch = implausible(values) if values else ""
    if mismatch:
        problems.append("profile mismatch: %s: %s" % (mismatch, PROFILE_HINT))
    for p in problems:
        out.write("problem: %s\n" % p)
    return 1 if problems or not values else 0


def read_main(args: argparse.Namespace) -> int:
    if _line_defaults(args):
        from agent.dlt645.tools import read_main as dlt645_read
        return dlt645_read(args)
    if args.unit is None or args.profile is None:
        print("loadwatch read: Modbus needs --unit and --profile (DL/T 645 meters: "
              "--protocol dlt645 --address ...)", file=sys.stderr)
        return 2
    if not 1 <= args.unit <= 247:
        print("loadwatch read: --unit %d is not a Modbus unit id (1-247)" % args.unit,
              file=sys.stderr)
        return 2
    try:
        profile = load_profile(args.profile)
    except ProfileError as e:
        print("loadwatch read: %s" % e, file=sys.stderr)
        return 2
    try:
        return asyncio.run(_read(args, profile, sys.stdout))
    except KeyboardInterrupt:
        return 130
