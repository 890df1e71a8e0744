"""A fleet that loses its broker must not come back in waves (issue 11, item 10).

The publisher's reconnect delays are drawn the way a real gateway draws them (its own
``Publisher``, with its default back-off), for gateways whose ids used to collide.
"""

from __future__ import annotations

import statistics

import pytest

from agent.backoff import Backoff
from agent.config import BrokerSettings
from agent.publish.codec import Codec
from agent.publish.mqtt import Publisher
from agent.publish.outbox import Outbox

# Fault campaigns (tests/faults): `make test` and `make faults` only.
pytestmark = pytest.mark.slow


def reconnect_delays(client_id: str, tmp_path, n: int = 40) -> list[float]:
    settings = BrokerSettings(host="127.0.0.1", port=1, client_id=client_id, tls=False,
                              prefix="lw/v1/s/%s" % client_id)
    outbox = Outbox(tmp_path / ("%s.db" % client_id), 1_000_000)
    pub = Publisher(settings, outbox, Codec(settings.prefix, "s", client_id))
    try:
        return [pub.backoff.failure() for _ in range(n)]
    finally:
        pub.stop(0)
        outbox.close()


def test_retries_at_the_cap_are_spread_over_the_whole_window(tmp_path) -> None:
    delays = reconnect_delays("gw-0001", tmp_path)
    at_cap = delays[10:]  # 1 s doubling reaches the 60 s cap after 7 failures
    assert max(delays) <= 60.0
    assert len(set(at_cap)) == len(at_cap), "retries at the cap repeat: %s" % at_cap[:5]
    # Full jitter: uniform over [0, 60] s (mean 30, sd 17.3); 30 draws cover the window.
    assert min(at_cap) < 20.0 and max(at_cap) > 40.0, at_cap
    assert 15.0 < statistics.mean(at_cap) < 45.0


def test_gateways_whose_ids_sum_alike_do_not_retry_in_lockstep(tmp_path) -> None:
    a = reconnect_delays("gw-0012", tmp_path)
    b = reconnect_delays("gw-0021", tmp_path)
    assert sum(b"gw-0012") == sum(b"gw-0021")  # the old seed collided
    same = sum(1 for x, y in zip(a, b) if abs(x - y) < 0.01)
    assert same <= 2, "%d of %d delays equal: %s / %s" % (same, len(a), a[:6], b[:6])
    # And a restart of the same gateway does not replay its previous sequence either.
    (tmp_path / "again").mkdir()
    c = reconnect_delays("gw-0012", tmp_path / "again")
    assert sum(1 for x, y in zip(a, c) if abs(x - y) < 0.01) <= 2


def test_poller_backoff_jitters_after_its_cap_too() -> None:
    b = Backoff(2.0, 30.0, seed=7)
    delays = [b.failure() for _ in range(30)]
    assert 2.0 <= delays[0] < 2.2  # nominal 2 s plus up to 10 %
    at_cap = delays[6:]
    assert all(30.0 <= d < 33.0 for d in at_cap), at_cap
    assert len(set(at_cap)) > 20  # not all the same tick
    b.success()
    assert b.delay == 0.0 and 2.0 <= b.failure() < 2.2
