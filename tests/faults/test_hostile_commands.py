"""Hostile command payloads and floods against the publisher's command path (issue 11
item 6, issue 13 item 13), over a real Mosquitto.

Each test is one row of the campaign table (``campaign.record``): ``runs`` is the requests
sent, ``crash_loops`` counts a dead command thread (no reply to a later request).
"""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from campaign import record

from agent.backoff import Backoff
from agent.config import BrokerSettings
from agent.publish.codec import Codec
from agent.publish.mqtt import COMMAND_BURST, COMMAND_QUEUE, COMMAND_RATE_PER_S, Publisher
from agent.publish.outbox import Outbox
from hil.broker import MosquittoBroker

# Fault campaigns (tests/faults): `make test` and `make faults` only.
pytestmark = pytest.mark.slow

PREFIX = "lw/v1/s1/g1"


class Utility:
    """The utility's side: sends commands (MQTT 5) and collects every reply."""

    def __init__(self, port: int):
        self.replies: list[dict] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="utility",
                                  protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(PREFIX + "/cmd/+/reply",
                                                                    qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.replies.append(json.loads(msg.payload))

    def send(self, name: str, payload: bytes | str, qos: int = 1, retain: bool = False,
             wait: bool = True) -> None:
        info = self.client.publish("%s/cmd/%s" % (PREFIX, name), payload, qos=qos,
                                   retain=retain)
        if wait:
            info.wait_for_publish(10)

    def reply_to(self, request_id: str, timeout: float = 10.0) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for r in self.replies:
                    if r.get("request_id") == request_id:
                        return r
            time.sleep(0.02)
        return None

    def count(self) -> int:
        with self.lock:
            return len(self.replies)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def rig(tmp_path):
    """A broker, a publisher answering commands through ``rig.handler``, a utility."""

    class Rig:
        def __init__(self) -> None:
            self.executed: list[tuple[str, dict]] = []
            self.handler = lambda name, args: {"pong": True}

    rig = Rig()

    def on_command(name: str, args: dict) -> dict:
        rig.executed.append((name, args))
        return rig.handler(name, args)

    with MosquittoBroker() as broker:
        settings = BrokerSettings(host="127.0.0.1", port=broker.port, client_id="gw-hostile",
                                  tls=False, prefix=PREFIX, keepalive_s=10)
        outbox = Outbox(tmp_path / "o.db", 10_000_000)
        pub = Publisher(settings, outbox, Codec(PREFIX, "s1", "g1"), on_command=on_command,
                        backoff=Backoff(0.05, 0.5))
        pub.start()
        utility = Utility(broker.port)
        rig.broker, rig.pub, rig.utility = broker, pub, utility
        try:
            assert pub.connected.wait(10), pub.last_error
            time.sleep(0.2)  # the command subscription follows the CONNACK
            yield rig
        finally:
            utility.stop()
            pub.stop(2)
            outbox.close()


def nested(levels: int) -> bytes:
    return b'{"id":' + b"[" * levels + b"]" * levels + b"}"


def test_deep_nesting_and_failing_handlers_never_end_the_command_thread(rig):
    bomb = nested(2000)
    assert len(bomb) <= 4096  # under the size limit: only the nesting can stop it
    rig.utility.send("ping", bomb)
    rig.utility.send("read", b'{"id": "deep-args", "meter": ' + b"[" * 900 + b"]" * 900
                     + b"}")

    def failing(name, args):
        if args.get("meter") == "boom":
            raise RecursionError("maximum recursion depth exceeded")
        if args.get("meter") == "odd":
            return {"values": {"p_w": object()}}  # not JSON-able
        return {"pong": True}

    rig.handler = failing
    rig.utility.send("read", json.dumps({"id": "boom", "meter": "boom"}))
    rig.utility.send("read", json.dumps({"id": "odd", "meter": "odd"}))
    rig.utility.send("ping", json.dumps({"id": "after"}))
    after = rig.utility.reply_to("after")
    dead = int(after is None)
    record("command: 2,000-deep nesting, failing handlers", runs=5, crash_loops=dead,
           note="replies %d of 5, thread alive: %s" % (rig.utility.count(), not dead))
    assert after is not None and after["ok"], "the command thread died"
    # Too deep to parse means too deep to read the id from: both get an anonymous error.
    anonymous = [r for r in rig.utility.replies if r["request_id"] is None]
    assert [r["ok"] for r in anonymous] == [False, False], anonymous
    assert all("nested too deeply" in r["error"] for r in anonymous), anonymous
    assert rig.utility.reply_to("boom")["ok"] is False
    assert rig.utility.reply_to("odd")["ok"] is False
    assert [n for n, _ in rig.executed] == ["read", "read", "ping"]


def test_a_flood_of_pings_gets_a_bounded_number_of_replies(rig):
    n = 10_000
    started = time.monotonic()
    for i in range(n):
        rig.utility.send("ping", b'{"id":"f%d"}' % i, qos=0, wait=False)
    rig.utility.send("ping", b'{"id":"flood-end"}')  # QoS 1: the flood has left the client
    # Wait until the gateway has worked through the flood (on a loaded machine that takes
    # longer than sending it): its drop counter stops moving.
    last, still_since = -1, time.monotonic()
    while time.monotonic() - still_since < 1.0 and time.monotonic() - started < 60.0:
        if rig.pub.commands_dropped != last:
            last, still_since = rig.pub.commands_dropped, time.monotonic()
        time.sleep(0.05)
    time.sleep(0.5)  # replies already granted reach the utility
    flood_s = time.monotonic() - started
    during = rig.utility.count()
    budget = COMMAND_BURST + COMMAND_RATE_PER_S * flood_s + 1
    # After the flood the budget refills and a normal request is answered again.
    time.sleep(1.0 / COMMAND_RATE_PER_S + 0.2)
    rig.utility.send("ping", json.dumps({"id": "after-flood"}))
    after = rig.utility.reply_to("after-flood")
    record("command: ping flood", runs=n, crash_loops=int(after is None),
           note="%d replies (budget %d), %d dropped" % (during, budget,
                                                        rig.pub.commands_dropped))
    assert during <= budget, "%d replies to %d pings in %.1f s" % (during, n, flood_s)
    assert during >= COMMAND_BURST  # the burst itself is answered
    assert after is not None and after["ok"]
    # The drops are counted where the utility sees them: in the status message.
    status = rig.pub.status_payload()["mqtt"]
    assert status["commands_dropped"] == rig.pub.commands_dropped > n // 2


def test_a_busy_reply_keeps_the_request_id(rig):
    release = threading.Event()
    rig.handler = lambda name, args: (release.wait(10), {"pong": True})[1]
    ids = ["b%d" % i for i in range(COMMAND_QUEUE + 3)]  # one running, a full queue, 2 more
    try:
        for rid in ids:
            rig.utility.send("ping", json.dumps({"id": rid}))
        assert rig.utility.reply_to(ids[-1], 5) is not None
        busy = [r for r in rig.utility.replies if "busy" in (r.get("error") or "")]
    finally:
        release.set()
    record("command: queue full (busy)", runs=len(ids),
           note="%d busy replies, %d without request_id" % (
               len(busy), sum(1 for r in busy if r["request_id"] is None)))
    assert busy and all(r["request_id"] in ids for r in busy), busy
    assert all(rig.utility.reply_to(rid) is not None for rid in ids)


def test_retained_commands_are_ignored_even_when_published_while_connected(rig):
    rig.utility.send("ping", json.dumps({"id": "retained-live"}), retain=True)
    rig.utility.send("ping", json.dumps({"id": "plain"}))
    assert rig.utility.reply_to("plain") is not None
    # The retained one is still on the broker: a reconnect must not run it either.
    rig.utility.subscribed.clear()
    rig.broker.restart()
    assert rig.utility.subscribed.wait(15) and rig.pub.connected.wait(15)
    time.sleep(0.5)
    rig.utility.send("ping", json.dumps({"id": "after-restart"}))
    assert rig.utility.reply_to("after-restart", 15) is not None
    ran = rig.utility.reply_to("retained-live", 0.1) is not None
    record("command: retained while connected", runs=1,
           note="retained command executed: %s" % ran)
    assert not ran
    assert len(rig.executed) == 2  # "plain" and "after-restart" only
