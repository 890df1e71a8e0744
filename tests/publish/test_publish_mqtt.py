"""The publisher against a real Mosquitto in each configuration, its errors, commands."""

from __future__ import annotations

import json
import logging
import time

import paho.mqtt.client as mqtt
import pytest
from conftest import HOST, PREFIX, USERS, broker_settings
from publish_helpers import alert, health, put, score, start_publisher, telemetry, wait


def deliver_all_kinds(pub, ob, c, sub):
    events = [alert("m1", 1), telemetry("m1", 1), score("m1", 1), health("m1", 1),
              alert("m1", 1, "cleared")]
    for ev in events:
        assert put(pub, ob, c, ev)
    want = {ev.id for ev in events}
    assert sub.wait_for(lambda s: want <= set(s.ids)), sorted(set(s.ids for s in [sub]))
    assert wait(lambda: ob.stats()["pending"] == 0)
    status = sub.payloads("status")
    assert status and status[-1]["state"] == "online"
    assert status[-1]["outbox"]["dropped"] == {"telemetry": 0, "score": 0}
    return events


@pytest.mark.parametrize("protocol", ["auto", "3.1.1"])
def test_anonymous_delivery_of_every_kind_and_clean_stop(broker, subscribers, tmp_path,
                                                         protocol):
    sub = subscribers(broker.port)
    pub, ob, c = start_publisher(broker_settings(broker.port, protocol=protocol),
                                 tmp_path / "o.db")
    try:
        assert pub.connected.wait(10), pub.last_error
        events = deliver_all_kinds(pub, ob, c, sub)
        # By topic: compact telemetry names its meter only there.
        got = [m["payload"]["id"] for m in list(sub.messages)
               if "/meter/m1/" in m["topic"] and isinstance(m["payload"], dict)]
        assert got == [e.id for e in events]  # in order
        assert pub.status_payload()["mqtt"]["protocol"] == ("5" if protocol == "auto"
                                                             else "3.1.1")
    finally:
        pub.stop(3)
        ob.close()
    assert sub.wait_for(lambda s: s.payloads("status")[-1]["state"] == "offline")
    assert sub.payloads("status")[-1]["reason"] == "stopped"


def test_retained_state_seen_by_a_late_subscriber(broker, subscribers, tmp_path):
    pub, ob, c = start_publisher(broker_settings(broker.port), tmp_path / "o.db")
    try:
        put(pub, ob, c, alert("m1", 1))
        put(pub, ob, c, alert("m1", 1, "cleared"))
        put(pub, ob, c, health("m1", 1))
        assert wait(lambda: ob.stats()["pending"] == 0)
        late = subscribers(broker.port)
        assert late.wait_for(lambda s: len(s.payloads()) >= 3)
        assert late.payloads("alert")[0]["state"] == "cleared"  # current state, retained
        assert {m["retain"] for m in late.messages} == {True}
    finally:
        pub.stop(3)
        ob.close()


def test_last_will_is_offline_when_the_agent_vanishes(broker, subscribers, tmp_path):
    sub = subscribers(broker.port)
    pub, ob, _c = start_publisher(broker_settings(broker.port, keepalive_s=5),
                                 tmp_path / "o.db")
    assert pub.connected.wait(10)
    assert sub.wait_for(lambda s: s.payloads("status"))
    # Simulate a dead process: close the socket under paho without a DISCONNECT.
    pub._client.socket().close()
    try:
        assert sub.wait_for(lambda s: any(p["state"] == "offline" and
                                          p["reason"] == "connection lost"
                                          for p in s.payloads("status")), 10)
        # ...and the publisher reconnects and says online again.
        assert sub.wait_for(lambda s: s.payloads("status")[-1]["state"] == "online", 10)
        assert pub.connects == 2
    finally:
        pub.stop(3)
        ob.close()


def test_password_and_acl(auth_broker, subscribers, tmp_path, caplog):
    sub = subscribers(auth_broker.port, username="utility", password=USERS["utility"])
    settings = broker_settings(auth_broker.port, username="gw1", password=USERS["gw1"])
    pub, ob, c = start_publisher(settings, tmp_path / "o.db")
    try:
        assert pub.connected.wait(10), pub.last_error
        with caplog.at_level(logging.DEBUG):
            deliver_all_kinds(pub, ob, c, sub)
            # m2 is not in gw1's ACL: MQTT 5 PUBACK 0x87 is detected, reported, the alert
            # parked (not lost, retried next start) and delivery goes on behind it.
            put(pub, ob, c, alert("m2", 1))
            put(pub, ob, c, alert("m1", 7))
            assert sub.wait_for(lambda s: "m1:raised:7" in s.ids)
            assert wait(lambda: pub.error_kind == "acl"), pub.last_error
        assert "0x87" in pub.last_error and "ACL" in pub.last_error
        assert "m2:raised:1" not in sub.ids
        assert wait(lambda: ob.stats()["pending"] == 1)  # only the parked alert is left
        assert ob.stats()["rejected"] == 1
        assert USERS["gw1"] not in caplog.text  # secrets never logged
    finally:
        pub.stop(2)
        ob.close()


def test_acl_denial_is_invisible_with_mqtt_311(auth_broker, subscribers, tmp_path):
    """Documented limitation: Mosquitto acknowledges an ACL-denied 3.1.1 publish like any
    other and drops it, so the agent cannot tell; use MQTT 5 (the default)."""
    sub = subscribers(auth_broker.port, username="utility", password=USERS["utility"])
    settings = broker_settings(auth_broker.port, username="gw1", password=USERS["gw1"],
                               protocol="3.1.1")
    pub, ob, c = start_publisher(settings, tmp_path / "o.db")
    try:
        put(pub, ob, c, alert("m2", 1))
        put(pub, ob, c, alert("m1", 1))
        assert sub.wait_for(lambda s: "m1:raised:1" in s.ids)
        assert wait(lambda: ob.stats()["pending"] == 0)
        assert "m2:raised:1" not in sub.ids and pub.error_kind == ""
    finally:
        pub.stop(2)
        ob.close()


def test_wrong_password_is_a_clear_error(auth_broker, tmp_path, caplog):
    settings = broker_settings(auth_broker.port, username="gw1", password="wrong-pw-123")
    with caplog.at_level(logging.INFO):
        pub, ob, _c = start_publisher(settings, tmp_path / "o.db")
        try:
            assert wait(lambda: pub.error_kind == "auth"), pub.last_error
            assert not pub.connected.is_set()
            assert "wrong user name or password" in pub.last_error
            assert "'gw1'" in pub.last_error
        finally:
            pub.stop(1)
            ob.close()
    assert "wrong-pw-123" not in caplog.text and "wrong-pw-123" not in pub.last_error


def test_refused_connection_is_a_clear_error_and_backs_off(tmp_path):
    from hil.broker import free_port

    pub, ob, _c = start_publisher(broker_settings(free_port()), tmp_path / "o.db")
    try:
        assert wait(lambda: pub.error_kind == "refused")
        assert "refused the connection" in pub.last_error
        assert wait(lambda: pub.backoff.failures >= 3)
    finally:
        pub.stop(1)
        ob.close()


def test_tls_with_a_test_ca(tls_broker, pki, subscribers, tmp_path):
    sub = subscribers(tls_broker.port, tls={"ca": pki["ca"]})
    settings = broker_settings(tls_broker.port, tls=True, ca_file=pki["ca"])
    pub, ob, c = start_publisher(settings, tmp_path / "o.db")
    try:
        assert pub.connected.wait(10), pub.last_error
        deliver_all_kinds(pub, ob, c, sub)
        assert sub.payloads("status")[-1]["mqtt"]["tls"] is True
    finally:
        pub.stop(2)
        ob.close()


def test_tls_bad_ca_is_a_clear_error(tls_broker, pki, tmp_path):
    settings = broker_settings(tls_broker.port, tls=True, ca_file=pki["rogue_ca"])
    pub, ob, _c = start_publisher(settings, tmp_path / "o.db")
    try:
        assert wait(lambda: pub.error_kind == "tls"), pub.last_error
        assert "could not be verified" in pub.last_error
        assert "certificate" in pub.last_error and pki["rogue_ca"] in pub.last_error
    finally:
        pub.stop(1)
        ob.close()


def test_tls_without_tls_on_the_client_is_an_error(tls_broker, tmp_path):
    pub, ob, _c = start_publisher(broker_settings(tls_broker.port), tmp_path / "o.db")
    try:
        assert wait(lambda: pub.error_kind in ("io", "timeout")), pub.last_error
        assert not pub.connected.is_set()
    finally:
        pub.stop(1)
        ob.close()


def test_tls_with_client_certificates(client_cert_broker, pki, subscribers, tmp_path):
    tls = {"ca": pki["ca"], "cert": pki["client_cert"], "key": pki["client_key"]}
    sub = subscribers(client_cert_broker.port, tls=tls)
    settings = broker_settings(client_cert_broker.port, tls=True, ca_file=pki["ca"],
                               cert_file=pki["client_cert"], key_file=pki["client_key"])
    pub, ob, c = start_publisher(settings, tmp_path / "o.db")
    try:
        assert pub.connected.wait(10), pub.last_error
        deliver_all_kinds(pub, ob, c, sub)
    finally:
        pub.stop(2)
        ob.close()
    # Without a client certificate the broker refuses the handshake: a clear TLS error.
    settings = broker_settings(client_cert_broker.port, tls=True, ca_file=pki["ca"])
    pub, ob, c = start_publisher(settings, tmp_path / "o2.db")
    try:
        assert wait(lambda: pub.error_kind in ("tls", "io")), pub.last_error
        assert not pub.connected.is_set()
    finally:
        pub.stop(1)
        ob.close()


# ----------------------------------------------------------------- commands

class Requester:
    def __init__(self, port):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="requester")
        self.client.connect(HOST, port)
        self.client.loop_start()

    def send(self, name, payload, retain=False):
        info = self.client.publish("%s/cmd/%s" % (PREFIX, name), payload, qos=1,
                                   retain=retain)
        info.wait_for_publish(5)

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


def test_commands_are_answered_and_bad_ones_change_nothing(broker, subscribers, tmp_path):
    calls = []

    def on_command(name, args):
        calls.append((name, args))
        if name == "read":
            if args["meter"] != "m1":
                raise ValueError("unknown meter %r" % args["meter"])
            return {"meter": "m1", "values": {"p_w": 1520.0}}
        if name == "state":
            return {"meters": [{"meter": "m1", "score": 12.0}]}
        return {"pong": True}

    replies = subscribers(broker.port, topic=PREFIX + "/cmd/+/reply")
    req = Requester(broker.port)
    req.send("ping", json.dumps({"id": "retained"}), retain=True)
    pub, ob, _c = start_publisher(broker_settings(broker.port), tmp_path / "o.db",
                                 on_command=on_command)
    try:
        assert pub.connected.wait(10)
        time.sleep(0.2)  # the publisher's subscription is in place after its CONNACK
        req.send("ping", json.dumps({"id": "q1"}))
        req.send("read", json.dumps({"id": "q2", "meter": "m1"}))
        req.send("state", b"")
        req.send("read", json.dumps({"id": "q3", "meter": "nope"}))
        req.send("ping", b"{not json")
        req.send("read", json.dumps({"id": "q4", "meter": "m1", "register": 40001,
                                     "value": 0}))
        req.send("write", json.dumps({"id": "q5", "meter": "m1", "value": 1}))
        req.send("ping", json.dumps({"id": "q6", "pad": "x" * 5000}))
        req.send("read", json.dumps(["m1"]))
        assert replies.wait_for(lambda s: len(s.payloads()) >= 9), replies.payloads()
        by_req = {p["request_id"]: p for p in replies.payloads()}
        assert by_req["q1"]["ok"] and by_req["q1"]["result"]["pong"] is True
        assert by_req["q2"]["result"]["values"]["p_w"] == 1520.0
        assert by_req["q3"]["ok"] is False and "unknown meter" in by_req["q3"]["error"]
        assert "unexpected argument" in by_req["q4"]["error"]
        assert "unknown command" in by_req["q5"]["error"]
        anonymous = [p for p in replies.payloads() if p["request_id"] is None]
        errors = sorted(p["error"] for p in anonymous if not p["ok"])
        assert len(errors) == 3, errors
        assert any("not valid UTF-8 JSON" in e for e in errors)
        assert any("too large" in e for e in errors)
        assert any("JSON object" in e for e in errors)
        assert any(p["ok"] and p["command"] == "state" for p in anonymous)
        # Only well-formed, known, read-only commands ever reached the agent.
        assert [n for n, _ in calls] == ["ping", "read", "state", "read"]
        # A retained command (left before the agent subscribed) would re-run on every
        # reconnect: it is ignored.
        assert "retained" not in {p["request_id"] for p in replies.payloads()}
    finally:
        req.stop()
        pub.stop(2)
        ob.close()


def test_tls_insecure_skip_verify_connects_without_a_matching_ca(tls_broker, pki, tmp_path):
    settings = broker_settings(tls_broker.port, tls=True, ca_file=pki["rogue_ca"],
                               insecure_skip_verify=True)
    pub, ob, _c = start_publisher(settings, tmp_path / "o.db")
    try:
        assert pub.connected.wait(10), pub.last_error
    finally:
        pub.stop(1)
        ob.close()
