"""``loadwatch read --protocol dlt645`` and ``loadwatch scan --protocol dlt645``.

The Modbus tools (agent/modbus/tools.py) own the command lines; with ``--protocol
dlt645`` they hand over here. A DL/T 645 meter is found by its 12-digit address, not by
a unit id, so scanning works differently:

* one meter on the line (a technician at one meter box): the 0x13 read-address
  broadcast, which only the meter on the line answers; with several meters on the line
  their answers collide and the tool says so;
* a multi-drop line: ``--addresses`` gives a list of known addresses (from the labels or
  the utility's records) or a range; every address is asked for its phase-A voltage
  (02010100, which every DL/T 645-2007 meter has), with a progress line and an ETA (at
  2400 baud a silent address costs a whole timeout, so a range of 1,000 takes minutes).

Exit codes as for Modbus: 0 success, 1 nothing found / no answer / port missing, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from agent.cliargs import fail
from agent.dlt645 import codec
from agent.dlt645.plan import plan_items
from agent.dlt645.transport import Dlt645Transport
from agent.failures import Failure
from agent.link import TransportError
from agent.modbus.hints import HINT_CRC, HINT_ERR_645, HINT_NO_REPLY_645
from agent.profiles import Profile, ProfileError, load_profile
from agent.scanprogress import ScanProgress

DEFAULT_PROFILE = "dlt645_single"
MAX_RANGE = 100_000
PROBE_DI = 0x02010100  # phase-A voltage, XXX.X V: every 2007 meter has it

# One advice table for the tools and the running agent (agent/modbus/hints.py).
HINT_NO_REPLY = HINT_NO_REPLY_645
HINT_NO_DATA = dict(HINT_ERR_645)[0x02]


def parse_addresses(text: str) -> list[str]:
    """``"000012340001-000012340024,000099990001"`` -> sorted unique 12-digit addresses."""
    out: set[str] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo_s, sep, hi_s = part.partition("-")
        try:
            codec.check_address(lo_s.strip())
            if sep:
                codec.check_address(hi_s.strip())
        except ValueError as e:
            raise ValueError("--addresses: %s" % e) from None
        lo = int(lo_s)
        hi = int(hi_s) if sep else lo
        if hi < lo:
            raise ValueError("--addresses: %r runs backwards" % part)
        if hi - lo + 1 + len(out) > MAX_RANGE:
            raise ValueError("--addresses: more than %d addresses; narrow the range"
                             % MAX_RANGE)
        out.update("%012d" % a for a in range(lo, hi + 1))
    if not out:
        raise ValueError("--addresses: no addresses given")
    return sorted(out)


def transport(args: argparse.Namespace) -> Dlt645Transport:
    if args.serial:
        return Dlt645Transport("rtu", port=args.serial, baud=args.baud, parity=args.parity,
                               stopbits=args.stopbits,
                               timeout_s=(args.timeout_ms or 1000) / 1000.0)
    return Dlt645Transport("rtu-over-tcp", host=args.host, port=args.tcp_port,
                           timeout_s=(args.timeout_ms or 1500) / 1000.0)


def _where(args: argparse.Namespace) -> str:
    if args.serial:
        return "%s at %d %d%s%d" % (args.serial, args.baud, 8, args.parity, args.stopbits)
    return "%s:%d" % (args.host, args.tcp_port)


# ----------------------------------------------------------------------- read


def _fmt(value: float) -> str:
    return "%.4f" % value if abs(value) < 1e7 else "%.4g" % value


async def _read(args: argparse.Namespace, profile: Profile, out: TextIO) -> int:
    from agent.decode import decode_item
    from agent.quality import RANGES, family

    tr = transport(args)
    try:
        await tr.connect()
    except TransportError as e:
        return fail("read", str(e))
    values: dict[str, tuple[float, int, str]] = {}
    problems: list[str] = []
    try:
        for req in plan_items(profile, tuple(profile.quantities)):
            what = "DI %s (%s)" % (codec.di_text(req.di), ", ".join(req.names))
            try:
                data = await tr.read_item(args.address, req.di)
            except TransportError as e:
                if e.kind == Failure.IO:
                    return fail("read", str(e))
                if e.kind == Failure.EXCEPTION:
                    hint = HINT_NO_DATA if e.exception_code & 0x02 else "see the meter's manual"
                    problems.append("%s: %s" % (e, hint))
                    continue
                if e.kind == Failure.CRC:
                    problems.append("%s at %s: %s" % (e, what, HINT_CRC))
                    continue
                problems.append("meter %s: %s" % (args.address, HINT_NO_REPLY))
                break  # a silent meter will not answer the next request either
            off = 0
            for f in req.fields:
                values[f.name] = (decode_item(f, data, off), req.di, f.format)
                off += f.size
    finally:
        tr.close()
    out.write("%s, address %s on %s, profile %s\n" % (profile.title, args.address,
                                                      _where(args), profile.name))
    if values:
        out.write("%-16s %14s  %-4s %s\n" % ("quantity", "value", "unit", "DI / format"))
        for name, (v, di, fmt) in values.items():
            lo, hi = RANGES[family(name)]
            flag = "" if v == v and lo <= v <= hi else "  <- not a plausible value"
            out.write("%-16s %14s  %-4s %s %s%s\n" % (
                name, _fmt(v), profile.quantities[name].unit, codec.di_text(di), fmt, flag))
    for p in problems:
        out.write("problem: %s\n" % p)
    return 1 if problems or not values else 0


def _modbus_only(command: str, args: argparse.Namespace, names: tuple[str, ...]) -> bool:
    """Refuse the Modbus-only options instead of ignoring them (one meaning per option)."""
    given = [n for n in names if getattr(args, n.lstrip("-").replace("-", "_"), None)]
    if given:
        print("loadwatch %s: %s not available with --protocol dlt645%s" % (
            command, ", ".join(given), " (use --addresses)" if "--units" in given else ""),
            file=sys.stderr)
    return bool(given)


def read_main(args: argparse.Namespace) -> int:
    if _modbus_only("read", args, ("--json", "--repeat", "--unit")):
        return 2
    if not args.address:
        return fail("read", "--protocol dlt645 needs --address (the meter's 12 digits)", 2)
    try:
        codec.check_address(args.address)
    except ValueError as e:
        return fail("read", "--address %s" % e, 2)
    try:
        profile = load_profile(args.profile or DEFAULT_PROFILE)
    except ProfileError as e:
        return fail("read", str(e), 2)
    if profile.protocol != "dlt645":
        return fail("read", "profile %s is a %s profile; with --protocol dlt645 use one of "
                    "the DL/T 645 profiles (loadwatch profiles)" % (profile.name,
                                                                    profile.protocol), 2)
    try:
        return asyncio.run(_read(args, profile, sys.stdout))
    except KeyboardInterrupt:
        return 130


# ----------------------------------------------------------------------- scan


async def _scan_broadcast(args: argparse.Namespace, out: TextIO) -> int:
    tr = transport(args)
    try:
        await tr.connect()
        address = await tr.read_address()
    except TransportError as e:
        tr.close()
        if e.kind == Failure.TIMEOUT:
            out.write("no meter answered the read-address broadcast (0x13) on %s.\n%s\n"
                      % (_where(args), HINT_NO_REPLY))
            return 1
        if e.kind == Failure.CRC:
            out.write("the read-address broadcast got a garbled answer on %s: %s.\nIf "
                      "several meters share this line their answers collide: give their "
                      "addresses with --addresses (a list, or a range such as "
                      "000012340001-000012340024). Otherwise: %s\n" % (
                          _where(args), e, HINT_CRC))
            return 1
        return fail("scan", str(e))
    try:
        volts = await _probe(tr, address)
    finally:
        tr.close()
    out.write("%-12s  %s\n" % ("address", "answers"))
    out.write("%-12s  %s\n" % (address, volts))
    out.write("1 meter found on %s (read-address broadcast)\n" % _where(args))
    return 0


async def _probe(tr: Dlt645Transport, address: str) -> str:
    try:
        data = await tr.read_item(address, PROBE_DI)
    except TransportError as e:
        if e.kind in (Failure.IO, Failure.TIMEOUT):
            raise
        return "answers, but not the voltage (%s)" % e
    try:
        return "V=%.1f V" % codec.bcd_decode(data[:2], 1, False)
    except codec.FrameError:
        return "answers, voltage not BCD"


async def _scan_list(args: argparse.Namespace, addresses: list[str], out: TextIO) -> int:
    tr = transport(args)
    try:
        await tr.connect()
    except TransportError as e:
        return fail("scan", str(e))
    found: list[tuple[str, str]] = []
    noisy = 0
    try:
        with ScanProgress(len(addresses), "addresses") as progress:
            for n, address in enumerate(addresses, 1):
                progress.show(n, "address %s" % address, len(found))
                try:
                    found.append((address, await _probe(tr, address)))
                except TransportError as e:
                    if e.kind == Failure.IO:
                        raise
                    if e.kind == Failure.CRC:
                        noisy += 1
    except TransportError as e:
        return fail("scan", str(e))
    finally:
        tr.close()
    if not found:
        out.write("no meter answered on %s (%d addresses).\n%s\n" % (
            _where(args), len(addresses), HINT_NO_REPLY))
        if noisy:
            out.write("%d garbled replies were seen: %s\n" % (noisy, HINT_CRC))
        return 1
    out.write("%-12s  %s\n" % ("address", "answers"))
    for address, text in found:
        out.write("%-12s  %s\n" % (address, text))
    out.write("%d meter(s) found on %s\n" % (len(found), _where(args)))
    if noisy:
        out.write("warning: %d garbled replies: %s\n" % (noisy, HINT_CRC))
    return 0


def scan_main(args: argparse.Namespace) -> int:
    if _modbus_only("scan", args, ("--json", "--units", "--profiles")):
        return 2
    addresses: list[str] = []
    if args.addresses:
        try:
            addresses = parse_addresses(args.addresses)
        except ValueError as e:
            return fail("scan", str(e), 2)
    try:
        if addresses:
            return asyncio.run(_scan_list(args, addresses, sys.stdout))
        return asyncio.run(_scan_broadcast(args, sys.stdout))
    except KeyboardInterrupt:
        return 130
