"""The ``loadwatch`` command.

Each subcommand lives with the room that owns it (``scan``/``read`` in agent/modbus,
``watch`` in agent/publish, ``hil`` in hil/, ``firmware`` in firmware_bridge/); this module
only dispatches, importing a room's code when its command is chosen, so ``loadwatch
check-config`` on a slow gateway does not pay for importing the rig.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad config, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from typing import Callable

# name -> (module, add_arguments function, main function, one-line help)
DELEGATED: dict[str, tuple[str, str, str, str]] = {
    "replay": ("agent.replay", "add_replay_arguments", "replay_main",
               "score a CSV of meter,timestamp,p_w[,pf] and print alert events as JSON lines"),
    "scan": ("agent.modbus.tools", "add_scan_arguments", "scan_main",
             "find Modbus units on a serial bus or TCP host and guess their profile"),
    "read": ("agent.modbus.tools", "add_read_arguments", "read_main",
             "read every quantity of one meter once and print a table"),
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
    print("ok")
    print(plan.describe())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from agent.config import ConfigError, load
    from agent.runtime import Agent

    try:
        plan = load(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
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
    from agent.profiles import available_profiles, load_profile

    for name in available_profiles():
        p = load_profile(name)
        print("%-16s %-44s %d quantities" % (name, p.title, len(p.quantities)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loadwatch",
        description="Edge agent: Modbus meters -> load-signature scoring -> MQTT alerts.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (repeat for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("run", help="run the agent with a config file")
    p.add_argument("--config", "-c", required=True, help="TOML config file")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check-config", help="validate a config and print the poll plan")
    p.add_argument("config", help="TOML config file")
    p.set_defaults(func=cmd_check_config)
    p = sub.add_parser("profiles", help="list the shipped meter profiles")
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
    parser = argparse.ArgumentParser(prog="loadwatch %s" % name, description=helptext)
    add(parser)
    args = parser.parse_args(argv)
    args.verbose = verbose
    return int(run(args) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = 0
    while argv and argv[0] in ("-v", "-vv", "-vvv", "--verbose"):
        verbose += argv[0].count("v") if argv[0].startswith("-v") else 1
        argv.pop(0)
    _setup_logging(verbose)
    try:
        if argv and argv[0] in DELEGATED:
            return _delegate(argv[0], argv[1:], verbose)
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
