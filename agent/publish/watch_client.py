"""The subscriber behind ``loadwatch watch`` (agent/publish/watch.py prints what it gets).
"""

from __future__ import annotations

import os
from typing import Callable

from agent.publish.broker_errors import describe_connack, describe_connect_error, rc_value
from agent.publish.paho import SESSION_EXPIRY_S, PacketTypes, Properties, mqtt
from agent.publish.tls import make_tls_context


class WatchError(RuntimeError):
    """The watcher cannot connect or subscribe; the message is for the technician."""


class Watcher:
    """A plain subscriber for ``loadwatch watch`` (kept here: the only paho import).

    ``on_message(topic, payload, retained, content_type)`` runs on the calling thread of
    ``run()``; ``content_type`` is the MQTT 5 property (None without one, and always on
    3.1.1).
    Reconnects on its own after a lost connection (capped back-off); a refused first
    connection, bad credentials or a failed TLS handshake raise ``WatchError``.
    """

    def __init__(self, broker, topics: list[str],
                 on_message: Callable[[str, bytes, bool, str | None], None],
                 session: str = "",
                 on_link: Callable[[str], None] | None = None):
        self.broker = broker
        self.topics = topics
        self.on_message = on_message
        # Told in one line when the broker goes away and when it is back: a watch that
        # silently prints nothing looks exactly like a quiet grid.
        self.on_link = on_link
        self._lost = False
        self._stopping = False
        v5 = getattr(broker, "protocol", "auto") != "3.1.1"
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=session or "loadwatch-watch-%s" % os.urandom(4).hex(),
            clean_session=None if v5 else not session,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        self.v5 = v5
        self.session = session
        self.client.reconnect_delay_set(1, 30)
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password or None)
        if broker.tls:
            self.client.tls_set_context(make_tls_context(broker))
            if broker.insecure_skip_verify:
                self.client.tls_insecure_set(True)
        self.error = ""
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda c, u, m: self.on_message(
            m.topic, bytes(m.payload), bool(m.retain),
            getattr(m.properties, "ContentType", None) if m.properties else None)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        rc = rc_value(reason_code)
        if rc >= 0x80:
            self.error = describe_connack(rc, self.broker)[1]
            client.disconnect()
            return
        if self._lost and self.on_link is not None:
            self.on_link("connected to %s:%d again" % (self.broker.host, self.broker.port))
        self._lost = False
        client.subscribe([(t, 1) for t in self.topics])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._stopping or self.error or self._lost:
            return
        self._lost = True
        if self.on_link is not None:
            self.on_link("lost the connection to the broker %s:%d (%s); reconnecting, "
                         "messages published meanwhile may be missed%s" % (
                             self.broker.host, self.broker.port, reason_code,
                             "" if self.session else " (use --session to keep them)"))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if reason_codes and all(rc_value(rc) >= 0x80 for rc in reason_codes):
            self.error = "broker refused the subscription to %s (not authorised?)" % (
                ", ".join(self.topics))
            client.disconnect()

    def run(self) -> None:
        try:
            if self.v5:
                props = Properties(PacketTypes.CONNECT)
                if self.session:
                    props.SessionExpiryInterval = SESSION_EXPIRY_S
                self.client.connect(self.broker.host, self.broker.port,
                                    self.broker.keepalive_s, clean_start=not self.session,
                                    properties=props)
            else:
                self.client.connect(self.broker.host, self.broker.port,
                                    self.broker.keepalive_s)
        except Exception as e:  # classified for the user
            raise WatchError(describe_connect_error(e, self.broker)[1]) from None
        try:
            self.client.loop_forever()
        finally:
            try:
                self.client.disconnect()
            except Exception:
                pass
        if self.error:
            raise WatchError(self.error)

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
