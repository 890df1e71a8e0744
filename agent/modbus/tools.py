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
import json
import math
import sys
import time
from typing import TextIO

from agent.cliargs import deprecated_alias, fail, tcp_port
from agent.failures import Failure
from agent.modbus.blocks import plan_reads
from agent.modbus.hints import HINT_CRC, HINT_EXC, HINT_NO_REPLY, HINT_NO_REPLY_TCP
from agent.modbus.transport import Transport, TransportError
from agent.plausibility import HINT as PROFILE_HINT
from agent.plausibility import implausible
from agent.profiles import Profile, ProfileError, available_profiles, load_profile
from agent.scanprogress import ScanProgress, clock

EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "device failure", 6: "device busy", 10: "gateway path unavailable",
                   11: "gateway target did not respond"}

# Unit ids tried first: most meters leave the factory as 1, installers number up from
# there, and 100 and 247 are common "out of the way" defaults.
COMMON_UNITS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 247)
# A plain Modbus TCP meter is almost always one of these; the full 1-247 at 1 s a
# silent id took 8 minutes, so the default there is the common ids only.
DEFAULT_TCP_UNITS = "1-10,100,247"
# So many ids answering alike cannot be separate meters (see _one_device).
ONE_DEVICE_MIN = 5


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
    p.add_argument("--units", default=None,
                   help="unit ids to try, e.g. 1-247 or 1-10,20 (default 1-247 on a serial "
                   "bus or RTU-over-TCP gateway, %s on a Modbus TCP host); common "
                   "ids are tried first" % DEFAULT_TCP_UNITS)
    p.add_argument("--json", action="store_true",
                   help="print the result as one JSON object (with the config block)")
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
    p.add_argument("--json", action="store_true",
                   help="print each reading as one JSON object (one line)")
    p.add_argument("--repeat", type=float, default=None, metavar="SECONDS",
                   help="read again every SECONDS until Ctrl-C: a live view while wiring")


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


# ----------------------------------------------------------------------- scan


def common_first(units: list[int]) -> list[int]:
    """The same ids, the common ones (COMMON_UNITS) first: a meter is found early."""
    chosen = set(units)
    first = [u for u in COMMON_UNITS if u in chosen]
    return first + [u for u in units if u not in set(first)]


def _link(args: argparse.Namespace) -> str:
    return "rtu" if args.serial else ("rtu-over-tcp" if args.rtu_over_tcp else "tcp")


def _one_device(found: list[tuple[int, str, str]], probed: int) -> bool:
    """A device that ignores the unit id answers every id alike: every probed id (at
    least ONE_DEVICE_MIN) answered, with the same profile. A real bus never has every id
    populated, and the values cannot be compared exactly (they move between reads)."""
    return (probed >= ONE_DEVICE_MIN and len(found) == probed
            and len({name for _, name, _ in found}) == 1)


def config_block(args: argparse.Namespace, found: list[tuple[int, str, str]]) -> str:
    """Ready-to-paste [[buses]] and [[meters]] tables for what scan found."""
    link = _link(args)
    lines = ["[[buses]]", 'name = "bus1"', 'kind = "%s"' % link]
    if link == "rtu":
        lines += ['port = "%s"' % args.serial, "baud = %d" % args.baud,
                  'parity = "%s"' % args.parity]
    else:
        lines += ['host = "%s"' % args.host, "port = %d" % args.tcp_port]
    for unit, name, _ in found:
        lines += ["", "[[meters]]", 'id = "meter-%d"' % unit, 'bus = "bus1"', "unit = %d" % unit]
        lines.append('profile = "%s"' % name if name != "?" else
                     '# profile = "?"  # not identified: see `loadwatch profiles`')
    return "\n".join(lines) + "\n"


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
        if e.kind == Failure.EXCEPTION:
            return "answer", "exception %d" % e.exception_code
        if e.kind == Failure.IO:
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
        return fail("scan", str(e))
    found: list[tuple[int, str, str]] = []
    noisy = 0
    probed = 0
    # One probe per function code decides whether anybody is there at all.
    first_per_fc: dict[int, Profile] = {}
    for p in profiles:
        first_per_fc.setdefault(p.quantities[p.identify["quantity"]].fc, p)
    try:
        with ScanProgress(len(units), "units") as progress:
            for n, unit in enumerate(units, 1):
                progress.show(n, "unit %d" % unit, len(found))
                probed = n
                answered, match, garbled = await _probe_unit(tr, unit, profiles, first_per_fc)
                noisy += garbled
                if match is not None:
                    found.append((unit, match[0].name, "%s  (%s)" % (match[0].title,
                                                                    match[1])))
                elif answered:
                    found.append((unit, "?", "answers (%s) but no shipped profile matched; "
                                  "try `loadwatch read --profile ...`" % answered))
                if args.pause_s:
                    await asyncio.sleep(args.pause_s)
    except TransportError as e:
        return fail("scan", str(e))
    finally:
        tr.close()
    return _scan_report(args, found, probed, noisy, progress.elapsed(), out)


async def _probe_unit(tr: Transport, unit: int, profiles: list[Profile],
                      first_per_fc: dict[int, Profile]
                      ) -> tuple[str, tuple[Profile, str] | None, int]:
    """Ask one unit id with each profile's identify register: what first answered, the
    profile that matched (or None) and how many replies were garbled."""
    answered = ""
    garbled = 0
    for p in profiles:
        is_gate = first_per_fc.get(p.quantities[p.identify["quantity"]].fc) is p
        if not answered and not is_gate:
            continue  # nobody answered this function code's first probe
        status, text = await _probe(tr, unit, p)
        if status == "crc":
            garbled += 1
        if status in ("match", "answer"):
            answered = answered or text
        if status == "match":
            return answered, (p, text), garbled
    return answered, None, garbled


def _scan_report(args: argparse.Namespace, found: list[tuple[int, str, str]], probed: int,
                 noisy: int, elapsed: float, out: TextIO) -> int:
    """What the scan found, as a table and a config block (or JSON); 1 when nothing."""
    where = args.serial or "%s:%d" % (args.host, args.tcp_port)
    link = _link(args)
    one_device = _one_device(found, probed)
    notes: list[str] = []
    if one_device:
        notes.append("every unit id tried (%d) answered alike: this is ONE device that "
                     "ignores the unit id, not %d meters; configure it once (unit %d)"
                     % (probed, probed, found[0][0]))
        found = found[:1]
    if noisy:
        notes.append("%d garbled replies: %s" % (noisy, HINT_CRC))
    if args.units is None and link == "tcp":
        notes.append("tried the common unit ids %s only; --units 1-247 tries them all"
                     % DEFAULT_TCP_UNITS)
    if args.json:
        out.write(json.dumps({
            "where": where, "link": link, "units_tried": probed, "elapsed_s":
            round(elapsed, 2), "found": [{"unit": u, "profile": None if n == "?" else n,
                                          "identified_as": t} for u, n, t in found],
            "one_device_ignores_unit_id": one_device, "garbled_replies": noisy,
            "notes": notes, "config": config_block(args, found) if found else ""}) + "\n")
        return 0 if found else 1
    if not found:
        out.write("no unit answered on %s (%d unit ids in %s).\n%s\n" % (
            where, probed, clock(elapsed),
            HINT_NO_REPLY if link != "tcp" else HINT_NO_REPLY_TCP))
        for note in notes:
            out.write("note: %s\n" % note)
        return 1
    out.write("%-5s %-11s %s\n" % ("unit", "profile", "identified as"))
    for unit, name, text in found:
        out.write("%-5d %-11s %s\n" % (unit, name, text))
    out.write("%d unit(s) found on %s (%d unit ids in %s)\n" % (len(found), where, probed,
                                                               clock(elapsed)))
    for note in notes:
        out.write("note: %s\n" % note)
    out.write("\n# paste into the agent's config (check ids and poll_s):\n")
    out.write(config_block(args, found))
    return 0


def scan_main(args: argparse.Namespace) -> int:
    if args.protocol == "dlt645" and args.json:
        return fail("scan", "--json is for Modbus buses for now", 2)
    if _line_defaults(args):
        from agent.dlt645.tools import scan_main as dlt645_scan
        return dlt645_scan(args)
    if args.addresses:
        return fail("scan", "--addresses is for --protocol dlt645 (Modbus: --units)", 2)
    try:
        default = DEFAULT_TCP_UNITS if args.host and not args.rtu_over_tcp else "1-247"
        units = common_first(parse_units(args.units if args.units is not None else default))
        names = [n.strip() for n in args.profiles.split(",") if n.strip()] or \
            available_profiles("modbus")
        profiles = _candidates(names)
    except (ValueError, ProfileError) as e:
        return fail("scan", str(e), 2)
    if not profiles:
        return fail("scan", "none of those profiles has an [identify] section", 2)
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


class ReadResult:
    """One read of every quantity: the values, what is wrong, and a fatal port error."""

    def __init__(self, t: float) -> None:
        self.t = t
        self.values: dict[str, float] = {}
        self.plausible: set[str] = set()
        self.quality: list[str] = []
        self.problems: list[str] = []
        self.fatal = ""  # the port or host is gone: nothing was read

    @property
    def ok(self) -> bool:
        return not self.fatal and not self.problems and bool(self.values)


async def _read_once(args: argparse.Namespace, profile: Profile, tr: Transport) -> ReadResult:
    from agent.decode import Decoder
    from agent.model import RawBlock, RawPoll, quality_names

    fields = list(profile.quantities.values())
    requests = plan_reads(fields, profile.quirks.max_gap, profile.quirks.max_registers)
    res = ReadResult(time.time())
    serial = bool(args.serial) or args.rtu_over_tcp
    blocks: list[RawBlock] = []
    unsupported: set[int] = set()
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
            if e.kind == Failure.IO:
                res.fatal = str(e)
                return res
            if e.kind == Failure.EXCEPTION:
                if e.exception_code == 1:
                    unsupported.add(r.fc)
                name = EXCEPTION_NAMES.get(e.exception_code, "exception")
                res.problems.append("unit %d answered exception %d (%s) at %s: %s" % (
                    args.unit, e.exception_code, name, where,
                    HINT_EXC.get(e.exception_code, "see the meter's manual")))
            elif e.kind == Failure.CRC:
                res.problems.append("garbled reply at %s: %s" % (where, HINT_CRC))
            elif e.kind == Failure.MISMATCH:
                res.problems.append("%s at %s: bad data, not shown" % (e, where))
            else:
                res.problems.append("unit %d: %s%s" % (
                    args.unit, "%s: " % e if e.exception_code else "",
                    HINT_NO_REPLY if serial else HINT_NO_REPLY_TCP))
                break  # a silent meter will not answer the next request either
            continue
        blocks.append(RawBlock(r.fc, r.address, regs))
        if profile.quirks.pause_ms:
            await asyncio.sleep(profile.quirks.pause_ms / 1000.0)

    class _Plan:  # the decoder needs only these attributes of a MeterPlan
        def __init__(self) -> None:
            self.profile = profile
            self.quantities = tuple(profile.quantities)
            self.quirks = profile.quirks

    raw = RawPoll("unit%d" % args.unit, res.t, blocks)
    reading = Decoder(_Plan()).decode(raw)  # type: ignore[arg-type]
    res.values = Decoder(_Plan()).values_from(raw)  # type: ignore[arg-type]
    res.plausible = set(reading.values)
    res.quality = [n for n in quality_names(reading.quality) if n != "missing" or res.values]
    mismatch = implausible(res.values) if res.values else ""
    if mismatch:
        res.problems.append("profile mismatch: %s: %s" % (mismatch, PROFILE_HINT))
    return res


def _read_json(args: argparse.Namespace, profile: Profile, res: ReadResult) -> str:
    from agent.replay import iso_utc

    return json.dumps({
        "time": iso_utc(res.t), "t": res.t, "unit": args.unit, "profile": profile.name,
        "where": args.serial or "%s:%d" % (args.host, args.tcp_port),
        "values": {n: {"value": res.values[n] if math.isfinite(res.values[n]) else None,
                       "unit": f.unit,
                       "plausible": n in res.plausible}
                   for n, f in profile.quantities.items() if n in res.values},
        "quality": res.quality if res.values else [], "problems": res.problems,
        "error": res.fatal, "ok": res.ok}, allow_nan=False, default=str)


def _read_text(args: argparse.Namespace, profile: Profile, res: ReadResult) -> str:
    where = args.serial or "%s:%d" % (args.host, args.tcp_port)
    lines = ["%s, unit %d on %s, profile %s%s" % (
        profile.title, args.unit, where, profile.name,
        (", %s" % time.strftime("%H:%M:%S", time.localtime(res.t))) if args.repeat else "")]
    if res.fatal:
        lines.append("error: %s" % res.fatal)
    if res.values:
        lines.append("%-16s %14s  %-4s %s" % ("quantity", "value", "unit", "register"))
        for name, f in profile.quantities.items():
            if name not in res.values:
                continue
            flag = "" if name in res.plausible else "  <- implausible"
            lines.append("%-16s %14s  %-4s fc%d 0x%04X %s%s" % (
                name, _fmt(res.values[name]), f.unit, f.fc, f.address, f.type, flag))
        if res.quality:
            lines.append("quality: %s" % ", ".join(res.quality))
    lines.extend("problem: %s" % p for p in res.problems)
    return "\n".join(lines) + "\n"


async def _read(args: argparse.Namespace, profile: Profile, out: TextIO) -> int:
    tr = _transport(args)
    try:
        await tr.connect()
    except TransportError as e:
        return fail("read", str(e))
    live_tty = bool(args.repeat) and not args.json and out.isatty()
    try:
        while True:
            res = await _read_once(args, profile, tr)
            if res.fatal and not args.repeat:
                return fail("read", res.fatal)
            if live_tty:
                out.write("\x1b[H\x1b[2J")  # redraw in place: a live view while wiring
            out.write(_read_json(args, profile, res) + "\n" if args.json
                      else _read_text(args, profile, res))
            out.flush()
            if not args.repeat:
                return 0 if res.ok else 1
            if res.fatal:
                tr.close()  # the port went away: open it afresh next time
            await asyncio.sleep(args.repeat)
    finally:
        tr.close()


def read_main(args: argparse.Namespace) -> int:
    if args.protocol == "dlt645" and (args.json or args.repeat):
        return fail("read", "--json and --repeat are for Modbus meters for now", 2)
    if _line_defaults(args):
        from agent.dlt645.tools import read_main as dlt645_read
        return dlt645_read(args)
    if args.unit is None or args.profile is None:
        return fail("read", "Modbus needs --unit and --profile (DL/T 645 meters: "
                    "--protocol dlt645 --address ...)", 2)
    if not 1 <= args.unit <= 247:
        return fail("read", "--unit %d is not a Modbus unit id (1-247)" % args.unit, 2)
    if args.repeat is not None and not args.repeat > 0:
        return fail("read", "--repeat must be > 0 seconds", 2)
    try:
        profile = load_profile(args.profile)
    except ProfileError as e:
        return fail("read", str(e), 2)
    try:
        return asyncio.run(_read(args, profile, sys.stdout))
    except KeyboardInterrupt:
        return 0 if args.repeat else 130  # Ctrl-C is how a live view ends
