"""Campaign: the outbox on its own small file system, filled to the last byte while the
miner's alert is decided (issue 11, item 1).

The outbox is "split" from the state directory, as a site that gives it its own partition
does: state.json can still be written while the outbox cannot. An event that is not on
disk must not be in state.json's policy either, it is held in memory and written when
there is room, the status says "outbox full", and after space returns the subscriber (here:
the publisher's side of the outbox, in order) sees every alert, "raised" first.
"""

from __future__ import annotations

import json
import time

import harness as h
import pytest
from campaign import record

from agent.publish.outbox import Outbox
from agent.runtime import Agent
from agent.status import render

# Fault campaigns (tests/faults): `make test` and `make faults` only.
pytestmark = pytest.mark.slow


def _drain(ob: Outbox) -> list[dict]:
    """Take everything on disk in order, as the publisher does, and acknowledge it."""
    out = []
    while True:
        batch = ob.begin(500)
        if not batch:
            return out
        out += [json.loads(e.message.payload) for e in batch]
        ob.ack([e.seq for e in batch])


def _until_full(feed: h.Feed, ob: Outbox, t: float) -> float:
    while ob.stats()["state"] != "full":
        assert t < h.T0 + h.MINER_DAY * h.DAY, "the outbox never met the full disk"
        t = feed.run(t, t + 3600.0)
    assert not feed.alerts()
    return t


def _alert_order_problems(delivered: list[dict]) -> list[str]:
    problems, seen = [], {}
    for p in delivered:
        if p.get("kind") not in ("raised", "updated", "cleared"):
            continue
        first = seen.setdefault(p["alert_id"], p["kind"])
        if first != "raised":
            problems.append("%s: first event %s" % (p["alert_id"], first))
    return problems


def test_full_outbox_disk_holds_alerts_and_never_advances_saved_state(tmp_path, small_fs):
    state_dir = tmp_path / "state"
    agent = Agent(h.plan(state_dir, outbox=small_fs.path / "outbox.sqlite", max_mb=0.5))
    ob = agent.open_outbox()
    feed = h.Feed(agent)
    t = feed.run(h.T0, h.T0 + 2 * h.DAY)
    small_fs.fill()
    # SQLite still has some room in pages it owns: the disk is full for it a little later.
    t = _until_full(feed, ob, t)
    # The miner comes on at day 3 and is raised near day 5: all of it on a full disk.
    t = feed.run(t, h.T0 + 7 * h.DAY)
    during = feed.alerts()
    stats = ob.stats()
    assert stats["state"] == "full" and stats["held"] > 0, stats
    assert [e.kind for e in during][:1] == ["raised"], during
    agent.checkpoint()
    saved = json.loads((state_dir / "state.json").read_text())["meters"][h.MINER]["policy"]
    assert saved["active"] == 0, "state.json claims an alert that is not on disk"
    page = render(json.loads((state_dir / "status.json").read_text()), 0.0)
    assert "OUTBOX FULL" in page, page
    # Space returns: the next write (at most one attempt a second) takes everything
    # held, in order, with the policy.
    small_fs.free()
    time.sleep(1.1)
    t = feed.run(t, h.T0 + 9 * h.DAY)
    assert ob.stats()["state"] == "ok" and ob.held() == 0
    delivered = _drain(ob)
    decided = [e.id for e in feed.alerts()]
    got = [p["id"] for p in delivered if p.get("kind") in ("raised", "updated", "cleared")]
    lost = [i for i in decided if i not in got]
    order = _alert_order_problems(delivered)
    record("full outbox disk (split outbox)", runs=1, alerts=len(decided), lost=len(lost),
           second_id=len(got) - len(set(got)), crash_loops=0,
           note="%d alert events decided on a full %d-byte tmpfs; raised-first violations "
           "%d" % (len(during), small_fs.size, len(order)))
    assert not lost and not order
    assert len(got) == len(set(got))
    agent.checkpoint()
    saved = json.loads((state_dir / "state.json").read_text())["meters"][h.MINER]["policy"]
    assert saved["active"] == 1
    ob.close()


def test_crash_while_the_outbox_disk_is_full_loses_no_alert(tmp_path, small_fs):
    """Killed while alert events wait in memory: the restart decides them again (state.json
    never claimed them), and they reach the disk once there is room, raised first."""
    state_dir = tmp_path / "state"
    outbox = small_fs.path / "outbox.sqlite"
    agent = Agent(h.plan(state_dir, outbox=outbox, max_mb=0.5))
    ob = agent.open_outbox()
    feed = h.Feed(agent)
    t = feed.run(h.T0, h.T0 + 2 * h.DAY)
    small_fs.fill()
    t = _until_full(feed, ob, t)
    t = feed.run(t, h.T0 + 6 * h.DAY)
    held = [e for e in feed.alerts()]
    assert held and ob.held() > 0
    agent.checkpoint()
    # kill -9: the memory is gone; the process never closed the outbox.
    small_fs.free()
    time.sleep(1.1)
    again = Agent(h.plan(state_dir, outbox=outbox, max_mb=0.5))
    ob2 = again.open_outbox()
    feed2 = h.Feed(again)
    feed2.run(t, h.T0 + 8 * h.DAY)
    delivered = _drain(ob2)
    kinds = [p["kind"] for p in delivered if p.get("meter") == h.MINER and
             p.get("kind") in ("raised", "updated", "cleared")]
    record("crash with alerts held (full disk)", runs=1, alerts=len(held),
           lost=0 if kinds[:1] == ["raised"] else len(held), crash_loops=0,
           note="held %d alert events at the kill; after restart: %s" % (len(held), kinds))
    assert kinds[:1] == ["raised"], delivered
    assert not _alert_order_problems(delivered)
    ob2.close()
    ob.close()
