"""``loadwatch watch``: print alerts and gateway status from a broker, live.

For the utility's operators and for technicians at a gateway: subscribes to the alert and
status topics of every gateway under ``--prefix`` (default ``loadwatch/v1/+/+``: all sites,
all gateways), prints one line per message, and drops QoS-1 re-deliveries by the payload
``id``. Payloads are JSON, or CBOR telemetry marked by its MQTT 5 content type. Retained
messages (the current alert of each meter, each gateway's status) are printed first and
marked ``(retained)``. Ctrl-C exits cleanly.

No paho here: the subscriber itself is ``agent.publish.watch_client.Watcher``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections import OrderedDict
from types import SimpleNamespace

from agent.cliargs import deprecated_alias, tcp_port

SEEN_MAX = 50_000  # ids remembered for de-duplication (oldest forgotten first)


def add_watch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="broker host (default %(default)s)")
    parser.add_argument("--tcp-port", dest="port", type=tcp_port, default=None,
                        help="broker port (default 1883, or 8883 with --tls)")
    deprecated_alias(parser, "--port", "--tcp-port", "port", type=tcp_port)
    parser.add_argument("--prefix", default="loadwatch/v1/+/+",
                        help="topic prefix; + wildcards allowed (default %(default)s)")
    parser.add_argument("--all", action="store_true",
                        help="also print health, score and telemetry messages")
    parser.add_argument("--json", action="store_true",
                        help="print each (de-duplicated) payload as one JSON line")
    parser.add_argument("--count", type=int, default=0,
                        help="exit after this many messages (default: run until Ctrl-C)")
    parser.add_argument("--session", default="",
                        help="client id of a persistent session: messages published while "
                             "watch was not running are delivered on the next start")
    parser.add_argument("--tls", action="store_true", help="use TLS (server verified)")
    parser.add_argument("--ca-file", default="", help="CA certificate file for --tls")
    parser.add_argument("--cert-file", default="", help="client certificate for --tls")
    parser.add_argument("--key-file", default="", help="client key for --tls")
    parser.add_argument("--insecure", action="store_true",
                        help="TLS without verifying the broker (testing only)")
    parser.add_argument("--username", default="")
    parser.add_argument("--password-file", default="",
                        help="file holding the password (or set LOADWATCH_MQTT_PASSWORD); "
                             "never on the command line, where ps would show it")
    parser.add_argument("--protocol", choices=("5", "3.1.1"), default="5")


def _fmt_num(v: object, unit: str = "", nd: int = 1) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return ("%." + str(nd) + "f%s") % (v, unit)
    return "-"


def _telemetry_v2(topic: str, payload: dict, tail: str) -> str:
    """Telemetry of schema 2 names nothing but its slot: site, gateway and meter come from
    the topic (<prefix>/meter/<id>/telemetry), the time is the slot's end."""
    from agent.publish.payloads import iso_utc

    parts = topic.split("/")
    meter = parts[-2] if len(parts) >= 3 else "?"
    where = "%s/%s" % (parts[-5], parts[-4]) if len(parts) >= 5 else "?/?"
    ts, dt = payload.get("ts"), payload.get("dt")
    when = iso_utc(ts + dt) if isinstance(ts, (int, float)) and isinstance(
        dt, (int, float)) else "?"
    p = (payload.get("q") or {}).get("p")
    mean = p
    if isinstance(p, list) and p:
        # W: one quantity's triple, or the total's mean and the phases (10; 4 with one
        # sample), start with the mean; the three phases alone (9; 3 with one sample)
        # add up to it.
        one = payload.get("n") == 1
        mean = p[0]
        if len(p) == (3 if one else 9):
            phases = p[::1 if one else 3]
            ok = all(isinstance(x, (int, float)) for x in phases)
            mean = sum(phases) if ok else None
    e = payload.get("e") or {}
    return "%s  TELEM  %s meter %s  mean %s  energy %s  import %s  score %s%s%s" % (
        when, where, meter, _fmt_num(mean, " W", 0), _fmt_num(payload.get("de"), " kWh", 3),
        _fmt_num(e.get("ei"), " kWh", 3), _fmt_num(payload.get("sc")),
        "  flags " + ",".join(payload["qf"]) if payload.get("qf") else "", tail)


def format_line(topic: str, payload: dict, retained: bool) -> str:
    """One human line per message (telemetry in either schema: 2, or 1 from an older
    gateway)."""
    if payload.get("schema") == 2 and "q" in payload and "kind" not in payload:
        return _telemetry_v2(topic, payload, "  (retained)" if retained else "")
    kind = payload.get("kind", "?")
    where = "%s/%s" % (payload.get("site", "?"), payload.get("gateway", "?"))
    when = payload.get("time", "?")
    tail = "  (retained)" if retained else ""
    if kind in ("raised", "updated", "cleared"):
        summary = (payload.get("evidence") or {}).get("summary", "")
        return "%s  ALERT %-7s %s meter %s  score %s  alert %s%s%s" % (
            when, kind.upper(), where, payload.get("meter"), _fmt_num(payload.get("score")),
            payload.get("alert_id"), ("  " + summary) if summary else "", tail)
    if kind == "status":
        ob = payload.get("outbox") or {}
        dropped = ob.get("dropped") or {}
        extra = ""
        if ob:
            extra = "  outbox pending %s, dropped telemetry %s score %s, rejected %s" % (
                ob.get("pending"), dropped.get("telemetry"), dropped.get("score"),
                ob.get("rejected"))
        reason = " (%s)" % payload["reason"] if payload.get("reason") else ""
        return "%s  STATUS %s %s%s%s%s" % (when, str(payload.get("state")).upper(), where,
                                           reason, extra, tail)
    if kind == "health":
        return "%s  HEALTH %s meter %s  %s  failures %s  backoff %s%s" % (
            when, where, payload.get("meter"), payload.get("state"),
            payload.get("consecutive_failures"), _fmt_num(payload.get("backoff_s"), " s"),
            tail)
    if kind == "score":
        return "%s  SCORE  %s meter %s  %s (%s)%s" % (
            when, where, payload.get("meter"), _fmt_num(payload.get("score")),
            payload.get("state"), tail)
    if kind == "telemetry":
        return "%s  TELEM  %s meter %s  mean %s  energy %s%s" % (
            when, where, payload.get("meter"), _fmt_num(payload.get("p_mean_w"), " W", 0),
            _fmt_num(payload.get("energy_kwh"), " kWh", 3), tail)
    return "%s  %s %s %s%s" % (when, kind, where, topic, tail)


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        with open(args.password_file) as f:
            return f.read().strip()
    return os.environ.get("LOADWATCH_MQTT_PASSWORD", "")


def watch_main(args: argparse.Namespace) -> int:
    from agent.publish.codec import decode
    from agent.publish.watch_client import Watcher, WatchError

    prefix = args.prefix.rstrip("/")
    if "#" in prefix:
        print("loadwatch watch: --prefix may use + but not #", file=sys.stderr)
        return 2
    try:
        password = _password(args)
    except OSError as e:
        print("loadwatch watch: cannot read --password-file: %s" % e.strerror, file=sys.stderr)
        return 2
    broker = SimpleNamespace(
        host=args.host, port=args.port or (8883 if args.tls else 1883),
        username=args.username, password=password, tls=args.tls or bool(args.ca_file),
        ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file,
        insecure_skip_verify=args.insecure, keepalive_s=30, protocol=args.protocol,
        client_id=args.session)
    topics = [prefix + "/status", prefix + "/meter/+/alert"]
    if args.all:
        topics += [prefix + "/meter/+/health", prefix + "/meter/+/score",
                   prefix + "/meter/+/telemetry"]
    seen: OrderedDict[str, None] = OrderedDict()
    printed = [0]
    holder: dict = {}

    def on_message(topic: str, raw: bytes, retained: bool, ctype: str | None) -> None:
        if not raw:
            return  # an empty retained message only clears a topic
        try:  # JSON, or CBOR telemetry announced by its MQTT 5 content type
            payload = decode(raw, ctype)
        except ValueError as e:
            print("%s: cannot be read (%d bytes): %s" % (topic, len(raw), e), file=sys.stderr)
            return
        if not isinstance(payload, dict):
            return
        mid = payload.get("id")
        if isinstance(mid, str):
            if mid in seen:
                return
            seen[mid] = None
            if len(seen) > SEEN_MAX:
                seen.popitem(last=False)
        if args.json:
            print(json.dumps(dict(payload, topic=topic, retained=retained),
                             separators=(",", ":")), flush=True)
        else:
            print(format_line(topic, payload, retained), flush=True)
        printed[0] += 1
        if args.count and printed[0] >= args.count:
            holder["w"].stop()

    try:
        watcher = Watcher(broker, topics, on_message, session=args.session,
                          on_link=lambda text: print("loadwatch watch: %s" % text,
                                                     file=sys.stderr, flush=True))
    except (OSError, ValueError) as e:
        print("loadwatch watch: TLS settings cannot be used: %s" % e, file=sys.stderr)
        return 2
    holder["w"] = watcher
    # Ctrl-C and SIGTERM end the watch cleanly even when the shell that started it ran it
    # in the background with SIGINT ignored (Python then installs no handler of its own).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        watcher.run()
    except KeyboardInterrupt:
        return 0
    except WatchError as e:
        print("loadwatch watch: %s" % e, file=sys.stderr)
        return 1
    return 0
