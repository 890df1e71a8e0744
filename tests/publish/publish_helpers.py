"""Shared builders for the delivery tests (events of every kind, a running publisher)."""

from __future__ import annotations

import time

from agent.backoff import Backoff
from agent.config import BrokerSettings
from agent.model import Event
from agent.publish.codec import Codec
from agent.publish.mqtt import Publisher
from agent.publish.outbox import Outbox

PREFIX = "lw/v1/s1/g1"
HOST = "127.0.0.1"


def broker_settings(port: int, **kw) -> object:
    """The real ``agent.config.BrokerSettings`` with test defaults."""
    base = dict(host=HOST, port=port, client_id="gw-test", tls=False, prefix=PREFIX,
                keepalive_s=10, protocol="auto")
    base.update(kw)
    return BrokerSettings(**base)


def codec() -> Codec:
    return Codec(PREFIX, "s1", "g1")


def alert(meter: str, n: int, kind: str = "raised", t: float | None = None) -> Event:
    t = time.time() if t is None else t
    return Event(kind, meter, t, "%s:%s:%d" % (meter, kind, n), score=87.5,
                 alert_id="%s:onset:%d" % (meter, n),
                 evidence={"summary": "floor +1.4 kW for 4 days", "floor_w": 1400.0,
                           "jitter_pct": 0.8, "night_evening_ratio": float("nan")},
                 data={"contributions": {"floor": 40.0, "flatness": 25.0, "jitter": 22.5}})


def telemetry(meter: str, n: int, t: float | None = None) -> Event:
    t = time.time() if t is None else t
    return Event("telemetry", meter, t, "%s:telemetry:%d" % (meter, n), data={
        "slot_start": 900.0 * int(t // 900), "slot_s": 900.0, "samples": 90, "bad_samples": 0,
        "p_mean_w": 1520.5, "p_min_w": 1400.0, "p_max_w": 1700.0, "energy_kwh": 0.38,
        "stats": {"p_w": [1520.5, 1400.0, 1700.0, 90], "pf": [0.97, 0.95, 0.99, 90]},
        "counters": {"e_import_kwh": 18344.72}, "quality": [], "score": 12.0,
        "detector_state": "ready"})


def score(meter: str, n: int, t: float | None = None) -> Event:
    t = time.time() if t is None else t
    return Event("score", meter, t, "%s:score:%d" % (meter, n), score=12.0,
                 evidence={"summary": "normal"},
                 data={"contributions": {"floor": 5.0, "jitter": 7.0}, "state": "ready"})


def health(meter: str, n: int, t: float | None = None) -> Event:
    t = time.time() if t is None else t
    return Event("health", meter, t, "%s:health:%d" % (meter, n), data={
        "state": "degraded", "last_success": t - 20, "last_error": "timeout", "polls": 10,
        "errors": {"timeout": 2}, "consecutive_failures": 2, "backoff_s": 4.0})


def start_publisher(settings, path, max_bytes: int = 10_000_000, on_command=None,
                    status_extra=None, **kw) -> tuple[Publisher, Outbox, Codec]:
    ob = Outbox(path, max_bytes)
    # The codec decides QoS, from the same [broker] settings the agent gives it.
    c = Codec(PREFIX, "s1", "g1", settings.telemetry_qos, settings.score_qos,
              telemetry_encoding=settings.telemetry_encoding)
    kw.setdefault("backoff", Backoff(0.05, 0.5, 2.0, 0.1))
    pub = Publisher(settings, ob, c, on_command=on_command,
                    status_extra=status_extra or (lambda: {"version": "test", "meters": 2}),
                    **kw)
    pub.start()
    return pub, ob, c


def put(pub: Publisher, ob: Outbox, c: Codec, ev: Event) -> bool:
    stored = ob.put(c.event(ev))
    pub.wake()
    return stored


def wait(pred, timeout: float = 10.0) -> bool:
    """Poll ``pred()`` every 20 ms until it is true or ``timeout`` s pass; its last value
    (the publisher works on its own thread: the tests wait for what it has done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()
