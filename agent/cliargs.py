"""Argument conventions shared by every ``loadwatch`` subcommand.

One option name has one meaning everywhere: ``--serial PATH`` is a serial device,
``--tcp-port N`` a TCP port number, ``-c/--config FILE`` (or the file as the positional
argument) the agent's config. Old spellings keep working for a while with a one-line
deprecation note, so scripts written against an earlier release do not break silently.
A command that cannot go on says why in one line, ``loadwatch COMMAND: why`` (``fail``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


class _DeprecatedAlias(argparse.Action):
    """Stores into the new option's dest and says once which spelling to use instead."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "",
                 **kwargs: Any):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print("loadwatch: note: %s is deprecated here, use %s (same meaning)"
              % (option_string, self.new), file=sys.stderr)
        setattr(namespace, self.dest, values)


def deprecated_alias(parser: argparse.ArgumentParser | Any, old: str, new: str, dest: str,
                     type: Any = None) -> None:
    """Accept ``old`` as a hidden synonym of the option ``new`` (stored in ``dest``)."""
    parser.add_argument(old, dest=dest, action=_DeprecatedAlias, new=new, type=type,
                        help=argparse.SUPPRESS, default=argparse.SUPPRESS)


def tcp_port(text: str) -> int:
    """argparse type for ``--tcp-port``: 1-65535, said plainly."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a TCP port number" % text) from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError("%d is not a TCP port (1-65535)" % port)
    return port


def add_config_argument(parser: argparse.ArgumentParser, required: bool,
                        help: str = "the agent's TOML config file") -> None:
    """``COMMAND FILE`` and ``COMMAND -c FILE`` both work, for every command that takes
    a config (a technician should not have to remember which one wants which)."""
    parser.add_argument("config_file", nargs="?", default=None, metavar="CONFIG",
                        help=help + " (same as -c)")
    parser.add_argument("-c", "--config", dest="config", default=None, metavar="FILE",
                        help=help + (" (required)" if required else ""))
    parser.set_defaults(_config_required=required, _config_prog=parser.prog)


def resolve_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Merge the positional and ``-c`` forms into ``args.config`` (usage error if both
    name different files, or if a required config is missing)."""
    pos = getattr(args, "config_file", None)
    opt = getattr(args, "config", None)
    if pos and opt and pos != opt:
        parser.error("the config is given twice (%s and -c %s): give it once" % (pos, opt))
    args.config = opt or pos
    if not args.config and getattr(args, "_config_required", False):
        prog = getattr(args, "_config_prog", parser.prog)
        parser.error("a config file is required: %s FILE or %s -c FILE" % (prog, prog))


def fail(command: str, message: str, code: int = 1) -> int:
    """Say on stderr why ``loadwatch COMMAND`` stops, in one line, and give its exit code
    (1: the meter or the line failed; 2: the command line or a file is unusable)."""
    print("loadwatch %s: %s" % (command, message), file=sys.stderr)
    return code


def epilog(examples: Sequence[str]) -> str:
    """The ``examples:`` block at the end of a subcommand's --help."""
    return "examples:\n" + "\n".join("  " + e for e in examples)
