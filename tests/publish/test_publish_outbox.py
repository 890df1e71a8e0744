"""The durable outbox: order, transactions, the bound policy, persistence, corruption."""

from __future__ import annotations

import logging
import sqlite3
import time

from publish_helpers import alert, codec, health, score, telemetry

from agent.publish.outbox import Outbox


def test_order_ack_nack_and_persistence(tmp_path):
    c = codec()
    path = tmp_path / "o.db"
    ob = Outbox(path, 1_000_000)
    msgs = [c.event(e) for e in (alert("m1", 1), telemetry("m1", 1), alert("m2", 1),
                                 telemetry("m1", 2), health("m1", 1))]
    for m in msgs:
        assert ob.put(m)
    first = ob.begin(2)
    assert [e.message for e in first] == msgs[:2]
    second = ob.begin(10)  # the ones in flight are not handed out twice
    assert [e.message for e in second] == msgs[2:]
    ob.nack([e.seq for e in second])
    ob.ack([first[0].seq])
    again = ob.begin(10)
    assert [e.message for e in again] == msgs[2:]
    ob.close()
    # Reopened: what was not acknowledged is still there, in order, in flight or not.
    ob = Outbox(path, 1_000_000)
    assert [e.message for e in ob.begin(10)] == msgs[1:]
    assert ob.stats()["pending"] == 4
    ob.close()


def test_bound_drops_oldest_telemetry_never_alerts(tmp_path):
    c = codec()
    ob = Outbox(tmp_path / "o.db", 12_000)
    stored_alerts = []
    for i in range(60):
        assert ob.put(c.event(telemetry("m1", i)))
        ob.put(c.event(score("m1", i)))
        if i % 10 == 0:
            a = c.event(alert("m1", i))
            assert ob.put(a)
            stored_alerts.append(a.id)
    st = ob.stats()
    assert st["bytes"] <= 12_000
    assert st["dropped"]["telemetry"] > 0 and st["dropped"]["score"] > 0
    left = ob.begin(1000)
    assert [e.message.id for e in left if e.message.kind == "raised"] == stored_alerts
    tele = [int(e.message.id.rsplit(":", 1)[1]) for e in left if e.message.kind == "telemetry"]
    assert tele == sorted(tele) and tele[-1] == 59  # oldest went first; the newest stayed
    assert st["pending"] == len(left)
    ob.close()


def test_alerts_are_kept_past_the_bound_and_counted(tmp_path):
    c = codec()
    ob = Outbox(tmp_path / "o.db", 3_000)
    ids = []
    for i in range(20):
        m = c.event(alert("m1", i))
        assert ob.put(m)
        ids.append(m.id)
    assert [e.message.id for e in ob.begin(100)] == ids
    assert ob.stats()["over_bound"] > 0
    # A telemetry message that cannot fit is itself dropped, and counted.
    assert ob.put(c.event(telemetry("m1", 1))) is False
    assert ob.stats()["dropped"]["telemetry"] == 1
    ob.close()


def test_drop_counters_survive_restart(tmp_path):
    c = codec()
    ob = Outbox(tmp_path / "o.db", 2_000)
    for i in range(30):
        ob.put(c.event(telemetry("m1", i)))
    dropped = ob.stats()["dropped"]["telemetry"]
    assert dropped > 0
    ob.close()
    ob = Outbox(tmp_path / "o.db", 2_000)
    assert ob.stats()["dropped"]["telemetry"] == dropped
    ob.close()


def test_reject_parks_alerts_and_deletes_telemetry(tmp_path):
    c = codec()
    ob = Outbox(tmp_path / "o.db", 1_000_000)
    ob.put(c.event(alert("m2", 1)))
    ob.put(c.event(telemetry("m2", 1)))
    ob.put(c.event(alert("m1", 1)))
    a, t, b = ob.begin(10)
    ob.reject(a.seq, "PUBACK 0x87")
    ob.reject(t.seq, "PUBACK 0x87")
    ob.ack([b.seq])
    assert ob.begin(10) == [] and ob.stats()["rejected"] == 2 and ob.stats()["pending"] == 1
    ob.close()
    ob = Outbox(tmp_path / "o.db", 1_000_000)  # parked alerts get another chance next run
    assert [e.message.id for e in ob.begin(10)] == [a.message.id]
    ob.close()


def test_corrupt_database_is_moved_aside_and_a_fresh_one_started(tmp_path, caplog):
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not a database" * 500)
    with caplog.at_level(logging.ERROR, logger="loadwatch.outbox"):
        ob = Outbox(path, 1_000_000)
    assert "CORRUPT" in caplog.text
    aside = list(tmp_path.glob("o.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    assert ob.put(codec().event(alert("m1", 1)))
    assert ob.stats()["corrupt_recovered"] == 1 and ob.stats()["pending"] == 1
    ob.close()
    # ...and the next start is normal: no crash loop, no second move.
    ob = Outbox(path, 1_000_000)
    assert ob.stats()["pending"] == 1 and len(list(tmp_path.glob("o.db.corrupt-*"))) == 1
    ob.close()


def test_damaged_pages_are_detected(tmp_path, caplog):
    path = tmp_path / "o.db"
    ob = Outbox(path, 10_000_000)
    for i in range(300):
        ob.put(codec().event(telemetry("m1", i)))
    ob.close()
    raw = bytearray(path.read_bytes())
    for off in range(4096, len(raw), 4096):  # smash every page after the header page
        raw[off:off + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.ERROR, logger="loadwatch.outbox"):
        ob = Outbox(path, 10_000_000)
    assert ob.stats()["corrupt_recovered"] == 1 and "CORRUPT" in caplog.text
    ob.close()


def test_wal_mode_and_full_sync_for_alerts(tmp_path):
    ob = Outbox(tmp_path / "o.db", 1_000_000)
    ob.put(codec().event(alert("m1", 1)))
    db = sqlite3.connect(tmp_path / "o.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert ob._sync == "FULL"  # the last put was an alert: it committed with fsync
    ob.put(codec().event(telemetry("m1", 1)))
    assert ob._sync == "NORMAL"
    ob.close()


def test_put_many_is_one_transaction_with_the_same_rules(tmp_path):
    c = codec()
    ob = Outbox(tmp_path / "o.db", 6_000)
    msgs = [c.event(telemetry("m1", i)) for i in range(10)] + [c.event(alert("m1", 1))]
    stored = ob.put_many(msgs)
    assert stored[-1] is True  # the alert
    left = [e.message.id for e in ob.begin(100)]
    assert left[-1] == msgs[-1].id and ob.stats()["bytes"] <= 6_000
    assert ob.stats()["dropped"]["telemetry"] == 10 - (len(left) - 1)
    assert ob.puts == 11
    ob.close()


def test_acknowledged_alerts_are_kept_briefly_for_replay(tmp_path):
    c = codec()
    ob = Outbox(tmp_path / "o.db", 1_000_000, keep_acked_s=0.5)
    a, t = c.event(alert("m1", 1)), c.event(telemetry("m1", 1))
    ob.put(a)
    ob.put(t)
    ob.ack([e.seq for e in ob.begin(10)])
    assert ob.pending() == 0 and ob.begin(10) == []
    # After a reconnect the alert goes out again (same id); telemetry was deleted.
    assert ob.replay(None) == 0  # a fresh start: nothing to replay
    assert ob.replay(time.time()) == 1
    again = ob.begin(10)
    assert [e.message for e in again] == [a]
    ob.ack([e.seq for e in again])
    time.sleep(1.1)  # past the window, and past the once-a-second purge
    b = c.event(alert("m1", 2))
    ob.put(b)
    ob.ack([e.seq for e in ob.begin(10)])  # ...which purges the first alert for good
    db = sqlite3.connect(tmp_path / "o.db")
    assert [r[0] for r in db.execute("SELECT msg_id FROM outbox")] == [b.id]
    db.close()
    assert ob.replay(time.time()) == 1 and [e.message for e in ob.begin(10)] == [b]
    assert ob.replay(time.time() + 10) == 0  # a session that ended long after: nothing
    ob.close()
