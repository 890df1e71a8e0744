"""Campaign: the gateway clock stepped both ways while a miner's alert is open (issue 11,
items 3 and 4). The load goes on in real time; only the time stamped on it is wrong.

Guarantees: the alert is never cleared while the miner runs (no clear on missing
evidence), never raised again under a new id, no event is dated before 2020 (an RTC reset
to 2003 must not date an alert id in 2003), and detection goes on afterwards.
"""

from __future__ import annotations

import time

import harness as h
from campaign import record

from agent.clock import Clock
from agent.clockguard import CLOCK_FLOOR
from agent.runtime import Agent

DAY = h.DAY
RAISED_BY = h.T0 + 6 * DAY  # the miner (day 3) is raised near day 5


def _active_agent(state_dir):
    agent = Agent(h.plan(state_dir))
    feed = h.Feed(agent)
    t = feed.run(h.T0, RAISED_BY)
    assert [e.kind for e in feed.alerts()][:1] == ["raised"]
    alert_id = feed.alerts()[0].alert_id
    return agent, feed, t, alert_id


def _problems(feed: h.Feed, alert_id: str, since: int) -> list[str]:
    out = []
    for e in feed.events[since:]:
        if e.t < CLOCK_FLOOR:
            out.append("%s %s dated %s" % (e.kind, e.id, time.strftime("%Y", time.gmtime(e.t))))
        if e.is_alert and e.kind in ("raised", "cleared"):
            out.append("%s %s (alert %s)" % (e.kind, e.id, e.alert_id))
        elif e.is_alert and e.alert_id != alert_id:
            out.append("event of another alert %s" % e.id)
    return out


STEPS = {
    # name: (clock error while wrong, real seconds wrong, restart in between)
    "back 3 days for 12 h, then NTP": (-3 * DAY, 12 * 3600.0, False),
    "back 3 days for good": (-3 * DAY, 5 * DAY, False),
    "back 2 h for good": (-2 * 3600.0, 5 * DAY, False),
    "forward 2 days for good": (2 * DAY, 5 * DAY, False),
    "forward 1 h for good": (3600.0, 5 * DAY, False),
    "RTC reset to 2003 at restart, NTP after 1 day": (
        time.mktime((2003, 1, 1, 0, 0, 0, 0, 0, 0)) - RAISED_BY, DAY, True),
}


def test_clock_steps_never_clear_or_re_raise_a_running_miner(tmp_path):
    problems: dict[str, list[str]] = {}
    alerts = 0
    for i, (name, (error, wrong_s, restart)) in enumerate(STEPS.items()):
        state_dir = tmp_path / ("case-%d" % i)
        agent, feed, t, alert_id = _active_agent(state_dir)
        alerts += len(feed.alerts())
        since = len(feed.events)
        if restart:
            agent.save_state()
            agent = Agent(h.plan(state_dir))
            since = 0
            feed = h.Feed(agent)
        t = feed.run(t, t + wrong_s, clock_error=error)
        if wrong_s < 4 * DAY:  # the clock comes right again
            t = feed.run(t, t + 3 * DAY)
        p = agent.pipelines[h.MINER]
        problems[name] = _problems(feed, alert_id, since)
        if not (p.policy.active and p.policy.alert_id == alert_id):
            problems[name].append("alert %r active=%s at the end" % (p.policy.alert_id,
                                                                       p.policy.active))
        alerts += len(feed.alerts())
    bad = {k: v for k, v in problems.items() if v}
    record("clock steps both ways", runs=len(STEPS), alerts=alerts,
           lost=sum(1 for v in bad.values() if any("cleared" in x or "active" in x
                                                    for x in v)),
           second_id=sum(1 for v in bad.values() if any("raised" in x or "another" in x
                                                         for x in v)),
           note="; ".join("%s: %s" % (k, v[0]) for k, v in bad.items())[:200]
           or ", ".join(STEPS))
    assert not bad, bad


def test_held_meter_says_unknown_on_the_status_page(tmp_path):
    agent, feed, t, _ = _active_agent(tmp_path / "s")
    feed.run(t, t + 3600.0, clock_error=-3 * DAY)
    row = next(r for r in agent.snapshot() if r["meter"] == h.MINER)
    assert row["state"] == "unknown" and row["alert"]


def test_a_wall_clock_follows_ntp_steps_made_after_start(monkeypatch):
    """Timestamps come from the wall clock itself, so an NTP step after start shows in
    them (it used to keep the start-time offset: -3600 s after a +1 h step)."""
    clock = Clock()
    real = time.time
    assert abs(clock.now() - real()) < 0.5
    monkeypatch.setattr(time, "time", lambda: real() + 3600.0)  # NTP steps +1 h
    assert abs(clock.now() - (real() + 3600.0)) < 0.5
    mono = clock.monotonic()
    assert abs(mono - time.monotonic()) < 0.5  # scheduling is not moved


def test_clock_step_seam_moves_simulated_time_both_ways():
    clock = Clock(speed=3600.0, t0=h.T0)
    before = clock.now()
    clock.step(-2 * DAY)
    assert before - 2 * DAY - 60 < clock.now() < before - 2 * DAY + 3600
    clock.step(+5 * DAY)
    assert clock.now() > before + 2 * DAY
