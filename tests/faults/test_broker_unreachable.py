"""A broker that cannot be reached says why, in the words a technician searches for
(issue 13 item 3): "refused", "no such host", "timed out connecting", never "lost" for a
connection that never opened. Real sockets on 127.0.0.1 play the unreachable brokers.
"""

from __future__ import annotations

import socket
import time

import pytest

from agent.backoff import Backoff
from agent.config import BrokerSettings
from agent.publish.codec import Codec
from agent.publish.mqtt import Publisher, describe_connect_error
from agent.publish.outbox import Outbox

# Fault campaigns (tests/faults): `make test` and `make faults` only.
pytestmark = pytest.mark.slow


def first_error(tmp_path, host: str, port: int, timeout: float = 15.0) -> tuple[str, str]:
    settings = BrokerSettings(host=host, port=port, client_id="gw-unreachable", tls=False,
                              prefix="lw/v1/s1/g1", keepalive_s=30)
    outbox = Outbox(tmp_path / "o.db", 1_000_000)
    pub = Publisher(settings, outbox, Codec("lw/v1/s1/g1", "s1", "g1"),
                    backoff=Backoff(5.0, 5.0))
    pub.start()
    try:
        deadline = time.monotonic() + timeout
        while not pub.last_error and time.monotonic() < deadline:
            time.sleep(0.02)
        return pub.error_kind, pub.last_error
    finally:
        pub.stop(0.5)
        outbox.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nothing_listening_is_refused(tmp_path) -> None:
    kind, message = first_error(tmp_path, "127.0.0.1", closed_port())
    assert kind == "refused" and "refused the connection" in message, message


def test_an_unknown_host_is_no_such_host() -> None:
    # A real resolver failure, made without a DNS query (the suite sends nothing beyond
    # 127.0.0.1): a service name /etc/services lacks fails in getaddrinfo the way an
    # unknown host does, with socket.gaierror, which paho's connect() passes on as is.
    with pytest.raises(socket.gaierror) as failed:
        socket.getaddrinfo("localhost", "no-such-service-lw")
    settings = BrokerSettings(host="broker.example", port=8883, client_id="gw", tls=True,
                              prefix="lw/v1/s1/g1")
    kind, message = describe_connect_error(failed.value, settings)
    assert kind == "dns" and "no such host" in message, message
    assert "'broker.example'" in message


def test_a_host_that_never_answers_is_timed_out_connecting(tmp_path, black_hole) -> None:
    kind, message = first_error(tmp_path, "127.0.0.1", black_hole)
    assert kind == "timeout" and "timed out connecting to broker" in message, message
    assert "lost" not in message


@pytest.fixture
def silent_port():
    """Accepts TCP connections and never says a word (not an MQTT server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def test_a_port_that_accepts_but_never_answers_mqtt_is_timed_out(tmp_path,
                                                                 silent_port) -> None:
    kind, message = first_error(tmp_path, "127.0.0.1", silent_port, timeout=25.0)
    assert kind in ("timeout", "io") and "lost" not in message, message
    assert ("timed out connecting" in message or "closed the connection before accepting"
            in message), message
