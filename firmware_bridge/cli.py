"""``loadwatch firmware build|flash`` (dispatched from agent/cli.py)."""

from __future__ import annotations

import argparse
import json
import sys

from agent.cliargs import deprecated_alias
from agent.config import ConfigError
from firmware_bridge.build import MARCH, BuildError, build
from firmware_bridge.flash import FlashError, flash


def add_firmware_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    b = sub.add_parser("build", help="compile the device app and core to .mpy with a manifest")
    b.add_argument("--board", choices=sorted(MARCH), default="esp32",
                   help="target board (sets mpy-cross -march); unix = tests and bench")
    b.add_argument("-c", "--config", help="firmware config TOML (default: one generic meter, "
                   "serial uplink)")
    b.add_argument("--out", help="output folder (default build/firmware-<board>)")
    b.add_argument("--mpy-cross", dest="mpy_cross", help="mpy-cross to use")
    b.add_argument("--all-modules", dest="all_modules", action="store_true",
                   help="ship every module, not only those the config's protocol and "
                   "uplink use")
    b.add_argument("--lines", action="store_true", help="keep source line numbers in "
                   "tracebacks (a debugging build; ~7 %% more .mpy)")
    f = sub.add_parser("flash", help="copy a build to a board with mpremote, verify, reset")
    port = f.add_mutually_exclusive_group(required=True)
    port.add_argument("--serial", metavar="PATH", help="serial port of the board, e.g. "
                      "/dev/ttyACM0 (RP2040) or /dev/ttyUSB0 (ESP32)")
    deprecated_alias(port, "--port", "--serial", "serial")
    f.add_argument("--build", default=None, help="build folder (default "
                   "build/firmware-esp32)")
    f.add_argument("--mpremote", help="mpremote to use (default: next to python, or PATH)")
    f.add_argument("--no-reset", action="store_true", help="do not reset after verifying")
    f.add_argument("--with-umqtt", action="store_true",
                   help="also `mpremote mip install umqtt.simple` (MQTT uplink; needs the "
                   "host online)")


def firmware_main(args: argparse.Namespace) -> int:
    if args.action == "build":
        try:
            m = build(args.board, args.config, args.out, args.mpy_cross,
                      everything=args.all_modules, lines=args.lines)
        except ConfigError as e:
            print(e, file=sys.stderr)
            return 2
        except BuildError as e:
            print("firmware build: %s" % e, file=sys.stderr)
            return 1
        except OSError as e:  # the output folder filled up or vanished mid-build
            print("firmware build: cannot write %s: %s" % (e.filename or args.out,
                                                           e.strerror), file=sys.stderr)
            return 1
        for e in m["files"]:
            print("%7d  %s  %s" % (e["bytes"], e["sha256"][:16], e["path"]))
        print("board %s (-march=%s), %d meters, uplink %s: %d bytes of .mpy (core %d), "
              "%d bytes in all" % (m["board"], m["march"], len(m["meters"]), m["uplink"],
                                   m["mpy_bytes"], m["core_mpy_bytes"], m["total_bytes"]))
        return 0
    if args.action == "flash":
        from firmware_bridge.build import ROOT

        build_dir = args.build or str(ROOT / "build" / "firmware-esp32")
        try:
            r = flash(build_dir, args.serial, args.mpremote, reset=not args.no_reset,
                      with_umqtt=args.with_umqtt)
        except FlashError as e:
            print("firmware flash: %s" % e, file=sys.stderr)
            return 1
        print(json.dumps(r))
        return 0
    print("loadwatch firmware: choose an action: `loadwatch firmware build` or "
          "`loadwatch firmware flash` (see --help)", file=sys.stderr)
    return 2
