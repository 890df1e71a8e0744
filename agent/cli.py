"""The ``loadwatch`` command.

Each subcommand lives with the room that owns it (``scan``/``read`` in agent/modbus,
``watch`` in agent/publish, ``hil`` in hil/, ``firmware`` in firmware_bridge/); this module
only dispatches, importing a room's code when its command is chosen, so ``loadwatch
check-config`` on a slow gateway does not pay for importing the rig.

Conventions every subcommand shares (agent/cliargs.py): ``-v`` anywhere on the line,
``--serial PATH`` for a serial device, ``--tcp-port N`` for a TCP port, the config as
``FILE`` or ``-c FILE``, a description and examples in ``--help``. Nothing a user can type
ends in a traceback: errors are one line on stderr and an exit code.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad config, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from typing import Callable

from agent.cliargs import add_config_argument, epilog, fail, resolve_config

# name -> (module, add_arguments function, main function, one-line help)
DELEGATED: dict[str, tuple[str, str, str, str]] = {
    "replay": ("agent.replay", "add_replay_arguments", "replay_main",
               "score a CSV of meter,timestamp,p_w[,pf] and print alert events as JSON lines"),
    "screen": ("agent.screen.cli", "add_screen_arguments", "screen_main",
               "score a utility's AMI history (CSV, daily curves, Parquet) on all cores "
               "or Spark"),
    "scan": ("agent.modbus.tools", "add_scan_arguments", "scan_main",
             "find Modbus units (or DL/T 645 meters) on a serial bus or TCP host"),
    "read": ("agent.modbus.tools", "add_read_arguments", "read_main",
             "read every quantity of one meter and print a table (or JSON)"),
    "status": ("agent.status", "add_status_arguments", "status_main",
               "the technician's status page: meters, scores, alerts, outbox (no network)"),
    "watch": ("agent.publish.watch", "add_watch_arguments", "watch_main",
              "subscribe to a broker and print alerts and status live (de-duplicated)"),
    "hil": ("hil.cli", "add_hil_arguments", "hil_main",
            "hardware-in-the-loop rig: run scenarios, serve simulated meters"),
    "firmware": ("firmware_bridge.cli", "add_firmware_arguments", "firmware_main",
                 "build and flash the MicroPython gateway firmware"),
    "demo": ("hil.demo", "add_demo_arguments", "demo_main",
             "simulated meters + broker + agent on a fast clock; shows alerts live"),
}

LOCAL_HELP = {
    "run": "run the agent with a config file (until SIGTERM or Ctrl-C)",
    "check-config": "validate a config and print the poll plan",
    "profiles": "list the shipped meter profiles, or show one register map",
}

EXAMPLES: dict[str, list[str]] = {
    "run": ["loadwatch run /etc/loadwatch/loadwatch.toml",
            "loadwatch -v run -c /etc/loadwatch/loadwatch.toml"],
    "check-config": ["loadwatch check-config /etc/loadwatch/loadwatch.toml"],
    "profiles": ["loadwatch profiles", "loadwatch profiles show sdm630"],
    "replay": ["loadwatch replay meters.csv --summary",
               "loadwatch replay meters.csv -c /etc/loadwatch/loadwatch.toml"],
    "screen": ["loadwatch screen ami_export.csv.gz --out screen-out --tz 8",
               "loadwatch screen curves.csv --kwh --out screen-out --top 50",
               "loadwatch screen part-*.parquet --out screen-out --engine spark"],
    "scan": ["loadwatch scan --serial /dev/ttyUSB0 --baud 9600 --units 1-10",
             "loadwatch scan --host 192.168.1.50 --json",
             "loadwatch scan --protocol dlt645 --serial /dev/ttyUSB0",
             "loadwatch scan --protocol dlt645 --host 10.0.0.9 --tcp-port 8899 "
             "--addresses 000012340001-000012340024"],
    "read": ["loadwatch read --serial /dev/ttyUSB0 --unit 1 --profile sdm630",
             "loadwatch read --host 192.168.1.50 --unit 1 --profile em24 --repeat 2",
             "loadwatch read --protocol dlt645 --serial /dev/ttyUSB0 --address 000012345678"],
    "status": ["loadwatch status /etc/loadwatch/loadwatch.toml",
               "loadwatch status --state-dir /var/lib/loadwatch --json"],
    "watch": ["loadwatch watch --host broker.example.net --tls --ca-file ca.pem",
              "loadwatch watch --host 127.0.0.1 --tcp-port 1883 --all"],
    "hil": ["loadwatch hil list", "loadwatch hil run village-bus",
            "loadwatch hil run village-bus --agent none --serial /dev/ttyUSB0"],
    "firmware": ["loadwatch firmware build --board esp32 --out build/gw",
                 "loadwatch firmware flash --serial /dev/ttyUSB0 --build build/gw"],
    "demo": ["loadwatch demo", "loadwatch demo --duration 30 --miner-day 2"],
}

VERBOSE_FLAGS = ("-v", "-vv", "-vvv", "--verbose")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("loadwatch")
    except Exception:  # not installed as a distribution (e.g. run from a source tree)
        return "0+unknown"


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(logging.DEBUG, level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_check_config(args: argparse.Namespace) -> int:
    from agent.config import ConfigError, load

    try:
        plan = load(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    for warning in plan.warnings:
        print(warning, file=sys.stderr)
    print("ok")
    print(plan.describe())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from agent.config import ConfigError, load
    from agent.runtime import Agent

    # `run` is a service: its meter transitions are INFO lines (journalctl), even
    # without -v.
    if not args.verbose:
        logging.getLogger("loadwatch").setLevel(logging.INFO)
    try:
        plan = load(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    for warning in plan.warnings:
        logging.getLogger("loadwatch").warning("%s", warning)
    agent = Agent(plan)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.request_stop)
        await agent.run()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        print("loadwatch: %s" % e, file=sys.stderr)
        return 1
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    from agent.profiles import ProfileError, available_profiles, load_profile

    if args.action is None:
        for name in available_profiles():
            p = load_profile(name)
            print("%-16s %-7s %-52s %d quantities" % (name, p.protocol, p.title,
                                                       len(p.quantities)))
        return 0
    if args.action != "show" or not args.name:
        return fail("profiles", "usage: loadwatch profiles [show NAME]", 2)
    try:
        p = load_profile(args.name)
    except ProfileError as e:
        return fail("profiles", str(e), 2)
    print("%s: %s" % (p.name, p.title))
    q = p.quirks
    if p.protocol == "dlt645":
        print("DL/T 645-2007%s" % ("; blocks: " + ", ".join(
            "%08X (%s)" % (b.di, " ".join(b.members)) for b in p.blocks) if p.blocks else ""))
        print("%-16s %-9s %-10s %-6s %10s %s" % ("quantity", "di", "format", "signed",
                                                 "scale", "unit"))
        for f in p.quantities.values():
            print("%-16s %08X  %-10s %-6s %10g %s" % (f.name, f.di, f.format,
                                                     "yes" if f.signed else "no", f.scale,
                                                     f.unit))
        return 0
    print("word order %s, max %d registers a request, max gap %d%s" % (
        q.word_order or "ABCD", q.max_registers, q.max_gap,
        ", pause %d ms" % q.pause_ms if q.pause_ms else ""))
    if p.identify:
        print("identified by %s in %g..%g" % (p.identify["quantity"], p.identify["min"],
                                               p.identify["max"]))
    print("%-16s %-4s %-7s %-8s %-5s %10s %s" % ("quantity", "fc", "address", "type",
                                                 "order", "scale", "unit"))
    for f in p.quantities.values():
        print("%-16s %-4d 0x%04X  %-8s %-5s %10g %s" % (
            f.name, f.fc, f.address, f.type, f.word_order or q.word_order or "ABCD",
            f.scale, f.unit))
    return 0


def _subparser(sub: argparse._SubParsersAction, name: str, helptext: str,
               **kw: object) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=helptext, description=helptext,
                          epilog=epilog(EXAMPLES[name]),
                          formatter_class=argparse.RawDescriptionHelpFormatter, **kw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loadwatch",
        description="Edge agent: Modbus meters -> load-signature scoring -> MQTT alerts.",
        epilog="-v (more log output, repeat for debug) is accepted anywhere on the line.\n"
               "Run `loadwatch COMMAND --help` for a command's options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (repeat for debug)")
    parser.add_argument("--version", action="version", version="loadwatch %s" % _version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = _subparser(sub, "run", LOCAL_HELP["run"])
    add_config_argument(p, required=True)
    p.set_defaults(func=cmd_run)
    p = _subparser(sub, "check-config", LOCAL_HELP["check-config"])
    add_config_argument(p, required=True)
    p.set_defaults(func=cmd_check_config)
    p = _subparser(sub, "profiles", LOCAL_HELP["profiles"])
    p.add_argument("action", nargs="?", choices=("show",), help="show one profile")
    p.add_argument("name", nargs="?", help="profile name or .toml path (with show)")
    p.set_defaults(func=cmd_profiles)
    for name, (_, _, _, helptext) in DELEGATED.items():
        # Delegated commands parse their own arguments (see main()); listed here for --help.
        sub.add_parser(name, help=helptext, add_help=False)
    return parser


def _delegate(name: str, argv: list[str], verbose: int) -> int:
    module_name, add_name, main_name, helptext = DELEGATED[name]
    module = importlib.import_module(module_name)
    add: Callable[[argparse.ArgumentParser], None] = getattr(module, add_name)
    run: Callable[[argparse.Namespace], int] = getattr(module, main_name)
    parser = argparse.ArgumentParser(prog="loadwatch %s" % name, description=helptext,
                                     epilog=epilog(EXAMPLES[name]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add(parser)
    args = parser.parse_args(argv)
    resolve_config(parser, args)
    args.verbose = verbose
    return int(run(args) or 0)


def _split_verbose(argv: list[str]) -> tuple[list[str], int]:
    """Take ``-v``/``-vv``/``--verbose`` out of the line wherever they stand (before or
    after the subcommand), up to a ``--``."""
    rest: list[str] = []
    verbose = 0
    for n, a in enumerate(argv):
        if a == "--":
            rest.extend(argv[n:])
            break
        if a in VERBOSE_FLAGS:
            verbose += a.count("v") if a.startswith("-v") else 1
        else:
            rest.append(a)
    return rest, verbose


def _silence_stdout() -> None:
    """After EPIPE (``loadwatch ... | head``), point stdout at /dev/null so the
    interpreter's final flush does not raise again (Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    argv, verbose = _split_verbose(list(sys.argv[1:] if argv is None else argv))
    _setup_logging(verbose)
    try:
        if argv and argv[0] in DELEGATED:
            code = _delegate(argv[0], argv[1:], verbose)
        else:
            parser = build_parser()
            args = parser.parse_args(argv)
            if not getattr(args, "command", None):
                parser.print_help(sys.stderr)
                print("loadwatch: error: no command given (one of the above)",
                      file=sys.stderr)
                return 2
            resolve_config(parser, args)
            args.verbose = verbose
            code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at exit
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): like any Unix tool, stop quietly.
        _silence_stdout()
        return 141
    except Exception as e:  # the last line of defence: never a traceback for a user
        if verbose >= 2:
            raise
        print("loadwatch: internal error: %s: %s (please report it; run with -vv for the "
              "traceback)" % (type(e).__name__, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
