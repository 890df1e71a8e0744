"""The technician's status page: ``loadwatch status``.

A technician at the cabinet has a laptop on the gateway's console, not the utility's
broker. The agent writes ``status.json`` next to its learned state at every checkpoint
(and when it stops); this command prints it as one table: each meter's last power, score,
detector state, alert and reachability, and the outbox's backlog and drops. It needs no
running agent and no network, so it also tells what a stopped or crashed agent last saw.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from agent.cliargs import add_config_argument

STATUS_FILE = "status.json"


def write_status(state_dir: str | os.PathLike, data: dict) -> None:
    """Write ``status.json`` atomically (a reader never sees half a file)."""
    path = Path(state_dir) / STATUS_FILE
    tmp = path.with_suffix(".tmp-status")
    tmp.write_text(json.dumps(data, separators=(",", ":"), default=str))
    os.replace(tmp, path)


def render(data: dict, now: float) -> str:
    """The page as text: a header, one row per meter, the outbox line."""
    written = data.get("written", 0.0)
    age = now - written
    lines = ["gateway %s/%s, loadwatch %s, written %s UTC (%s ago)%s" % (
        data.get("site", "?"), data.get("gateway", "?"), data.get("version", "?"),
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(written)), _age(age),
        "" if data.get("running") else ", agent stopped")]
    if data.get("running") and age > 3 * data.get("checkpoint_every_s", 300.0):
        lines.append("warning: not refreshed for %s: is the agent running? "
                     "(systemctl status loadwatch)" % _age(age))
    broker = data.get("broker", {})
    link = "NOT connected"
    if not data.get("running"):
        link = "(disconnected on stop)"
    elif broker.get("connected"):
        link = "connected"
    auth = ""
    if "password" in broker:
        auth = ", user %s, password: %s" % (repr(broker["username"]) if broker.get("username")
                                            else "(none)", broker["password"])
    lines.append("broker %s:%s %s%s" % (broker.get("host", "?"), broker.get("port", "?"), link,
                                        auth))
    lines.append("%-16s %-10s %9s %6s %-8s %-9s %s" % (
        "meter", "profile", "kW", "score", "detector", "health", "alert / quality"))
    for row in data.get("meters", []):
        kw = "%.3f" % (row["p_w"] / 1000.0) if row.get("p_w") is not None else "-"
        note = "ALERT %s" % row["alert"] if row.get("alert") else ""
        if row.get("reason"):
            # The health payload's own words: "timeout" alone does not tell an unplugged
            # adapter from a refused connection.
            note = (note + " " if note else "") + row["reason"]
        elif row.get("quality"):
            note = (note + " " if note else "") + "last reading: " + ",".join(row["quality"])
        lines.append("%-16s %-10s %9s %6.1f %-8s %-9s %s" % (
            row["meter"], row.get("profile", ""), kw, row.get("score", 0.0),
            row.get("state", ""), row.get("health", ""), note))
        if row.get("hint"):
            lines.append("%-16s hint: %s" % ("", row["hint"]))
    ob = data.get("outbox")
    if ob and ob.get("state") == "full":
        lines.append("OUTBOX FULL: %d messages held in memory (alerts are kept and sent when "
                     "there is room again): %s" % (ob.get("held", 0),
                                                   ob.get("disk_error") or "disk full"))
    if ob:
        lines.append("outbox: %d waiting (%d in flight), %.1f of %.1f MiB; dropped telemetry "
                     "%d, score %d; rejected by broker %d" % (
                         ob.get("pending", 0), ob.get("inflight", 0),
                         ob.get("bytes", 0) / 1048576, ob.get("max_bytes", 0) / 1048576,
                         ob.get("dropped", {}).get("telemetry", 0),
                         ob.get("dropped", {}).get("score", 0), ob.get("rejected", 0)))
    return "\n".join(lines)


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return "%ds" % seconds
    if seconds < 7200:
        return "%dmin" % (seconds / 60)
    return "%.1fh" % (seconds / 3600)


def add_status_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p, required=False, help="the agent's config (its state_dir is read)")
    p.add_argument("--state-dir", help="the agent's state_dir (default /var/lib/loadwatch)")
    p.add_argument("--json", action="store_true", help="print the raw status JSON")


def status_main(args: argparse.Namespace) -> int:
    if args.config and args.state_dir:
        print("loadwatch status: give the config or --state-dir, not both", file=sys.stderr)
        return 2
    if args.config:
        from agent.config import ConfigError, load

        try:
            state_dir = load(args.config).state_dir
        except ConfigError as e:
            print(e, file=sys.stderr)
            return 2
    else:
        state_dir = args.state_dir or "/var/lib/loadwatch"
    path = Path(state_dir) / STATUS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        print("loadwatch status: %s does not exist: the agent has not run with this "
              "state_dir yet (or --state-dir is wrong)" % path, file=sys.stderr)
        return 1
    except PermissionError:
        print("loadwatch status: no permission to read %s (try sudo, or run as the "
              "loadwatch user)" % path, file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print("loadwatch status: cannot read %s: %s" % (path, e), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(render(data, time.time()))
    return 0
