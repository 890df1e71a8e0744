"""The publisher: moves messages from the outbox to the broker (the only paho import).

It only sends; the outbox owns the buffer. One thread of our own runs one paho client
through paho's external-loop API (``loop_read``/``loop_write``/``loop_misc`` around a
``select`` that also watches a wake-up socket), so a ``wake()`` from the runtime reaches
the wire in microseconds, and every paho call happens on that one thread.

Delivery. A window of messages is taken from the outbox (``begin``); each publish's mid is
mapped to its outbox row; ``on_publish`` (PUBACK for QoS 1, the socket write for QoS 0)
acks the row, which deletes it. When the connection drops, every row in flight is
``nack``-ed and the paho client is thrown away: paho keeps unacknowledged messages only in
memory, so the outbox, not paho, re-sends them after the reconnect (in order, with the
same ``id``, which is what subscribers de-duplicate by). Alerts, health and status
acknowledged in the last second before the connection dropped are sent once more too
(``Outbox.replay``): a Mosquitto killed with SIGKILL can lose a message it has PUBACKed.

Connection. MQTT 5 (``protocol = "5"``), 3.1.1, or ``auto``: 5 first, and 3.1.1 for the
rest of the run if the broker answers "unsupported protocol version" or hangs up before
its CONNACK. Persistent session (MQTT 5: ``clean_start`` false + one day of session expiry;
3.1.1: ``clean_session`` false) so commands sent while the gateway was away are still
delivered. Reconnects wait a capped exponential back-off (``agent.backoff.Backoff``).
After every (re)connect the retained ``status`` birth (``online``) is published again;
the last will is a retained ``offline``.

Errors are classified and phrased for the technician (``last_error``, ``error_kind``):
refused connection, DNS, timeout, TLS verification (with OpenSSL's reason), TLS
handshake, bad user name or password, not authorised to connect, and per-message ACL
denial. Mosquitto tells an MQTT 5 client about an ACL-denied publish with PUBACK reason
code 0x87 (Not authorized): we detect that, log it, count it (``rejected`` in ``status``)
and park the message. With MQTT 3.1.1 Mosquitto PUBACKs a denied publish like any other
and drops it: nothing on the wire tells the client, so it cannot be detected (use MQTT 5).
Passwords never reach a log line or an error message.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Callable

from agent.backoff import Backoff
from agent.publish.broker_errors import (
    RC_NOT_AUTHORIZED,
    RC_UNSUPPORTED_PROTOCOL,
    describe_connack,
    describe_connect_error,
    rc_value,
)
from agent.publish.codec import CBOR, Codec, Message, content_type
from agent.publish.outbox import Outbox
from agent.publish.paho import (
    SESSION_EXPIRY_S,
    PacketTypes,
    Properties,
    SubscribeOptions,
    close_socket_now,
    mqtt,
)
from agent.publish.requests import (
    COMMAND_BURST,
    COMMAND_QUEUE,
    COMMAND_RATE_PER_S,
    CommandError,
    ReplyBudget,
    parse_command,
    peek_request_id,
)
from agent.publish.tls import make_tls_context

__all__ = ["COMMAND_BURST", "COMMAND_QUEUE", "COMMAND_RATE_PER_S", "Publisher",
           "close_socket_now", "describe_connect_error"]

# The PUBLISH properties of every CBOR message (made once; paho packs them per publish).
_CBOR_PROPS = Properties(PacketTypes.PUBLISH)
_CBOR_PROPS.ContentType = CBOR

if TYPE_CHECKING:  # only for annotations: config pulls in the whole Modbus stack
    from agent.config import BrokerSettings

log = logging.getLogger("loadwatch.mqtt")

CONNACK_TIMEOUT_S = 10.0
ACK_BATCH = 64
STABLE_SESSION_S = 10.0  # a session that lasted this long resets the back-off



class Publisher:
    """Sends the outbox to the broker from its own thread; answers read-only commands."""

    def __init__(self, broker: BrokerSettings, outbox: Outbox, codec: Codec,
                 on_command: Callable[[str, dict], dict] | None = None,
                 status_extra: Callable[[], dict] | None = None, *,
                 window: int = 100, backoff: Backoff | None = None,
                 status_every_s: float = 60.0,
                 watch: dict[str, Callable[[bytes], None]] | None = None):
        self.broker = broker
        self.outbox = outbox
        self.codec = codec
        self.on_command = on_command
        self.status_extra = status_extra
        self.window = window
        # Full jitter, from the OS's random source: a fleet that lost its broker together
        # must not come back together (issue 11: seeding by the client id's byte sum made
        # gw-0012 and gw-0021 retry in lockstep, and every retry at the cap was 60.0 s).
        self.backoff = backoff or Backoff(1.0, 60.0, 2.0, full_jitter=True)
        self.status_every_s = status_every_s
        # Other topics to follow (exact names, e.g. Home Assistant's birth message):
        # subscribed on every connect, each payload handed to its callback on this thread.
        self.watch = dict(watch or {})
        self.connected = threading.Event()
        self.last_error = ""
        self.error_kind = ""
        self.protocol = {"5": 5, "3.1.1": 4}.get(broker.protocol, 5)
        self.connects = 0
        self.published = 0
        self.rejected_status = 0
        self.commands_dropped = 0  # over the reply budget: no reply (see COMMAND_BURST)
        self._budget = ReplyBudget()
        self._dropped_logged_at = -1e9
        self._run_id = os.urandom(4).hex()
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._commands: queue.Queue = queue.Queue(COMMAND_QUEUE)
        self._replies: queue.Queue = queue.Queue()
        self._stop_evt = threading.Event()
        self._stopping = False
        self._stop_deadline = 0.0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # Per-connection state, touched only by the publisher thread (acks are queued by
        # paho's callbacks, which also run on that thread).
        self._client: mqtt.Client | None = None
        self._mids: dict[int, int] = {}
        self._sent_at: dict[int, float] = {}  # mid -> monotonic time of the publish
        # Publish latency (publish -> PUBACK) of QoS-1 messages, for /metrics.
        self._lat_sum = 0.0
        self._lat_count = 0
        self._lat_last: float | None = None
        self._direct: dict[int, str] = {}
        self._acks: list[tuple[int, int, str]] = []
        self._ack_buf: list[int] = []
        self._connack: int | None = None
        self._closed = False
        self._last_status = 0.0
        self._status_key: tuple = ()
        self._last_fill = -1
        self._seen_puts = -1
        self._idle = True  # wake() only signals a loop that is (about to be) waiting
        self._lost_at: float | None = None  # when the last session ended (None: never)

    # ----------------------------------------------------------------- public API

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._main, name="loadwatch-publisher",
                                        daemon=True)
        self._worker = threading.Thread(target=self._command_worker,
                                        name="loadwatch-commands", daemon=True)
        self._thread.start()
        self._worker.start()

    def wake(self) -> None:
        """New messages are in the outbox: send them now rather than at the next tick."""
        if not self._idle:
            return  # the loop is running and looks at the outbox before it waits again
        self._poke()

    def _poke(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake (buffer full) or closed

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what the broker will take within ``timeout``, say ``offline``, close.

        What is not acknowledged stays in the outbox for the next start."""
        self._stop_deadline = time.monotonic() + max(0.0, timeout)
        self._stopping = True
        self._stop_evt.set()
        self._poke()
        if self._thread is not None:
            self._thread.join(timeout + CONNACK_TIMEOUT_S + 2.0)
            if self._thread.is_alive():
                log.error("publisher thread did not stop in time")
        try:
            self._commands.put_nowait(None)
        except queue.Full:
            pass
        if self._worker is not None:
            self._worker.join(15.0)
        self._thread = self._worker = None
        self._wake_r.close()
        self._wake_w.close()

    @property
    def status_topic(self) -> str:
        return self.codec.status_topic

    # ----------------------------------------------------------------- ids

    def _next_id(self, what: str) -> str:
        self._seq += 1
        return "%s:%s:%s:%d:%d" % (self.broker.client_id, what, self._run_id,
                                   int(time.time()), self._seq)

    # ----------------------------------------------------------------- thread

    def _main(self) -> None:
        while not self._stopping:
            try:
                client = self._connect()
                if client is not None:
                    started = time.monotonic()
                    try:
                        self._serve(client)
                    finally:
                        self._drop_connection(client)
                    if time.monotonic() - started >= STABLE_SESSION_S:
                        self.backoff.success()
                        continue
                    # A session that dies at once (a client-id clash, a broker that drops
                    # us after CONNACK) backs off like a failed connect: no hot loop.
            except Exception as e:
                # Never a dead publisher: whatever went wrong, the outbox still has every
                # message; log it, back off and connect afresh.
                log.exception("publisher error")
                self._fail("io", "publisher error: %s" % e)
            if self._stopping:
                break
            delay = self.backoff.failure()
            log.info("reconnecting to %s:%d in %.1f s", self.broker.host, self.broker.port,
                     delay)
            self._stop_evt.wait(delay)

    def _new_client(self) -> mqtt.Client:
        v5 = self.protocol == 5
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=self.broker.client_id,
                             clean_session=None if v5 else False,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        client.connect_timeout = 5.0
        # Our own window bounds what is in flight; paho's default of 20 would queue the
        # rest in its memory, where nobody could see it.
        client.max_inflight_messages_set(max(self.window, 20))
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password or None)
        if self.broker.tls:
            client.tls_set_context(make_tls_context(self.broker))
            if self.broker.insecure_skip_verify:
                client.tls_insecure_set(True)
        will = self.codec.will(time.time(), self._next_id("will"))
        client.will_set(will.topic, will.payload, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _fail(self, kind: str, message: str) -> None:
        if message != self.last_error:
            log.error("%s", message)
        self.last_error = message
        self.error_kind = kind

    def _connect(self) -> mqtt.Client | None:
        """Open one session; None (with ``last_error`` set) when that failed."""
        try:
            client = self._new_client()
        except (OSError, ssl.SSLError, ValueError) as e:
            self._fail("tls", "TLS settings of broker %s:%d cannot be used: %s"
                       % (self.broker.host, self.broker.port, e))
            return None
        self._connack = None
        self._closed = False
        try:
            if self.protocol == 5:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = SESSION_EXPIRY_S
                client.connect(self.broker.host, self.broker.port, self.broker.keepalive_s,
                               clean_start=False, properties=props)
            else:
                client.connect(self.broker.host, self.broker.port, self.broker.keepalive_s)
        except Exception as e:  # classified and reported, never fatal
            self._fail(*describe_connect_error(e, self.broker))
            self._drop_connection(client)
            return None
        deadline = time.monotonic() + CONNACK_TIMEOUT_S
        while self._connack is None and not self._closed and time.monotonic() < deadline:
            if self._stopping and time.monotonic() > self._stop_deadline:
                break
            if not self._pump(client, 0.1):
                break
        rc = self._connack
        if rc is None or rc >= 0x80:
            self._drop_connection(client)
            if rc is None:
                if self.broker.protocol == "auto" and self.protocol == 5 and self._closed:
                    log.warning("broker %s:%d hung up on an MQTT 5 CONNECT; using 3.1.1",
                                self.broker.host, self.broker.port)
                    self.protocol = 4
                    return self._connect()
                if self._closed:
                    self._fail("io", "broker %s:%d closed the connection before accepting "
                               "the session (not an MQTT port? TLS expected?)"
                               % (self.broker.host, self.broker.port))
                else:
                    self._fail("timeout", "timed out connecting to broker %s:%d: the port "
                               "answered but sent no CONNACK in %.0f s (not an MQTT port? "
                               "TLS expected?)" % (self.broker.host, self.broker.port,
                                                   CONNACK_TIMEOUT_S))
                return None
            if rc == RC_UNSUPPORTED_PROTOCOL and self.broker.protocol == "auto" and \
                    self.protocol == 5:
                log.warning("broker %s:%d does not speak MQTT 5; using 3.1.1",
                            self.broker.host, self.broker.port)
                self.protocol = 4
                return self._connect()
            self._fail(*describe_connack(rc, self.broker))
            return None
        self.connects += 1
        self.last_error = ""
        self.error_kind = ""
        log.info("connected to %s:%d (MQTT %s%s)", self.broker.host, self.broker.port,
                 "5" if self.protocol == 5 else "3.1.1", ", TLS" if self.broker.tls else "")
        self._client = client
        replayed = self.outbox.replay(self._lost_at)
        if replayed:
            log.info("re-sending %d alert/health/status messages acknowledged just before the "
                     "reconnect (a crashed broker may have lost them)", replayed)
        if self.protocol == 5:
            # Retain-As-Published keeps the retain flag on commands forwarded to us, so a
            # retained command is recognised (and ignored) even when it is published while
            # we are connected; MQTT 3.1.1 clears the flag then, and cannot tell.
            client.subscribe(self.codec.command_filter,
                             options=SubscribeOptions(qos=1, retainAsPublished=True))
        else:
            client.subscribe(self.codec.command_filter, qos=1)
        for topic in self.watch:
            client.subscribe(topic, qos=1)
        self._publish_status("online")
        self.connected.set()
        return client

    def _drop_connection(self, client: mqtt.Client) -> None:
        if self.connected.is_set():
            self._lost_at = time.time()
        self.connected.clear()
        try:
            client.disconnect()
        except Exception:  # the socket may be gone already
            pass
        if client.socket() is not None:
            # Still open (no CONNACK, or a half-dead link): close it without waiting for
            # anything; the outbox has the messages.
            try:
                close_socket_now(client)
            except Exception:
                pass
        self._handle_acks()
        self._flush_acks()
        if self._mids:
            self.outbox.nack(list(self._mids.values()))
        self._mids.clear()
        self._sent_at.clear()
        self._direct.clear()
        self._acks.clear()
        self._client = None

    def _pump(self, client: mqtt.Client, timeout: float) -> bool:
        """One turn of paho's external loop; False once the connection is gone."""
        sock = client.socket()
        if sock is None:
            return False
        pending = sock.pending() if hasattr(sock, "pending") else 0
        wlist = [sock] if client.want_write() else []
        try:
            r, w, _ = select.select([sock, self._wake_r], wlist, [], 0.0 if pending else
                                    timeout)
        except (OSError, ValueError):
            return False
        if self._wake_r in r:
            try:
                while self._wake_r.recv(4096):
                    pass
            except (BlockingIOError, OSError):
                pass
        try:
            if sock in r or pending:
                if client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                    return False
            if sock in w and client.socket() is not None:
                if client.loop_write() != mqtt.MQTT_ERR_SUCCESS:
                    return False
            if client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                return False
        except Exception as e:  # a malformed packet or a dying socket: reconnect
            self._fail("io", "connection to broker %s:%d failed: %s"
                       % (self.broker.host, self.broker.port, e))
            return False
        return client.socket() is not None and not self._closed

    def _serve(self, client: mqtt.Client) -> None:
        """Publish from the outbox until the connection drops or the stop is done."""
        while True:
            self._handle_acks()
            self._send_replies(client)
            if not self._fill_window(client):
                return
            self._handle_acks()
            self._maybe_status()
            if self._stopping:
                self._flush_acks()
                # Done when nothing is in flight and the outbox had nothing more to give
                # (parked, rejected messages stay for the next start).
                done = not self._mids and self._last_fill == 0
                if done or time.monotonic() >= self._stop_deadline:
                    self._goodbye(client)
                    return
            # While messages keep flowing, acks are deleted in batches of ACK_BATCH; the
            # buffer is flushed whenever the loop is about to wait.
            busy = bool(self._acks) or self._last_fill > 0
            if self._ack_buf and (len(self._ack_buf) >= ACK_BATCH or not busy):
                self._flush_acks()
            # A full window waits for PUBACKs (they wake the select); new messages wake it
            # through wake(); otherwise tick twice a second for keep-alive and status.
            # Set idle first, then look: a put() after this line sends a wake-up byte; one
            # before it shows in the put counter (no lost wake-up, no syscall per message).
            self._idle = True
            if (self._last_fill != -1 and self.outbox.puts != self._seen_puts) or \
                    not self._replies.empty():
                busy = True
            ok = self._pump(client, 0.0 if busy else 0.5)
            self._idle = False
            if not ok:
                if not self._stopping:
                    self._fail("io", "lost the connection to broker %s:%d"
                               % (self.broker.host, self.broker.port))
                return

    def _fill_window(self, client: mqtt.Client) -> bool:
        room = self.window - len(self._mids)
        if room <= 0:
            self._last_fill = -1
            self._seen_puts = self.outbox.puts  # nothing to take now: PUBACKs wake us
            return True
        self._seen_puts = self.outbox.puts
        entries = self.outbox.begin(room)
        self._last_fill = len(entries)
        for i, entry in enumerate(entries):
            msg = entry.message
            qos = msg.qos  # decided once, by the codec (agent/publish/payloads.py)
            # A CBOR payload says so in the MQTT 5 content type (none: JSON).
            props = _CBOR_PROPS if self.protocol == 5 and content_type(msg.payload) else None
            try:
                info = client.publish(msg.topic, msg.payload, qos=qos, retain=msg.retain,
                                      properties=props)
            except ValueError as e:  # an invalid topic: it can never be sent
                self.outbox.reject(entry.seq, "invalid message: %s" % e)
                continue
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self.outbox.nack([e.seq for e in entries[i:]])
                return False
            self._mids[info.mid] = entry.seq
            if qos:
                self._sent_at[info.mid] = time.monotonic()
            self.published += 1
        return True

    def _handle_acks(self) -> None:
        """Turn paho's acknowledgements into outbox acks (buffered, see ``_flush_acks``)
        and rejections (at once)."""
        if not self._acks:
            return
        acks, self._acks = self._acks, []
        now = time.monotonic()
        for mid, rc, reason in acks:
            sent = self._sent_at.pop(mid, None)
            if sent is not None:
                self._lat_last = now - sent
                self._lat_sum += self._lat_last
                self._lat_count += 1
            seq = self._mids.pop(mid, None)
            if seq is None:
                what = self._direct.pop(mid, None)
                if what is not None and rc >= 0x80:
                    self.rejected_status += 1
                    self._fail("acl", "broker refused our %s message (%s, 0x%02x): check the "
                               "ACL for %s/#" % (what, reason, rc, self.codec.prefix))
                continue
            if rc >= 0x80:
                kind = "acl" if rc == RC_NOT_AUTHORIZED else "rejected"
                self._fail(kind, "broker %s:%d refused a publish (PUBACK 0x%02x %s): not "
                           "authorised to publish there? (ACL)" % (
                               self.broker.host, self.broker.port, rc, reason))
                self.outbox.reject(seq, "PUBACK 0x%02x %s" % (rc, reason))
            else:
                self._ack_buf.append(seq)

    def _flush_acks(self) -> None:
        """Delete acknowledged rows, many per transaction. Deferring this is safe: a crash
        before the delete only re-sends messages the subscriber drops by ``id``."""
        if self._ack_buf:
            buf, self._ack_buf = self._ack_buf, []
            self.outbox.ack(buf)

    # ----------------------------------------------------------------- status

    def latency(self) -> dict:
        """Publish -> PUBACK latency of QoS-1 messages: the last one, and the sum and
        count since start (a Prometheus summary without quantiles)."""
        return {"last_s": self._lat_last, "sum_s": self._lat_sum, "count": self._lat_count}

    def status_payload(self) -> dict:
        extra = {}
        if self.status_extra is not None:
            try:
                extra = dict(self.status_extra())
            except Exception:  # status must go out regardless
                log.exception("status_extra failed")
        extra["outbox"] = self.outbox.stats()
        extra["mqtt"] = {"protocol": "5" if self.protocol == 5 else "3.1.1",
                         "connects": self.connects, "tls": bool(self.broker.tls),
                         "commands_dropped": self.commands_dropped}
        return extra

    def _publish_status(self, state: str, reason: str = "") -> int | None:
        client = self._client
        if client is None:
            return None
        extra = self.status_payload()
        msg = self.codec.status(state, time.time(), self._next_id("status"), extra, reason)
        info = client.publish(msg.topic, msg.payload, qos=1, retain=True)
        self._last_status = time.monotonic()
        self._status_key = self._drop_key(extra["outbox"]) + (self.commands_dropped,)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self._direct[info.mid] = "status"
            return info.mid
        return None

    @staticmethod
    def _drop_key(stats: dict) -> tuple:
        d = stats["dropped"]
        return (d["telemetry"], d["score"], stats["rejected"], stats["corrupt_recovered"],
                stats.get("state"))

    def _maybe_status(self) -> None:
        """Re-publish status when drop counters moved (at most every ``status_every_s``)."""
        if time.monotonic() - self._last_status < self.status_every_s:
            return
        if self._drop_key(self.outbox.stats()) + (self.commands_dropped,) != \
                self._status_key:
            self._publish_status("online")
        else:
            self._last_status = time.monotonic()

    def _goodbye(self, client: mqtt.Client) -> None:
        mid = self._publish_status("offline", "stopped")
        deadline = time.monotonic() + 1.0
        while mid is not None and mid in self._direct and time.monotonic() < deadline:
            if not self._pump(client, 0.05):
                break
        self._handle_acks()
        self._flush_acks()

    # ----------------------------------------------------------------- paho callbacks

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connack = rc_value(reason_code)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._closed = True
        if self.connected.is_set():
            self._lost_at = time.time()
        self.connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.append((mid, rc_value(reason_code), str(reason_code)))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        for rc in reason_codes:
            if rc_value(rc) >= 0x80:
                self._fail("acl", "broker refused the subscription to %s (%s): commands "
                           "will not be answered" % (self.codec.command_filter, rc))

    def _on_message(self, client, userdata, msg) -> None:
        watcher = self.watch.get(msg.topic)
        if watcher is not None:
            try:
                watcher(bytes(msg.payload))
            except Exception:  # a watcher must never take the publisher down
                log.exception("handler for %s failed", msg.topic)
            return
        name = self.codec.command_name(msg.topic)
        if name is None:
            return
        if msg.retain:
            # A retained command would run again on every reconnect: refuse it.
            log.warning("ignoring retained command on %s", msg.topic)
            return
        if not self._budget.take():
            self.commands_dropped += 1
            now = time.monotonic()
            if now - self._dropped_logged_at >= 60.0:
                self._dropped_logged_at = now
                log.warning("too many commands: %d dropped without a reply so far (at most "
                            "%d at once, then %g per second)", self.commands_dropped,
                            COMMAND_BURST, COMMAND_RATE_PER_S)
            return
        payload = bytes(msg.payload)
        try:
            self._commands.put_nowait((name, payload))
        except queue.Full:
            self._replies.put(self.codec.reply(name, time.time(), self._next_id("reply"),
                                               peek_request_id(payload), False,
                                               error="busy: too many commands queued, "
                                               "try again"))

    # ----------------------------------------------------------------- commands

    def _command_worker(self) -> None:
        """Runs commands off the publisher thread (``read`` may wait for a slow bus)."""
        while True:
            item = self._commands.get()
            if item is None:
                return
            try:
                reply = self._run_command(*item)
            except Exception:  # even building the error reply failed: the thread goes on
                log.exception("command %s: no reply could be made", item[0][:64])
                continue
            self._replies.put(reply)
            self.wake()

    def _run_command(self, name: str, payload: bytes) -> Message:
        """The reply to one request: the result, or ``ok: false`` with the reason."""
        request_id = None
        try:
            request_id = peek_request_id(payload)
            request_id, args = parse_command(name, payload)
            if self.on_command is None:
                raise CommandError("this agent answers no commands")
            result = self.on_command(name, args)
            json.dumps(result)  # must be JSON-able before we claim success
            return self.codec.reply(name, time.time(), self._next_id("reply"),
                                    request_id, True, result=result)
        except (CommandError, ValueError, KeyError, TypeError) as e:
            error = str(e)[:500]
        except Exception as e:  # a command must never kill the agent
            log.exception("command %s failed", name[:64])
            error = "internal error: %s" % type(e).__name__
        return self.codec.reply(name, time.time(), self._next_id("reply"), request_id,
                                False, error=error)

    def _send_replies(self, client: mqtt.Client) -> None:
        while True:
            try:
                reply: Message = self._replies.get_nowait()
            except queue.Empty:
                return
            info = client.publish(reply.topic, reply.payload, qos=1, retain=False)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                self._direct[info.mid] = "reply"
