"""Failure campaigns against a real Mosquitto: after each, every raised alert has reached a
persistent subscriber, and every re-delivery carries the same id (and the same payload).

Each campaign prints its counts (raised, received, duplicates, lost), e.g.::

    CAMPAIGN broker-restart: raised=... received=... duplicates=... lost=0
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import PREFIX, broker_settings, client_cert_conf, password_acl_conf, tls_conf
from publish_helpers import alert, put, score, start_publisher, telemetry, wait

from hil.broker import MosquittoBroker

# Failure campaigns against real brokers: `make test` only.
pytestmark = pytest.mark.slow

DRIVER = Path(__file__).with_name("agent_driver.py")


def report(capsys, name: str, raised: list[str], sub) -> int:
    received = [i for i in raised if i in sub.ids]
    lost = len(raised) - len(received)
    with capsys.disabled():
        print("\nCAMPAIGN %s: raised=%d received=%d duplicates=%d lost=%d"
              % (name, len(raised), len(received), sub.duplicates, lost))
    return lost


class Producer(threading.Thread):
    """Raises an alert (and telemetry) every ``pace`` seconds, like a busy gateway."""

    def __init__(self, pub, ob, c, pace: float = 0.01):
        super().__init__(name="producer", daemon=True)
        self.pub, self.ob, self.c, self.pace = pub, ob, c, pace
        self.raised: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.halt.is_set():
            ev = alert("m%d" % (i % 4), i)
            put(self.pub, self.ob, self.c, ev)
            self.raised.append(ev.id)  # put() returned: durable, must arrive
            put(self.pub, self.ob, self.c, telemetry("m%d" % (i % 4), i))
            i += 1
            time.sleep(self.pace)


def _campaign_config(kind: str, tmp_path: Path, pki: dict) -> tuple[str, dict, dict]:
    """Mosquitto config, publisher settings and subscriber options for one of the broker
    configurations a utility runs: the delivery guarantee must hold in each of them."""
    if kind == "anonymous":
        return "", {}, {}
    if kind == "password-acl":
        users = {"gw1": "gw1-pw-campaign", "utility": "utility-pw-campaign"}
        acl = ("user gw1\ntopic write %(p)s/#\ntopic read %(p)s/cmd/+\n"
               "user utility\ntopic read %(p)s/#\n" % {"p": PREFIX})
        return (password_acl_conf(tmp_path, users, acl),
                {"username": "gw1", "password": users["gw1"]},
                {"username": "utility", "password": users["utility"]})
    if kind == "tls":
        return tls_conf(pki), {"tls": True, "ca_file": pki["ca"]}, {"tls": {"ca": pki["ca"]}}
    assert kind == "client-cert"
    client = {"cert": pki["client_cert"], "key": pki["client_key"]}
    return (client_cert_conf(pki),
            {"tls": True, "ca_file": pki["ca"], "cert_file": client["cert"],
             "key_file": client["key"]},
            {"tls": dict(client, ca=pki["ca"])})


CONFIGS = ["anonymous", "password-acl", "tls", "client-cert"]


def _broker_campaign(tmp_path, subscribers, capsys, pki, name, config, outage):
    conf, pub_kw, sub_kw = _campaign_config(config, tmp_path, pki)
    name = "%s [%s]" % (name, config)
    with MosquittoBroker(conf) as b:
        sub = subscribers(b.port, client_id="utility-" + config, persistent=True, **sub_kw)
        pub, ob, c = start_publisher(broker_settings(b.port, **pub_kw), tmp_path / "o.db")
        prod = Producer(pub, ob, c)
        try:
            assert pub.connected.wait(10)
            prod.start()
            time.sleep(1.2)  # > autosave_interval: the subscriber's session is on disk
            outage(b)
            time.sleep(1.5)  # the broker is away; alerts pile up in the outbox
            assert not pub.connected.is_set() and ob.stats()["pending"] > 0
            b.start()
            time.sleep(1.0)
            prod.halt.set()
            prod.join()
            assert wait(lambda: ob.stats()["pending"] == 0, 20.0), ob.stats()
            ok = sub.wait_for(lambda s: all(i in s.ids for i in prod.raised), 15)
            assert ok, ("missing", [(n, i) for n, i in enumerate(prod.raised)
                                    if i not in sub.ids], len(prod.raised))
        finally:
            prod.halt.set()
            if prod.is_alive():
                prod.join()
            pub.stop(2)
            ob.close()
        assert report(capsys, name, prod.raised, sub) == 0
        assert pub.connects >= 2
        assert ob.stats()["rejected"] == 0  # nothing refused by the broker (ACL, size)
        # Per meter, alerts arrived in the order they were raised (first receipt).
        for m in range(4):
            got = [p["id"] for p in sub.payloads("alert") if p["meter"] == "m%d" % m]
            assert got == [i for i in prod.raised if i.startswith("m%d:" % m)]


@pytest.mark.parametrize("config", CONFIGS)
def test_broker_stopped_for_a_while_and_restarted(tmp_path, subscribers, capsys, pki, config):
    _broker_campaign(tmp_path, subscribers, capsys, pki, "broker-stop-restart", config,
                     lambda b: b.stop())


@pytest.mark.parametrize("config", CONFIGS)
def test_broker_killed_and_restarted(tmp_path, subscribers, capsys, pki, config):
    _broker_campaign(tmp_path, subscribers, capsys, pki, "broker-kill-9", config,
                     lambda b: b.kill())


def test_agent_kill_9_at_random_points(tmp_path, subscribers, capsys):
    rng = random.Random(20261125)
    out = tmp_path / "outbox.sqlite"
    raised: list[str] = []
    with MosquittoBroker() as b:
        sub = subscribers(b.port, client_id="utility-kill", persistent=True)
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        for run in range(21):
            last = run == 20
            cmd = [sys.executable, str(DRIVER), "--port", str(b.port), "--outbox", str(out),
                   "--run", str(run), "--count", "5" if last else "10000", "--pace", "0.005"]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    env=env, text=True)
            lines: list[str] = []
            reader = threading.Thread(target=lambda p=proc, acc=lines: acc.extend(p.stdout),
                                      daemon=True)
            reader.start()
            if last:
                # A clean run drains whatever the killed runs left in the outbox.
                assert proc.wait(30) == 0
            else:
                assert wait(lambda acc=lines: "READY\n" in acc, 15)
                time.sleep(rng.uniform(0.0, 0.6))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            reader.join(5)
            proc.stdout.close()
            # Only whole lines: a kill in the middle of a print leaves "RAIS" behind.
            raised.extend(line.split()[1] for line in lines
                          if line.startswith("RAISED ") and line.endswith("\n"))
        assert sub.wait_for(lambda s: all(i in s.ids for i in raised), 15)
        # Nothing was invented either: every alert received was one the driver put.
        alerts = {p["id"] for p in sub.payloads("alert")}
        assert all(i.startswith("run") for i in alerts)
    assert report(capsys, "agent-kill-9-x20", raised, sub) == 0
    assert len(raised) > 100


def test_outbox_bound_with_a_dead_broker(tmp_path, subscribers, capsys):
    with MosquittoBroker() as b:
        # The utility's persistent session exists before the outage...
        sub = subscribers(b.port, client_id="utility-bound", persistent=True)
        time.sleep(1.1)  # autosaved
        b.stop()
        settings = broker_settings(b.port, telemetry_qos=1, score_qos=1)
        pub, ob, c = start_publisher(settings, tmp_path / "o.db", max_bytes=40_000)
        raised, produced = [], 0
        try:
            for i in range(400):
                put(pub, ob, c, telemetry("m1", i))
                put(pub, ob, c, score("m1", i))
                produced += 1
                if i % 10 == 0:
                    ev = alert("m1", i)
                    assert put(pub, ob, c, ev)
                    raised.append(ev.id)
            st = ob.stats()
            assert st["dropped"]["telemetry"] > 0 and st["dropped"]["score"] > 0
            assert st["bytes"] <= 40_000
            b.start()
            assert wait(lambda: ob.stats()["pending"] == 0, 20.0)
            assert sub.wait_for(lambda s: all(i in s.ids for i in raised))
            tele = sub.payloads("telemetry")
            dropped = ob.stats()["dropped"]["telemetry"]
            assert sub.wait_for(lambda s: len(s.payloads("telemetry")) == produced - dropped)
            # The newest telemetry survived; the drops were the oldest.
            tele = [int(p["id"].rsplit(":", 1)[1]) for p in sub.payloads("telemetry")]
            assert tele == list(range(produced - len(tele), produced))
            status = [p for p in sub.payloads("status") if p["state"] == "online"][-1]
            assert status["outbox"]["dropped"]["telemetry"] == dropped
        finally:
            pub.stop(2)
            ob.close()
    with capsys.disabled():
        print("\nCAMPAIGN outbox-bound-dead-broker: telemetry produced=%d dropped=%d; "
              "alerts raised=%d received=%d lost=%d" % (
                  produced, dropped, len(raised), sum(i in sub.ids for i in raised),
                  sum(i not in sub.ids for i in raised)))
    assert json.dumps(status)  # (status made it through its schema in the fixture too)
    assert PREFIX
