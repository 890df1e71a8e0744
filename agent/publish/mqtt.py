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

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.backoff import Backoff
from agent.publish.codec import COMMANDS, Codec, Message
from agent.publish.outbox import Outbox

if TYPE_CHECKING:  # only for annotations: config pulls in the whole Modbus stack
    from agent.config import BrokerSettings

log = logging.getLogger("loadwatch.mqtt")

SESSION_EXPIRY_S = 24 * 3600
CONNACK_TIMEOUT_S = 10.0
MAX_COMMAND_BYTES = 4096
MAX_COMMAND_DEPTH = 8  # nesting of JSON arrays/objects; a real request is flat (depth 1)
COMMAND_QUEUE = 16
# Replies (answers, errors and "busy" alike) are rate-limited by a token bucket: a burst of
# COMMAND_BURST, then COMMAND_RATE_PER_S. A flood of requests beyond that gets no reply
# at all (counted and logged once a minute), so it cannot turn the gateway into an
# amplifier or starve the uplink of alerts.
COMMAND_BURST = 20
COMMAND_RATE_PER_S = 2.0
ACK_BATCH = 64
STABLE_SESSION_S = 10.0  # a session that lasted this long resets the back-off

# MQTT 5 reason codes (OASIS MQTT 5.0, 3.2.2.2 CONNACK and 3.4.2.1 PUBACK); paho maps the
# 3.1.1 CONNACK return codes 1..5 onto 0x84..0x88, so one table serves both.
RC_UNSUPPORTED_PROTOCOL = 0x84
RC_BAD_CLIENT_ID = 0x85
RC_BAD_CREDENTIALS = 0x86
RC_NOT_AUTHORIZED = 0x87
RC_SERVER_UNAVAILABLE = 0x88



def close_socket_now(client: mqtt.Client) -> None:
    """Close a client's socket at once, without a DISCONNECT or waiting for anything: the
    one call of a paho private method (``_reset_sockets``), for a link that never got its
    CONNACK or is half dead. paho has no public equivalent (``disconnect()`` queues a
    packet and waits for the loop); setup.cfg pins its minor version and
    tests/test_seams.py fails loudly if the method goes."""
    client._reset_sockets()

class CommandError(ValueError):
    """A command that cannot be run; its message goes into the error reply."""


class ReplyBudget:
    """A token bucket: ``take()`` is True while the burst or the refill rate allows one
    more command (and so one more reply). ``now`` is a monotonic clock (a seam for tests)."""

    def __init__(self, burst: int = COMMAND_BURST, rate_per_s: float = COMMAND_RATE_PER_S,
                 now: Callable[[], float] = time.monotonic):
        self.burst = float(burst)
        self.rate_per_s = rate_per_s
        self._now = now
        self._tokens = float(burst)
        self._at = now()

    def take(self) -> bool:
        t = self._now()
        self._tokens = min(self.burst, self._tokens + (t - self._at) * self.rate_per_s)
        self._at = t
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def _rc_value(reason_code: object) -> int:
    value = getattr(reason_code, "value", reason_code)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0x80


def describe_connect_error(exc: BaseException, broker: BrokerSettings) -> tuple[str, str]:
    """(kind, message) for an exception raised while opening the connection."""
    where = "%s:%d" % (broker.host, broker.port)
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        return "tls", ("TLS: the certificate of broker %s could not be verified (%s) against "
                       "ca_file %s" % (where, reason, broker.ca_file or "(system CAs)"))
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        hint = ""
        if "CERTIFICATE_REQUIRED" in str(reason).upper() or "CERTIFICATE" in str(reason).upper():
            hint = " (does the broker require a client certificate: cert_file/key_file?)"
        return "tls", "TLS handshake with broker %s failed: %s%s" % (where, reason, hint)
    if isinstance(exc, ConnectionRefusedError):
        return "refused", ("broker %s refused the connection (nothing listening: is the "
                           "broker running, is the port right?)" % where)
    if isinstance(exc, socket.gaierror):
        return "dns", ("broker host %r: no such host (%s; check the name and the "
                       "gateway's DNS)" % (broker.host, exc.strerror))
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout", ("timed out connecting to broker %s (no answer: a firewall, a "
                           "wrong address, or no route?)" % where)
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "io", ("broker %s closed the connection during the handshake (TLS expected? "
                      "client certificate required?)" % where)
    return "io", "cannot connect to broker %s: %s" % (where, exc)


def describe_connack(rc: int, broker: BrokerSettings) -> tuple[str, str]:
    where = "%s:%d" % (broker.host, broker.port)
    if rc == RC_BAD_CREDENTIALS:
        return "auth", ("broker %s rejected user %r: wrong user name or password "
                        "(CONNACK 0x86 bad user name or password)" % (where, broker.username or ""))
    if rc == RC_NOT_AUTHORIZED:
        # Mosquitto answers a wrong password with 0x87 too (3.1.1: return code 5), so the
        # two cannot be told apart from here.
        return "auth", ("broker %s refused user %r: wrong user name or password, or the user "
                        "is not authorised to connect (CONNACK 0x87 not authorised)"
                        % (where, broker.username or "(anonymous)"))
    if rc == RC_UNSUPPORTED_PROTOCOL:
        return "protocol", "broker %s does not support this MQTT protocol version" % where
    if rc == RC_BAD_CLIENT_ID:
        return "client_id", "broker %s rejected client id %r" % (where, broker.client_id)
    if rc == RC_SERVER_UNAVAILABLE:
        return "unavailable", "broker %s is unavailable (CONNACK 0x88)" % where
    return "refused", "broker %s refused the session (CONNACK 0x%02x)" % (where, rc)


def make_tls_context(broker: BrokerSettings) -> ssl.SSLContext:
    """Server verification on (system CAs unless ``ca_file``); client certificate if set.

    OpenSSL's errors name no file ("[Errno 13] Permission denied", "no certificate or crl
    found"), and the files may have changed since the config was checked: a ValueError
    here names the setting and the path."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=broker.ca_file or None)
    except (OSError, ssl.SSLError) as e:
        raise ValueError("cannot use ca_file %s: %s" % (
            broker.ca_file or "(system CAs)", _ssl_reason(e))) from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if broker.cert_file:
        try:
            ctx.load_cert_chain(broker.cert_file, broker.key_file or None)
        except (OSError, ssl.SSLError) as e:
            raise ValueError("cannot use cert_file %s / key_file %s: %s" % (
                broker.cert_file, broker.key_file, _ssl_reason(e))) from None
    if broker.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def json_depth(payload: bytes) -> int:
    """The deepest nesting of arrays and objects in ``payload``, counted without parsing.

    ``json.loads`` recurses once per level and raises RecursionError (not ValueError) near
    1,000 levels, which 4 KB of ``[`` reach easily; so the depth is measured first, in
    one pass over the bytes that skips string contents (and their escapes)."""
    depth = deepest = 0
    in_string = escaped = False
    for b in payload:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:  # closing quote
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif b in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def _load_body(payload: bytes) -> object:
    """JSON from a request that passed the size check; CommandError for anything else."""
    if json_depth(payload) > MAX_COMMAND_DEPTH:
        raise CommandError("payload nested too deeply (at most %d levels)" % MAX_COMMAND_DEPTH)
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CommandError("payload is not valid UTF-8 JSON") from None


def _ssl_reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError):
        return str(e.reason or e)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e)


def parse_command(name: str, payload: bytes) -> tuple[str | None, dict]:
    """Validate a command request; (request id, args) or CommandError. Pure.

    Only ``ping``, ``state`` (no arguments) and ``read`` (``meter``: a string) exist;
    nothing else is accepted, so no request can reach a meter's write path or the config.
    """
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError("payload too large (%d bytes, at most %d)"
                           % (len(payload), MAX_COMMAND_BYTES))
    if name not in COMMANDS:
        raise CommandError("unknown command %r (available: %s)" % (name[:64],
                                                                    ", ".join(COMMANDS)))
    if payload.strip() == b"":
        return None, {}
    body = _load_body(payload)
    if not isinstance(body, dict):
        raise CommandError("payload must be a JSON object")
    request_id = body.pop("id", None)
    if request_id is not None and not isinstance(request_id, str):
        raise CommandError("'id' must be a string")
    allowed = {"read": {"meter"}}.get(name, set())
    extra = sorted(set(body) - allowed)
    if extra:
        raise CommandError("unexpected argument(s) %s for %s" % (", ".join(extra)[:200], name))
    if name == "read" and not isinstance(body.get("meter"), str):
        raise CommandError("read needs {\"meter\": \"<meter id>\"}")
    return request_id, body


def peek_request_id(payload: bytes) -> str | None:
    """The request's ``id`` if one can be read safely, so even an error reply can be
    matched to its request (never for oversized or malformed payloads)."""
    if len(payload) > MAX_COMMAND_BYTES:
        return None
    try:
        body = _load_body(payload)
    except CommandError:
        return None
    rid = body.get("id") if isinstance(body, dict) else None
    return rid if isinstance(rid, str) else None


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
            qos = msg.qos
            if msg.kind == "telemetry":
                qos = self.broker.telemetry_qos
            elif msg.kind == "score":
                qos = self.broker.score_qos
            try:
                info = client.publish(msg.topic, msg.payload, qos=qos, retain=msg.retain)
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
        self._connack = _rc_value(reason_code)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._closed = True
        if self.connected.is_set():
            self._lost_at = time.time()
        self.connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.append((mid, _rc_value(reason_code), str(reason_code)))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        for rc in reason_codes:
            if _rc_value(rc) >= 0x80:
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


class WatchError(RuntimeError):
    """The watcher cannot connect or subscribe; the message is for the technician."""


class Watcher:
    """A plain subscriber for ``loadwatch watch`` (kept here: the only paho import).

    ``on_message(topic, payload, retained)`` runs on the calling thread of ``run()``.
    Reconnects on its own after a lost connection (capped back-off); a refused first
    connection, bad credentials or a failed TLS handshake raise ``WatchError``.
    """

    def __init__(self, broker, topics: list[str],
                 on_message: Callable[[str, bytes, bool], None], session: str = "",
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
        self.client.on_message = lambda c, u, m: self.on_message(m.topic, bytes(m.payload),
                                                                 bool(m.retain))

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        rc = _rc_value(reason_code)
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
        if reason_codes and all(_rc_value(rc) >= 0x80 for rc in reason_codes):
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
