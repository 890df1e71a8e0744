"""The outbox bound is a bound on disk (issue 11, item 9): health is coalesced per meter,
the write-ahead log counts, and the file shrinks again after an outage has drained."""

from __future__ import annotations

import os
import time

import pytest
from campaign import record

from agent.model import Event
from agent.publish.codec import Codec
from agent.publish.outbox import Outbox

# Fault campaigns (tests/faults): `make test` and `make faults` only.
pytestmark = pytest.mark.slow

CYCLES = 800
C = Codec("lw/v1/s1/g1", "s1", "g1")


def _on_disk(path) -> int:
    return sum(os.path.getsize(str(path) + x) for x in ("", "-wal")
               if os.path.exists(str(path) + x))


def _health(meter: str, n: int, state: str) -> Event:
    return Event("health", meter, time.time(), "%s:health:%d" % (meter, n), data={
        "state": state, "last_success": 0.0, "last_error": "timeout" * (n % 3), "polls": n,
        "errors": {"timeout": n}, "consecutive_failures": n % 5, "backoff_s": 4.0})


# A three-phase meter read for everything (an SDM630's 28 quantities): ~420-byte slots.
_FAMILIES = {"v_v": 231.2, "i_a": 6.53, "p_w": 1520.5, "s_va": 1550.0, "q_var": 280.0,
             "pf": 0.97}


def _telemetry(meter: str, n: int) -> Event:
    stats = {"f_hz": [50.01, 49.97, 50.04, 90]}
    for fam, x in _FAMILIES.items():
        for k, name in enumerate((fam, fam + "_l1", fam + "_l2", fam + "_l3")):
            y = x * (1.0 + 0.013 * k + 0.0007 * (n % 97))
            stats[name] = [y, y * 0.93, y * 1.21, 90]
    return Event("telemetry", meter, time.time(), "%s:telemetry:%d" % (meter, n), data={
        "slot_start": 900.0 * n, "slot_s": 900.0, "samples": 90, "bad_samples": 0,
        "p_mean_w": 1520.5, "p_min_w": 1400.0, "p_max_w": 1700.0, "energy_kwh": 0.38,
        "stats": stats, "counters": {"e_import_kwh": 18344.72 + n, "e_export_kwh": 12.5,
                                     "e_total_kwh": 18357.22 + n},
        "quality": [], "score": 12.0, "detector_state": "ready"})


def _alert(n: int) -> Event:
    return Event("raised", "m0", time.time(), "m0:raised:%d" % n, score=90.0,
                 alert_id="m0:%d" % n, evidence={"summary": "x"})


def test_flapping_meters_with_the_broker_away_stay_within_the_bound(small_fs):
    """Four meters flapping between ok and down every cycle, the broker away: before,
    health was never dropped and the file reached 171 % of max_mb; now each meter keeps
    its latest health only, and the database plus its WAL stay within the bound."""
    max_bytes = 1024 * 1024
    path = small_fs.path / "outbox.sqlite"  # tmpfs: fsync is free, the test is quick
    worst = 0
    alerts = []
    with Outbox(path, max_bytes) as ob:
        for n in range(CYCLES):
            for m in range(4):
                ob.put(C.event(_health("m%d" % m, n, "down" if n % 2 else "ok")))
            ob.put(C.event(_telemetry("m%d" % (n % 4), n)))
            if n % 100 == 0:
                ev = _alert(n)
                ob.put(C.event(ev))
                alerts.append(ev.id)
            worst = max(worst, _on_disk(path))
        kept = [e.message for e in ob.begin(100000)]
    health = [m for m in kept if m.kind == "health"]
    lost = [i for i in alerts if i not in {m.id for m in kept}]
    record("outbox bound: flapping health", runs=CYCLES, alerts=len(alerts), lost=len(lost),
           note="worst on disk %d of %d bytes (%.0f %%), %d health kept (4 meters)"
           % (worst, max_bytes, 100.0 * worst / max_bytes, len(health)))
    assert not lost
    assert sorted(m.meter for m in health) == ["m0", "m1", "m2", "m3"]
    assert [m.id for m in health if m.meter == "m0"] == ["m0:health:%d" % (CYCLES - 1)]
    assert worst <= max_bytes, worst


def test_the_file_shrinks_after_a_backlog_drained(small_fs):
    path = small_fs.path / "outbox.sqlite"
    with Outbox(path, 8 * 1024 * 1024, keep_acked_s=0) as ob:
        for n in range(6000):
            ob.put(C.event(_telemetry("m%d" % (n % 4), n)))
        big = _on_disk(path)
        while True:
            batch = ob.begin(500)
            if not batch:
                break
            ob.ack([e.seq for e in batch])
        after = _on_disk(path)
    assert big > 3 * 1024 * 1024, big
    assert after < 256 * 1024, (big, after)
