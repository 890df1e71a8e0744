"""A subscriber standing in for the utility: records what reached the broker.

Used by the demo and the rig's reports to judge the agent from the outside, by what was
delivered, never by the agent's own view of what it sent. De-duplicates QoS-1 re-deliveries
by the payload ``id`` and counts them. With ``mqtt5`` it subscribes over MQTT 5 and reads
each payload by its content type (CBOR telemetry), recording the type beside it.
"""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt

from agent.publish.codec import decode


class Recorder:
    def __init__(self, host: str, port: int, topic: str, client_id: str | None = None,
                 clean_start: bool = True, mqtt5: bool = False):
        self.host = host
        self.port = port
        self.topic = topic
        self.messages: list[dict] = []
        self.duplicates = 0
        self.seen_ids: set[str] = set()
        self._pending_alerts: list[dict] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.mqtt5 = mqtt5
        if mqtt5:  # a fresh session each start (clean start is the MQTT 5 default)
            self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                      client_id=client_id or "loadwatch-recorder-%d" % id(self),
                                      protocol=mqtt.MQTTv5)
        else:
            self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                      client_id=client_id or "loadwatch-recorder-%d" % id(self),
                                      clean_session=clean_start if client_id else True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, msg):
        ctype = getattr(msg.properties, "ContentType", None) if msg.properties else None
        try:
            payload = decode(msg.payload, ctype) if msg.payload else None
        except ValueError:
            payload = {"_raw": msg.payload.decode("utf-8", "replace")}
        entry = {"topic": msg.topic, "payload": payload, "retain": bool(msg.retain),
                 "received": time.time(), "content_type": ctype}
        with self._lock:
            mid = payload.get("id") if isinstance(payload, dict) else None
            if mid is not None and mid in self.seen_ids:
                self.duplicates += 1
                return
            if mid is not None:
                self.seen_ids.add(mid)
            self.messages.append(entry)
            if msg.topic.endswith("/alert") and isinstance(payload, dict):
                self._pending_alerts.append(entry)

    def start(self, timeout: float = 10.0) -> None:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise TimeoutError("subscriber could not subscribe to %s:%d" % (self.host,
                                                                           self.port))

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def take_alerts(self) -> list[dict]:
        with self._lock:
            out, self._pending_alerts = self._pending_alerts, []
        return out

    def alerts(self) -> list[dict]:
        with self._lock:
            return [m for m in self.messages if m["topic"].endswith("/alert")]

    def raised_meters(self) -> set[str]:
        return {m["payload"].get("meter") for m in self.alerts()
                if m["payload"].get("kind") == "raised"}
