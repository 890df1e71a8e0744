"""The verdict on a run: what the agent saw (a poll listener and an event listener on the
Agent), what the utility received (the subscriber), and the scenario's expectations, as
checks in a report. "Lost" is every alert or health event the agent emitted that never
reached the subscriber. Quality flags and poll errors come from the poll listener, because
telemetry merges a slot's flags and cannot tell a scored reading from an unscored one.
"""

from __future__ import annotations

import math
import statistics

from agent.model import ALERT_KINDS, Event, RawPoll, Reading, quality_names
from hil.scenario import DAY, Scenario


class Check:
    def __init__(self, what: str, ok: bool, detail: str = ""):
        self.what = what
        self.ok = ok
        self.detail = detail


class Report:
    """Everything the run observed, the checks against the scenario, and the printout."""

    def __init__(self, sc: Scenario):
        self.sc = sc
        self.lines: list[str] = []
        self.checks: list[Check] = []
        self.real_s = 0.0
        self.sim_days = 0.0
        self.speed = sc.speed
        self.raised: dict[str, list[dict]] = {}
        self.false_alarms: list[str] = []
        self.lost: dict[str, int] = {}
        self.polls = 0
        self.poll_errors: dict[str, int] = {}
        self.flag_counts: dict[str, dict[str, int]] = {}
        self.scored_bad = 0
        self.health_seen: dict[str, list[tuple[float, str]]] = {}
        self.utilisation: dict[str, str] = {}
        self.warnings: list[str] = []
        self.peak_score: dict[str, float] = {}
        self.slowdowns = 0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def text(self) -> str:
        return "\n".join(self.lines)


def sim_day(sc: Scenario, t: float) -> float:
    return (t - sc.start) / DAY


class Observer:
    """What the agent did, from inside (emitted events, polls) - used only for the
    lost-message count, poll errors and quality flags."""

    def __init__(self, sc: Scenario):
        self.sc = sc
        self.emitted: dict[str, Event] = {}  # id -> critical event (alerts, health)
        self.poll_times: dict[str, list[float]] = {}
        self.poll_ok: dict[str, list[bool]] = {}
        self.errors: dict[str, int] = {}
        self.flags: dict[str, dict[str, int]] = {}
        self.scored_bad = 0
        self.polls = 0
        self.stopped = False

    def on_event(self, ev: Event) -> None:
        if ev.kind in ALERT_KINDS or ev.kind == "health":
            self.emitted[ev.id] = ev

    def on_poll(self, raw: RawPoll, reading: Reading | None, learned: bool) -> None:
        """The agent's poll listener: every poll, the reading it became and whether the
        detector learned from it."""
        if self.stopped:  # the agent is shutting down: not part of the run
            return
        self.polls += 1
        self.poll_times.setdefault(raw.meter, []).append(raw.t)
        self.poll_ok.setdefault(raw.meter, []).append(raw.ok)
        if raw.error_kind:
            self.errors[raw.error_kind] = self.errors.get(raw.error_kind, 0) + 1
        if reading is None:
            return
        per = self.flags.setdefault(raw.meter, {})
        for n in quality_names(reading.quality):
            per[n] = per.get(n, 0) + 1
        if learned and not reading.scorable:
            self.scored_bad += 1

    def lag(self, now: float, health: dict) -> float | None:
        """The longest time since the last poll of a meter that should be answering.

        Meters in back-off ("down") are left out: their gaps are the back-off, by design.
        """
        worst = None
        for meter, ts in self.poll_times.items():
            h = health.get(meter)
            if h is not None and h.state == "down":
                continue
            gap = now - ts[-1]
            worst = gap if worst is None else max(worst, gap)
        return worst

    def _gaps(self) -> list[float]:
        """Gaps after a successful poll: a gap after a failure is the back-off, by design."""
        out = []
        for meter, ts in self.poll_times.items():
            ok = self.poll_ok[meter]
            out.extend(b - a for a, b, good in zip(ts, ts[1:], ok) if good)
        return out

    def max_gap_s(self) -> float | None:
        gaps = self._gaps()
        return max(gaps) if gaps else None

    def effective_poll_s(self) -> float | None:
        gaps = self._gaps()
        return statistics.median(gaps) if gaps else None


def judge(sc: Scenario, rep: Report, received: list[dict], obs: Observer,
          t_end: float, outages: list | None = None) -> None:
    """Compare what the subscriber received with the scenario's expectations."""
    alerts = [m["payload"] for m in received if m["topic"].endswith("/alert")
              and isinstance(m["payload"], dict)]
    raised: dict[str, list[dict]] = {}
    for p in alerts:
        if p.get("kind") == "raised":
            raised.setdefault(p.get("meter", "?"), []).append(p)
    rep.raised = raised
    for p in received:
        pl = p["payload"]
        if p["topic"].endswith("/health") and isinstance(pl, dict):
            rep.health_seen.setdefault(pl.get("meter", "?"), []).append(
                (float(pl.get("t", 0.0)), str(pl.get("state", "?"))))

    peak: dict[str, float] = {}
    for p in received:
        pl = p["payload"]
        if p["topic"].endswith("/score") and isinstance(pl, dict) and isinstance(
                pl.get("score"), (int, float)):
            m = pl.get("meter", "?")
            peak[m] = max(peak.get(m, 0.0), float(pl["score"]))
    rep.peak_score = peak
    out = rep.lines
    expected = {a.meter: a for a in sc.alerts}
    out.append("alerts (expected vs received by the subscriber):")
    out.append("  %-10s %-26s %-36s %5s  %s" % ("meter", "expected", "received", "peak",
                                                "verdict"))
    for a in sc.alerts:
        got = sorted(raised.get(a.meter, []), key=lambda p: p["t"])
        lo, hi = sc.start + a.from_day * DAY, sc.start + a.to_day * DAY
        onset = _onset(sc, a.meter)
        if a.detected:
            exp = "raised day %g-%g" % (a.from_day, a.to_day)
            inside = [p for p in got if lo <= p["t"] <= hi]
            if inside:
                p = inside[0]
                delay = "" if onset is None else ", %.1f h after onset" % (
                    (p["t"] - onset) / 3600.0)
                recv = "raised day %.2f%s" % (sim_day(sc, p["t"]), delay)
                ok, verdict = True, "ok"
            elif got:
                recv = "raised day %.2f" % sim_day(sc, got[0]["t"])
                ok, verdict = False, "OUTSIDE WINDOW"
            else:
                recv, ok, verdict = "nothing", False, "MISSED"
        else:
            exp = "no alert (documented miss)" if _onset(sc, a.meter) is not None \
                else "no alert"
            if got:
                recv = "raised day %.2f" % sim_day(sc, got[0]["t"])
                ok, verdict = False, "UNEXPECTED ALERT"
            else:
                recv, ok, verdict = "nothing", True, "ok"
        out.append("  %-10s %-26s %-36s %5.1f  %s" % (a.meter, exp, recv,
                                                      peak.get(a.meter, 0.0), verdict))
        if a.note:
            out.append("  %-10s note: %s" % ("", a.note))
        rep.checks.append(Check("alert %s" % a.meter, ok, verdict))
    false = []
    for meter, ps in sorted(raised.items()):
        if meter in expected:
            a = expected[meter]
            if a.detected:
                # A raise before the expected window on a meter that later has a miner is
                # a false alarm too (it fired on the household, not on the miner).
                early = [p for p in ps if p["t"] < sc.start + a.from_day * DAY]
                false.extend("%s day %.2f" % (meter, sim_day(sc, p["t"])) for p in early)
            continue
        false.extend("%s day %.2f" % (meter, sim_day(sc, p["t"])) for p in ps)
    rep.false_alarms = false
    out.append("false alarms: %d (allowed %d)%s" % (
        len(false), sc.false_alarms, ": " + ", ".join(false) if false else ""))
    rep.checks.append(Check("false alarms", len(false) <= sc.false_alarms,
                            "%d > %d" % (len(false), sc.false_alarms)))

    # Lost messages: critical events the agent emitted up to the end of the timeline that
    # the subscriber never received (de-duplicated by payload id).
    got_ids = {m["payload"].get("id") for m in received if isinstance(m["payload"], dict)}
    emitted = [ev for ev in obs.emitted.values() if ev.t <= t_end]
    lost_alerts = [ev for ev in emitted if ev.is_alert and ev.id not in got_ids]
    # The outbox keeps only a meter's latest health while it waits (a subscriber needs the
    # current state, not every flap): a health event is lost only if no later health of
    # its meter arrived either.
    latest_health: dict[str, float] = {}
    for m in received:
        pl = m["payload"]
        if m["topic"].endswith("/health") and isinstance(pl, dict):
            meter = pl.get("meter", "?")
            latest_health[meter] = max(latest_health.get(meter, -math.inf), pl.get("t", 0.0))
    unseen = [ev for ev in emitted if ev.kind == "health" and ev.id not in got_ids]
    superseded = [ev for ev in unseen if latest_health.get(ev.meter, -math.inf) > ev.t]
    lost_health = [ev for ev in unseen if ev not in superseded]
    n_alert = sum(1 for ev in emitted if ev.is_alert)
    rep.lost = {"alert": len(lost_alerts), "health": len(lost_health)}
    out.append("messages: %d alert events emitted, %d received, %d lost; %d health events "
               "emitted, %d lost (%d superseded by a later one of their meter)"
               % (n_alert, n_alert - len(lost_alerts), len(lost_alerts),
                  len(emitted) - n_alert, len(lost_health), len(superseded)))
    for down, up in outages or []:
        up = t_end if up is None else up
        queued = [ev for ev in emitted if down <= ev.t < up]
        out.append("  while the broker was down (day %.2f-%.2f): %d alert and %d health events "
                   "queued in the outbox" % (sim_day(sc, down), sim_day(sc, up),
                                             sum(1 for ev in queued if ev.is_alert),
                                             sum(1 for ev in queued if not ev.is_alert)))
    rep.checks.append(Check("no alert lost", not lost_alerts,
                            ", ".join(ev.id for ev in lost_alerts[:5])))
    rep.checks.append(Check("no health event lost", not lost_health,
                            ", ".join(ev.id for ev in lost_health[:5])))

    rep.polls = obs.polls
    rep.poll_errors = dict(obs.errors)
    n_err = sum(obs.errors.values())
    out.append("poll errors: %d of %d polls%s" % (
        n_err, obs.polls, " (%s)" % ", ".join("%s %d" % kv for kv in sorted(obs.errors.items()))
        if n_err else ""))
    for h in sc.health:
        seen = rep.health_seen.get(h.meter, [])
        by = sc.start + h.by_day * DAY
        hit = [t for t, s in seen if s == h.state and t <= by]
        states = sorted({s for _, s in seen})
        ok = bool(hit)
        out.append("health %s: expected %s by day %g, %s" % (
            h.meter, h.state, h.by_day,
            "seen day %.2f" % sim_day(sc, hit[0]) if ok else "not seen (saw: %s)"
            % (", ".join(states) or "nothing")))
        rep.checks.append(Check("health %s %s" % (h.meter, h.state), ok))
    rep.flag_counts = obs.flags
    rep.scored_bad = obs.scored_bad
    for q in sc.quality:
        meters = [q.meter] if q.meter else [m.id for m in sc.meters_on(q.bus)]
        n = sum(obs.flags.get(mid, {}).get(q.flag, 0) for mid in meters)
        ok = n >= q.min_readings and obs.scored_bad == 0
        out.append("quality %s on %s: %d readings flagged (need >= %d), bad readings scored: %d"
                   % (q.flag, q.meter or "bus " + q.bus, n, q.min_readings, obs.scored_bad))
        rep.checks.append(Check("quality %s %s" % (q.flag, q.meter or q.bus), ok))


def _onset(sc: Scenario, meter: str) -> float | None:
    for m in sc.meters:
        if m.id == meter and m.miner is not None:
            return sc.start + m.miner.from_day * DAY
    return None
