"""MQTT 5 -> 3.1.1 fallback, against a broker that only speaks 3.1.1.

Mosquitto cannot be told to refuse MQTT 5, so a small TCP front answers an MQTT 5 CONNECT
the way a 3.1.1-only broker does (CONNACK return code 1, "unacceptable protocol version",
then close: MQTT 3.1.1 section 3.1.2.2) and passes 3.1.1 connections through to a real
Mosquitto, byte for byte.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time

from conftest import broker_settings
from publish_helpers import alert, put, start_publisher


class V311Only:
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.refused_v5 = 0
        self.passed_v311 = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="v311-front", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ, None)
        pairs: dict[socket.socket, socket.socket] = {}
        while not self._stop.is_set():
            for key, _ in sel.select(0.05):
                s = key.fileobj
                if s is self.listener:
                    conn, _ = self.listener.accept()
                    head = self._read_connect_head(conn)
                    if head is None or head[-1] == 5:  # protocol level byte of CONNECT
                        self.refused_v5 += 1
                        conn.sendall(b"\x20\x02\x00\x01")
                        conn.close()
                        continue
                    self.passed_v311 += 1
                    up = socket.create_connection(("127.0.0.1", self.upstream_port))
                    up.sendall(head)
                    pairs[conn], pairs[up] = up, conn
                    sel.register(conn, selectors.EVENT_READ, None)
                    sel.register(up, selectors.EVENT_READ, None)
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                peer = pairs.get(s)
                if not data or peer is None:
                    for x in (s, peer):
                        if x is not None and x in pairs:
                            sel.unregister(x)
                            pairs.pop(x)
                            x.close()
                    continue
                peer.sendall(data)
        for s in list(pairs):
            s.close()
        sel.close()
        self.listener.close()

    @staticmethod
    def _read_connect_head(conn: socket.socket) -> bytes | None:
        """CONNECT up to its protocol level byte: type, remaining length (a variable-length
        integer, MQTT 3.1.1 section 2.2.3), protocol name, level."""
        conn.settimeout(5)

        def read(n: int) -> bytes:
            out = b""
            while len(out) < n:
                chunk = conn.recv(n - len(out))
                if not chunk:
                    raise ConnectionError("closed")
                out += chunk
            return out

        try:
            buf = read(1)
            while True:
                b = read(1)
                buf += b
                if b[0] < 0x80:
                    break
            buf += read(7)
        except (OSError, ConnectionError):
            return None
        conn.settimeout(None)
        return buf if buf[0] == 0x10 and buf[-7:-1] == b"\x00\x04MQTT" else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_auto_falls_back_to_311_and_delivers(broker, subscribers, tmp_path):
    front = V311Only(broker.port)
    sub = subscribers(broker.port)
    pub, ob, c = start_publisher(broker_settings(front.port, protocol="auto"),
                                 tmp_path / "o.db")
    try:
        assert pub.connected.wait(10), pub.last_error
        put(pub, ob, c, alert("m1", 1))
        assert sub.wait_for(lambda s: "m1:raised:1" in s.ids)
        assert front.refused_v5 == 1 and front.passed_v311 == 1
        assert sub.payloads("status")[-1]["mqtt"]["protocol"] == "3.1.1"
    finally:
        pub.stop(2)
        ob.close()
        front.close()


def test_forced_mqtt5_reports_the_protocol_error(broker, tmp_path):
    front = V311Only(broker.port)
    pub, ob, _c = start_publisher(broker_settings(front.port, protocol="5"),
                                  tmp_path / "o.db")
    try:
        deadline = time.monotonic() + 10
        while pub.error_kind == "" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pub.error_kind in ("protocol", "io"), pub.last_error
        assert not pub.connected.is_set() and front.passed_v311 == 0
    finally:
        pub.stop(1)
        ob.close()
        front.close()
