"""``loadwatch hil``: run scenarios against the agent, or serve meters to a real gateway.

    loadwatch hil run SCENARIO.toml [--agent local|none] [--serial /dev/ttyUSB0]
                      [--data DIR] [--speed X]
    loadwatch hil list

``--agent local`` (default) runs the whole loop on a fast simulated clock and prints the
report; the exit code is 0 only when every expectation of the scenario holds (1 when one
fails, 2 for a bad scenario or usage). ``--agent none`` only serves the meters, in real
time (or ``--speed``), for an external gateway under test, until Ctrl-C: TCP buses on
``--host``/``--tcp-port``, RTU buses on the ``--serial`` ports in bus order, or, without
``--serial``, behind the RS-485 link emulator on a pty whose path is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from agent.cliargs import deprecated_alias, tcp_port
from agent.link import serial_open_error
from hil.scenario import ScenarioError, load, shipped


def add_hil_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="hil_command", metavar="ACTION")
    r = sub.add_parser("run", help="run a scenario and print the report")
    r.add_argument("scenario", help="scenario TOML file, or the name of a shipped one")
    r.add_argument("--agent", choices=("local", "none"), default="local",
                   help="local: embedded broker + agent + report (default); none: only "
                   "serve the meters for an external gateway until Ctrl-C")
    r.add_argument("--serial", action="append", default=[], metavar="PORT",
                   help="with --agent none: serve the RTU bus on this real serial port "
                   "(e.g. /dev/ttyUSB0 on a USB-RS485 adapter); repeat for several buses")
    r.add_argument("--data", default=None, metavar="DIR",
                   help="folder with the public traces (sgsc25_halfhourly.csv.gz) for "
                   "household = \"auto\"/\"sgsc:N\"; default: synthetic households")
    r.add_argument("--speed", type=float, default=None,
                   help="simulated seconds per real second (default: the scenario's with "
                   "--agent local, 1 with --agent none)")
    r.add_argument("--host", default="127.0.0.1",
                   help="--agent none: address for TCP buses (default 127.0.0.1)")
    r.add_argument("--tcp-port", dest="port", type=tcp_port, default=5020,
                   help="--agent none: TCP port of the first TCP bus, next buses +1 "
                   "(default 5020)")
    deprecated_alias(r, "--port", "--tcp-port", "port", type=tcp_port)
    r.add_argument("--state-dir", default=None, metavar="DIR",
                   help="--agent local: where the agent keeps its state and outbox (default "
                   "/dev/shm: the outbox fsyncs every alert and health event, which on a "
                   "disk slows a fast clock)")
    r.add_argument("--quiet", action="store_true", help="no progress lines, only the report")
    sub.add_parser("list", help="list the shipped scenarios")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def hil_main(args: argparse.Namespace) -> int:
    if getattr(args, "hil_command", None) == "list":
        for name in shipped():
            try:
                sc = load(name)
                print("%-22s %s" % (name, sc.description))
            except ScenarioError as e:
                print("%-22s (broken: %s)" % (name, e))
        return 0
    if getattr(args, "hil_command", None) != "run":
        print("loadwatch hil: choose an action: `loadwatch hil run SCENARIO` or "
              "`loadwatch hil list` (see --help)", file=sys.stderr)
        return 2
    try:
        sc = load(args.scenario)
    except ScenarioError as e:
        print(e, file=sys.stderr)
        return 2
    if args.speed is not None and not args.speed > 0:
        print("loadwatch hil: --speed must be > 0", file=sys.stderr)
        return 2
    data_dir = Path(args.data) if args.data else None
    if data_dir is not None and not (data_dir / "sgsc25_halfhourly.csv.gz").exists():
        print("loadwatch hil: --data %s has no sgsc25_halfhourly.csv.gz" % data_dir,
              file=sys.stderr)
        return 2
    if args.agent == "local":
        if args.serial:
            print("loadwatch hil: --serial serves meters to an external gateway: use it "
                  "with --agent none", file=sys.stderr)
            return 2
        sc.with_timeline(args.speed)
        return _run_local(sc, data_dir, args.quiet, args.state_dir)
    rtu = [b for b in sc.buses if b.kind == "rtu"]
    if len(args.serial) > len(rtu):
        print("loadwatch hil: %d --serial ports given but the scenario has %d rtu bus(es)"
              % (len(args.serial), len(rtu)), file=sys.stderr)
        return 2
    return _serve(sc, data_dir, args)


def _run_local(sc, data_dir: Path | None, quiet: bool, state_dir: str | None) -> int:
    from hil.runner import run_local

    try:
        report = asyncio.run(run_local(sc, data_dir, log=None if quiet else _say,
                                       state_root=state_dir))
    except KeyboardInterrupt:
        return 130
    except ValueError as e:  # a load that cannot be built from the scenario's values
        print("scenario error: %s in %s" % (e, sc.source), file=sys.stderr)
        return 2
    except (OSError, RuntimeError, TimeoutError) as e:  # broker, ports, the agent itself
        print("loadwatch hil: the run could not complete: %s" % e, file=sys.stderr)
        return 1
    print(report.text(), flush=True)
    return 0 if report.passed else 1


def _serve(sc, data_dir: Path | None, args: argparse.Namespace) -> int:
    from hil.runner import serve

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await serve(sc, data_dir, list(args.serial), args.host, args.port,
                        args.speed or 1.0, stop, _say)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    for path in args.serial:
        why = serial_open_error(path)
        if why:
            print("loadwatch hil: cannot serve on --serial %s: %s" % (path, why),
                  file=sys.stderr)
            return 1
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        return 130
    except ValueError as e:
        print("scenario error: %s in %s" % (e, sc.source), file=sys.stderr)
        return 2
    except OSError as e:
        print("loadwatch hil: %s" % e, file=sys.stderr)
        return 1
    except RuntimeError as e:  # pymodbus: "Could not start listen" (port busy or in use)
        print("loadwatch hil: cannot serve the meters (%s): is a --serial port busy, or "
              "--tcp-port %d already in use?" % (e, args.port), file=sys.stderr)
        return 1
    return 0
