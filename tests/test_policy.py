"""Alert policy: raise/update/clear with holds, stable alert ids, unique event ids, restore.

The policy is fed score streams directly (it is pure: time is an argument), and the same
scenario is replayed under the MicroPython unix port, where the policy also runs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent.model import Event, Schedule, Score
from agent.policy import Policy, default_policy_settings

ROOT = Path(__file__).resolve().parents[1]
H = 3600.0
T0 = 1_700_000_000.0
EVIDENCE = {"step_kw": 1.4, "summary": "floor +1.4 kW since 2023-11-14, 24/7 for 2 days"}
CONTRIB = {"step": 20.0, "persistence": 20.0}
NIGHTS = Schedule(22, 7, 4, 1.4, int(T0))


def sc(t: float, value: float, ready: bool = True, step_kw: float = 1.4,
       evidence: dict | None = None, schedule: Schedule | None = None) -> Score:
    """The detector's typed verdict, as Policy.update takes it."""
    return Score(t, value, ready, step_kw, schedule, CONTRIB, evidence or EVIDENCE)


def feed(p: Policy, t_from: float, t_to: float, score: float, ready: bool = True,
         step_s: float = 600.0, step_kw: float = 1.4,
         schedule: Schedule | None = None) -> list[Event]:
    out: list[Event] = []
    t = t_from
    while t < t_to:
        out.extend(p.update(sc(t, score, ready, step_kw, schedule=schedule)))
        t += step_s
    return out


def test_alert_carries_the_schedule_object() -> None:
    p = Policy("m1", {"hold_s": H})
    ev = feed(p, T0, T0 + 2 * H, 90.0, schedule=NIGHTS)
    assert [e.kind for e in ev] == ["raised"]
    assert ev[0].data["schedule"] == {"start_hour": 22, "end_hour": 7, "days_seen": 4,
                                      "level_kw": 1.4, "since_t": int(T0)}
    q = Policy("m2", {"hold_s": H})
    assert feed(q, T0, T0 + 2 * H, 90.0)[0].data["schedule"] is None


def test_defaults_are_plain_numbers() -> None:
    d = default_policy_settings()
    assert {"raise_at", "clear_at", "hold_s", "update_every_s"} <= set(d)
    assert all(isinstance(v, float) for v in d.values())
    assert d["clear_at"] < d["raise_at"]


def test_raise_only_after_hold_and_with_a_stable_id() -> None:
    p = Policy("m7", {})
    hold = default_policy_settings()["hold_s"]
    assert feed(p, T0, T0 + hold, 80.0) == []  # not yet held long enough
    assert not p.active
    ev = feed(p, T0 + hold, T0 + hold + 600.0, 80.0)
    assert [e.kind for e in ev] == ["raised"]
    e = ev[0]
    assert p.active and e.alert_id == p.alert_id == "m7:%d" % int(T0)
    assert e.meter == "m7" and e.score == 80.0
    assert e.evidence["summary"] == EVIDENCE["summary"]
    assert e.evidence["contributions"] == CONTRIB
    assert "contributions" not in EVIDENCE  # the caller's evidence is not mutated


def test_a_dip_below_raise_at_restarts_the_hold() -> None:
    p = Policy("m", {"hold_s": 4 * H, "raise_at": 60.0})
    assert feed(p, T0, T0 + 3 * H, 70.0) == []
    assert feed(p, T0 + 3 * H, T0 + 3 * H + 600.0, 50.0) == []
    assert feed(p, T0 + 3 * H + 600.0, T0 + 7 * H, 70.0) == []
    ev = feed(p, T0 + 7 * H, T0 + 8 * H, 70.0)
    assert [e.kind for e in ev] == ["raised"]
    assert ev[0].alert_id == "m:%d" % int(T0 + 3 * H + 600.0)


def test_not_ready_never_raises_nor_clears() -> None:
    p = Policy("m", {"hold_s": H})
    assert feed(p, T0, T0 + 10 * H, 95.0, ready=False) == []
    assert not p.active
    assert len(feed(p, T0 + 10 * H, T0 + 12 * H, 95.0)) == 1
    assert feed(p, T0 + 12 * H, T0 + 80 * H, 0.0, ready=False) == []
    assert p.active


def test_updates_are_rate_limited_and_only_on_change() -> None:
    s = {"hold_s": H, "update_every_s": 6 * H, "update_delta": 5.0, "update_step_kw": 0.2,
         "raise_at": 60.0}
    p = Policy("m", s)
    assert [e.kind for e in feed(p, T0, T0 + 2 * H, 70.0)] == ["raised"]
    # Same score for a day: nothing changed, nothing sent.
    assert feed(p, T0 + 2 * H, T0 + 26 * H, 70.0) == []
    # The score moves: one update, then at most one per 6 h however often it moves.
    ups = []
    t = T0 + 26 * H
    k = 0
    while t < T0 + 38 * H:
        ups.extend(p.update(sc(t, 80.0 + 10.0 * (k % 2))))
        t += 600.0
        k += 1
    assert [e.kind for e in ups] == ["updated", "updated"]
    assert ups[1].t - ups[0].t >= 6 * H
    # A change of the step alone is meaningful too.
    ev = feed(p, T0 + 50 * H, T0 + 51 * H, ups[-1].score, step_kw=2.0)
    assert [e.kind for e in ev] == ["updated"]
    assert all(e.alert_id == p.alert_id for e in ups + ev)


def test_clear_after_clear_hold_then_a_new_alert_gets_a_new_id() -> None:
    s = {"hold_s": H, "clear_at": 30.0, "clear_hold_s": 12 * H}
    p = Policy("m", s)
    raised = feed(p, T0, T0 + 2 * H, 90.0)
    first_id = raised[0].alert_id
    # Between clear_at and raise_at: stays active; the drop is worth one update, no more.
    assert [e.kind for e in feed(p, T0 + 2 * H, T0 + 30 * H, 45.0)] == ["updated"]
    assert p.active
    # Below clear_at, but a bounce resets the clear hold.
    assert feed(p, T0 + 30 * H, T0 + 40 * H, 10.0) == []
    bounce = feed(p, T0 + 40 * H, T0 + 40 * H + 600.0, 40.0)
    assert [e.kind for e in bounce] == ["updated"] and p.active
    ev = feed(p, T0 + 41 * H, T0 + 54 * H, 10.0)
    assert [e.kind for e in ev] == ["cleared"]
    assert ev[0].alert_id == first_id and not p.active and p.alert_id == ""
    again = feed(p, T0 + 60 * H, T0 + 62 * H, 90.0)
    assert [e.kind for e in again] == ["raised"] and again[0].alert_id != first_id


def test_quiet_means_update_would_do_nothing() -> None:
    """``quiet(score)`` lets the per-sample loop (agent/scoring.py) skip building a verdict:
    it must be True only where ``update`` returns no event and leaves the state as it was,
    through a raise, updates, a bounce and a clear."""
    s = {"hold_s": H, "clear_at": 30.0, "clear_hold_s": 6 * H, "update_every_s": 2 * H}
    p = Policy("m", s)
    scores = [10.0] * 30 + [80.0] * 3 + [10.0] * 3 + [80.0] * 30 + [50.0] * 20 \
        + [10.0] * 50 + [75.0] * 2 + [10.0] * 10
    t = T0
    quiet = loud = 0
    for v in scores:
        if p.active:
            assert not p.quiet(v)  # an open alert is never quiet (it may update or clear)
        if p.quiet(v):
            before = p.state()
            assert p.update(sc(t, v)) == []
            assert p.state() == before
            quiet += 1
        else:
            p.update(sc(t, v))
            loud += 1
        t += 600.0
    assert quiet > 50 and loud > 50  # both sides of it were exercised
    q = Policy("m", s)
    for v in (80.0, 10.0):
        q.update(sc(T0, 80.0))
        assert not q.quiet(v)  # above raise_at before: the hold must be reset by update
    assert q.update(sc(T0 + 600.0, 10.0)) == [] and q.quiet(10.0)


def test_event_ids_are_unique() -> None:
    s = {"hold_s": 0.0, "update_every_s": 0.0, "update_delta": 1.0, "clear_hold_s": 0.0}
    p = Policy("m", s)
    ids = []
    t = T0
    for k in range(300):
        score = (90.0, 95.0, 10.0)[k % 3]
        for e in p.update(sc(t, score)):
            ids.append(e.id)
        t += 1.0 if k % 5 else 0.0  # several events within one second
    assert len(ids) > 100 and len(set(ids)) == len(ids)


def test_state_round_trip_mid_alert_continues_identically() -> None:
    import json

    s = {"hold_s": H, "update_every_s": 2 * H}
    a = Policy("m", s)
    feed(a, T0, T0 + 3 * H, 80.0)
    assert a.active
    b = Policy.from_state("m", s, json.loads(json.dumps(a.state())))
    assert b.state() == a.state() and b.active and b.alert_id == a.alert_id
    t = T0 + 3 * H
    for k in range(400):
        score = 80.0 + (k % 40) - (70.0 if 200 < k < 330 else 0.0)
        ea = a.update(sc(t, score))
        eb = b.update(sc(t, score))
        assert [(e.kind, e.id, e.alert_id, e.score) for e in ea] == [
            (e.kind, e.id, e.alert_id, e.score) for e in eb]
        t += 600.0
    assert a.state() == b.state()


def test_per_class_settings_change_the_decision() -> None:
    strict = Policy("m", {"raise_at": 90.0, "hold_s": H})
    loose = Policy("m", {"raise_at": 50.0, "hold_s": H})
    assert feed(strict, T0, T0 + 5 * H, 70.0) == []
    assert len(feed(loose, T0, T0 + 5 * H, 70.0)) == 1


@pytest.mark.parametrize("bad", [{"nope": 1.0}, {"raise_at": "60"}, {"hold_s": True},
                                 {"raise_at": 30.0, "clear_at": 50.0}])
def test_bad_settings_are_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        Policy("m", bad)


MP_SCRIPT = """
from agent.policy import Policy
from agent.model import Score
p = Policy("m", {"hold_s": 3600.0, "clear_hold_s": 7200.0})
kinds = []
t = 1700000000.0
for k in range(200):
    score = 90.0 if k < 100 else 5.0
    for e in p.update(Score(t, score, True, 1.0, None, {"step": 1.0}, {"summary": "x"})):
        kinds.append(e.kind + ":" + e.alert_id)
    t += 300.0
q = Policy.from_state("m", {"hold_s": 3600.0, "clear_hold_s": 7200.0}, p.state())
print(",".join(kinds), q.state() == p.state(), p.quiet(5.0), p.quiet(90.0))
"""


def test_policy_runs_on_micropython(micropython_bin: str) -> None:
    env = dict(os.environ, MICROPYPATH=str(ROOT))
    proc = subprocess.run([micropython_bin, "-c", MP_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=60, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "raised:m:1700000000,cleared:m:1700000000 True True False"


@pytest.mark.parametrize("bad", [[], {"v": 2}, {"v": 1, "active": 1, "alert_id": "x", "n": [1]}])
def test_corrupt_state_is_rejected(bad) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        Policy.from_state("m", {}, bad)


def test_a_restored_alert_keeps_its_saved_id_until_it_clears() -> None:
    """The id is made from the meter and the onset; a saved state whose id those would not
    give (saved under another meter name) still continues that alert's id."""
    p = Policy("m", {"hold_s": H, "clear_hold_s": 2 * H})
    feed(p, T0, T0 + 2 * H, 90.0)
    state = p.state()
    assert state["alert_id"] == "m:%d" % int(T0)
    state["alert_id"] = "old-name:%d" % int(T0)
    q = Policy.from_state("m", {"hold_s": H, "clear_hold_s": 2 * H}, state)
    assert q.active and q.alert_id == "old-name:%d" % int(T0)
    assert q.state() == state
    ev = feed(q, T0 + 2 * H, T0 + 5 * H, 5.0)
    assert [(e.kind, e.alert_id) for e in ev] == [("cleared", "old-name:%d" % int(T0))]
    assert not q.active and q.alert_id == ""
    again = feed(q, T0 + 6 * H, T0 + 8 * H, 90.0)
    assert [(e.kind, e.alert_id) for e in again] == [("raised", "m:%d" % int(T0 + 6 * H))]


MP_HEAP = """
import gc
from agent.policy import Policy
from agent.model import Score
N = 64
ps = [Policy("meter-%d" % i, {"hold_s": 3600.0}) for i in range(N)]
t = 1700000000.0
gc.collect()
before = gc.mem_alloc()
for k in range(20):
    for p in ps:
        p.update(Score(t, 90.0, True, 1.0, None, {}, {}))
    t += 600.0
gc.collect()
print(sum(1 for p in ps if p.active), (gc.mem_alloc() - before) // N)
"""


def test_an_open_alert_costs_no_heap_of_its_own_on_micropython(micropython_bin: str) -> None:
    """bench/footprint.py's meters are all in alert: an alert id string kept per policy
    cost ~64 B a meter on MicroPython; the id is made when asked for instead."""
    env = dict(os.environ, MICROPYPATH=str(ROOT))
    proc = subprocess.run([micropython_bin, "-c", MP_HEAP], env=env, capture_output=True,
                          text=True, timeout=60, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    active, per_policy = (int(x) for x in proc.stdout.split())
    assert active == 64
    # ~470 B in all stay from the run (the last events' leftovers), ~7 B a policy; an id
    # string per policy made this ~73 B.
    assert per_policy < 32
