"""Fixtures for the delivery tests: real Mosquitto brokers in each configuration, a test
PKI made with the openssl CLI, and a subscriber that validates every message it receives
against the shipped JSON Schemas and counts duplicates by ``id``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from publish_helpers import (
    broker_settings,  # noqa: F401 - re-exported for the tests
    wait,
)

from agent.publish import SCHEMA_OF_KIND, load_schema, schema_name
from hil.broker import MosquittoBroker

PREFIX = "lw/v1/s1/g1"
HOST = "127.0.0.1"

_VALIDATORS: dict[str, jsonschema.Draft202012Validator] = {}


def schema_errors(topic: str, payload: object) -> list[str]:
    """Validate one received payload against the schema its topic implies."""
    if "/cmd/" in topic and not topic.endswith("/reply"):
        name = "command"
    else:
        kind = payload.get("kind") if isinstance(payload, dict) else None
        name = SCHEMA_OF_KIND.get(kind or "", "")
        if isinstance(payload, dict) and kind is None and payload.get("schema") == 2:
            name = schema_name(payload)  # compact telemetry: its topic is its kind
            kind = "telemetry"
        if not name:
            return ["%s: no kind in %r" % (topic, payload)]
        leaf = topic.rsplit("/", 1)[-1]
        expected_leaf = {"alert": "alert", "telemetry": "telemetry", "score": "score",
                         "health": "health", "status": "status", "reply": "reply"}[name]
        if leaf != expected_leaf:
            return ["%s carries kind %s" % (topic, kind)]
    if name not in _VALIDATORS:
        _VALIDATORS[name] = jsonschema.Draft202012Validator(load_schema(name))
    return ["%s: %s" % (topic, e.message) for e in _VALIDATORS[name].iter_errors(payload)]


class Subscriber:
    """The utility's side: a (optionally persistent) subscriber that records messages,
    de-duplicates by payload ``id`` and validates every payload against its schema."""

    def __init__(self, port: int, topic: str = PREFIX + "/#", client_id: str | None = None,
                 persistent: bool = False, tls: dict | None = None, username: str = "",
                 password: str = ""):
        self.port = port
        self.topic = topic
        self.lock = threading.Lock()
        self.messages: list[dict] = []
        self.ids: dict[str, int] = {}
        self.duplicates = 0
        self.invalid: list[str] = []
        self.first: dict[str, object] = {}
        self.mismatched: list[str] = []  # a re-delivered id whose payload differs
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or "sub-%d" % id(self),
                                  clean_session=not persistent, protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(0.05, 0.3)
        if username:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set(ca_certs=tls["ca"], certfile=tls.get("cert"),
                                keyfile=tls.get("key"))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, client, userdata, msg) -> None:
        try:
            payload = json.loads(msg.payload) if msg.payload else None
        except ValueError:
            payload = {"_raw": bytes(msg.payload)}
        errors = schema_errors(msg.topic, payload) if payload is not None else []
        with self.lock:
            self.invalid.extend(errors)
            mid = payload.get("id") if isinstance(payload, dict) else None
            if mid is not None and mid in self.ids:
                self.duplicates += 1
                self.ids[mid] += 1
                if self.first[mid] != payload:
                    self.mismatched.append(mid)
                return
            if mid is not None:
                self.ids[mid] = 1
                self.first[mid] = payload
            self.messages.append({"topic": msg.topic, "payload": payload,
                                  "retain": bool(msg.retain), "received": time.time()})

    def start(self, timeout: float = 10.0) -> Subscriber:
        self.client.connect(HOST, self.port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(timeout):
            self.stop()
            raise TimeoutError("subscriber could not subscribe")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def payloads(self, leaf: str | None = None, kind: str | None = None) -> list[dict]:
        with self.lock:
            out = [m["payload"] for m in self.messages if isinstance(m["payload"], dict)]
        if leaf is not None:
            out = [p for p, m in zip(out, self.messages)
                   if m["topic"].rsplit("/", 1)[-1] == leaf]
        if kind is not None:
            out = [p for p in out if p.get("kind") == kind]
        return out

    def wait_for(self, pred, timeout: float = 10.0) -> bool:
        return wait(lambda: pred(self), timeout)


@pytest.fixture
def subscribers():
    """``subscribers(port, ...)`` -> a started Subscriber; all are stopped and checked for
    schema violations at teardown."""
    made: list[Subscriber] = []

    def make(port: int, **kw) -> Subscriber:
        s = Subscriber(port, **kw).start()
        made.append(s)
        return s

    yield make
    invalid = []
    for s in made:
        s.stop()
        invalid.extend(s.invalid)
        assert s.mismatched == [], "ids re-delivered with a different payload"
    assert invalid == [], "payloads that violate their JSON Schema: %s" % invalid[:5]


@pytest.fixture
def broker():
    with MosquittoBroker() as b:
        yield b


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "%s.key" % name, "-out", "%s.crt" % name, "-days", "2",
             "-subj", "/CN=%s" % name, "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _issue(d: Path, ca: str, name: str, cn: str, ext: str) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "%s.key" % name, "-out", "%s.csr" % name, "-subj", "/CN=%s" % cn,
             cwd=d)
    (d / ("%s.ext" % name)).write_text(ext)
    _openssl("x509", "-req", "-in", "%s.csr" % name, "-CA", "%s.crt" % ca, "-CAkey",
             "%s.key" % ca, "-CAcreateserial", "-out", "%s.crt" % name, "-days", "2",
             "-extfile", "%s.ext" % name, cwd=d)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> dict:
    """A test CA, a server certificate for 127.0.0.1, a client certificate, and a second
    (rogue) CA that signed nothing the broker uses."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is needed to make the test PKI")
    d = tmp_path_factory.mktemp("pki")
    _make_ca(d, "ca")
    _make_ca(d, "rogue-ca")
    _issue(d, "ca", "server", "127.0.0.1",
           "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
           "extendedKeyUsage=serverAuth\n")
    _issue(d, "ca", "client", "gw-test",
           "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    for f in d.glob("*.key"):
        os.chmod(f, 0o600)
    return {k: str(d / v) for k, v in {
        "ca": "ca.crt", "rogue_ca": "rogue-ca.crt", "server_cert": "server.crt",
        "server_key": "server.key", "client_cert": "client.crt", "client_key": "client.key",
    }.items()}


def tls_conf(pki: dict) -> str:
    """Mosquitto config lines for a TLS listener with the test PKI's server certificate."""
    return "cafile %s\ncertfile %s\nkeyfile %s\n" % (pki["ca"], pki["server_cert"],
                                                     pki["server_key"])


def client_cert_conf(pki: dict) -> str:
    """TLS that also requires a client certificate, its CN standing as the username."""
    return tls_conf(pki) + "require_certificate true\nuse_identity_as_username true\n"


def password_acl_conf(d: Path, users: dict[str, str], acl: str) -> str:
    """Mosquitto config lines for a password file of ``users`` and the ACL text ``acl``,
    both written into ``d``."""
    pw = d / "passwd"
    for i, (user, password) in enumerate(users.items()):
        args = ["mosquitto_passwd", "-b", str(pw), user, password]
        if i == 0:
            args.insert(1, "-c")
        subprocess.run(args, check=True, capture_output=True)
    (d / "acl").write_text(acl)
    return "allow_anonymous false\npassword_file %s\nacl_file %s\n" % (pw, d / "acl")


@pytest.fixture
def tls_broker(pki):
    with MosquittoBroker(tls_conf(pki)) as b:
        yield b


@pytest.fixture
def client_cert_broker(pki):
    with MosquittoBroker(client_cert_conf(pki)) as b:
        yield b


USERS = {"gw1": "gw1-secret-pw", "utility": "utility-pw"}


@pytest.fixture
def auth_broker(tmp_path):
    """Password file + ACL: gw1 may publish status, meter m1's topics and command replies
    (not meter m2's: the ACL-denial case); utility may read everything and send commands."""
    conf = password_acl_conf(tmp_path, USERS,
                             "user gw1\n"
                             "topic write %(p)s/status\n"
                             "topic write %(p)s/meter/m1/#\n"
                             "topic write %(p)s/cmd/+/reply\n"
                             "topic read %(p)s/cmd/+\n"
                             "user utility\n"
                             "topic read %(p)s/#\n"
                             "topic write %(p)s/cmd/+\n" % {"p": PREFIX})
    with MosquittoBroker(conf) as b:
        yield b
