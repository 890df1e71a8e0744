"""Uplink straight to an MQTT broker with umqtt.simple (boards with Wi-Fi or Ethernet).

Same topics and payloads as the agent: its own payloads (agent/publish/payloads.py). Alerts and
health (QoS 1, retained) go through the on-flash queue first and leave it only after the
broker's PUBACK, so a reboot or a broker outage does not lose them. Telemetry and score
(QoS 0) are sent when connected and otherwise dropped and counted, as the agent's outbox
drops them first.
Reconnects back off from 1 s doubling to ``retry_max_s`` (real seconds, monotonic), each
attempt bounded by the socket timeout: never a tight ``while 1`` retry loop.
"""

import time

try:
    from umqtt.simple import MQTTClient
except ImportError:  # a board without micropython-lib installed
    MQTTClient = None


class MqttUplink:
    def __init__(self, cfg, codec, queue, now, status_extra):
        if MQTTClient is None:
            raise OSError("umqtt.simple is missing: mpremote mip install umqtt.simple")
        self.codec = codec
        self.queue = queue
        self.now = now
        self.status_extra = status_extra
        self.keepalive = int(cfg.get("keepalive", 30))
        self.client = MQTTClient(cfg["client_id"], cfg["host"], int(cfg.get("port", 1883)),
                                 user=cfg.get("user") or None,
                                 password=cfg.get("password") or None,
                                 keepalive=self.keepalive)
        self.timeout_s = float(cfg.get("timeout_s", 5.0))
        self.retry_max_ms = int(float(cfg.get("retry_max_s", 60.0)) * 1000)
        self.connected = False
        self.next_try = time.ticks_ms()
        self.retry_ms = 1000
        self.last_io = time.ticks_ms()
        self.connects = 0
        self.failures = 0
        self.dropped = {"telemetry": 0, "score": 0}
        self.published = 0
        self.seq = 0

    def _id(self, what):
        self.seq += 1
        return "%s:%s:%d:%d" % (self.codec.gateway, what, int(self.now()), self.seq)

    def start(self, info):
        will = self.codec.will(self.now(), self._id("will"))
        self.client.set_last_will(will.topic, will.payload, retain=True, qos=1)
        self.service()

    def _probe(self):
        """TCP reachability with a timeout first: umqtt.simple's own connect() has none,
        and an unreachable broker would block it past the watchdog."""
        import socket

        addr = socket.getaddrinfo(self.client.server, self.client.port)[0][-1]
        s = socket.socket()
        try:
            s.settimeout(self.timeout_s)
            s.connect(addr)
        finally:
            s.close()

    def _connect(self):
        try:
            self._probe()
            self.client.timeout = self.timeout_s
            self.client.connect()
            sock = getattr(self.client, "sock", None)
            if sock is not None:
                sock.settimeout(self.timeout_s)
            self.connected = True
            self.connects += 1
            self.retry_ms = 1000
            m = self.codec.status("online", self.now(), self._id("status"), self._status())
            self.client.publish(m.topic, m.payload, m.retain, m.qos)
            self.last_io = time.ticks_ms()
        except (OSError, Exception) as e:
            self._lost(e)

    def _lost(self, e):
        print("mqtt: %s; retrying in %d ms" % (e, self.retry_ms))
        self.failures += 1
        try:
            self.client.disconnect()
        except Exception:
            pass
        self.client.sock = None
        self.connected = False
        self.next_try = time.ticks_add(time.ticks_ms(), self.retry_ms)
        self.retry_ms = min(self.retry_ms * 2, self.retry_max_ms)

    def reading(self, meter, t, values, quality):
        pass  # readings stay on the device; telemetry carries the slot aggregates

    def event(self, ev, t):
        if not self.codec.publishes(ev):
            return  # the score rides in the slot's telemetry message
        m = self.codec.event(ev)
        topic, payload, qos, retain = m.topic, m.payload, m.qos, m.retain
        if qos == 1 or retain:
            self.queue.put({"kind": ev.kind, "topic": topic, "payload": payload.decode(),
                            "qos": qos, "retain": retain})
            return
        if not self.connected:
            self._drop(ev.kind)
            return
        try:
            self.client.publish(topic, payload, retain, qos)
            self.published += 1
            self.last_io = time.ticks_ms()
        except Exception as e:
            self._drop(ev.kind)
            self._lost(e)

    def _drop(self, kind):
        self.dropped[kind] = self.dropped.get(kind, 0) + 1

    def _status(self):
        """The agent's status extras: the queue in its outbox shape, and the link."""
        extra = dict(self.status_extra())
        extra["outbox"] = {"pending": len(self.queue), "bytes": 0, "max_bytes": 0,
                           "dropped": dict(self.dropped), "rejected": self.queue.dropped}
        extra["mqtt"] = {"protocol": "3.1.1", "connects": self.connects, "tls": False}
        return extra

    def idle(self):
        return len(self.queue) == 0

    def service(self):
        if not self.connected:
            if time.ticks_diff(time.ticks_ms(), self.next_try) < 0:
                return
            self._connect()
            if not self.connected:
                return
        try:
            while len(self.queue):
                item = self.queue.head()
                self.client.publish(item["topic"], item["payload"].encode(), item["retain"],
                                    item["qos"])
                self.queue.pop()
                self.published += 1
                self.last_io = time.ticks_ms()
            if time.ticks_diff(time.ticks_ms(), self.last_io) > self.keepalive * 500:
                self.client.ping()
                self.last_io = time.ticks_ms()
            self.client.check_msg()  # drains PINGRESP
            # umqtt.simple's check_msg leaves the socket non-blocking: put the bound back.
            self.client.sock.settimeout(self.timeout_s)
        except Exception as e:
            self._lost(e)

    def close(self):
        if not self.connected:
            return
        try:
            m = self.codec.status("offline", self.now(), self._id("status"), self._status(),
                                  "stopped")
            self.client.publish(m.topic, m.payload, m.retain, m.qos)
            self.client.disconnect()
        except Exception:
            pass
        self.connected = False

    def stats(self):
        return {"connects": self.connects, "failures": self.failures,
                "published": self.published, "dropped": self.dropped,
                "queued": len(self.queue), "queue_dropped": self.queue.dropped}
