"""The shared detector check suite: one file, run under pytest AND the MicroPython unix port.

After river's ``checks.yield_checks``: every ``check_*`` function builds its own detectors,
raises ``CheckFailed`` on failure and returns nothing. Only ``agent.signature``
are imported, no ``random`` (a tiny hash makes the synthetic household), so the file runs
unchanged on both runtimes:

    MICROPYPATH=<root>:<root>/tests .venv/bin/micropython tests/signature/checks.py
    .venv/bin/pytest -q tests/signature          (runs each check, and the line above)

The synthetic household is a pure function of ``t`` so that sampling it every 5 s or every
30 min describes the same physical load.
"""


import math

from checkkit import CheckFailed, expect, run

from agent.signature import FEATURES, Detector, default_settings

T0 = 1362096000.0  # 2013-03-01 00:00 UTC
DAY = 86400.0


def _u(k):
    """Deterministic uniform [0, 1) from an integer (integer hash, no random module)."""
    x = (k * 2654435761 + 12345) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 2246822519) & 0xFFFFFFFF
    x ^= x >> 13
    return (x & 0xFFFFFF) / 16777216.0


def household(t):
    """A lived-in home: 150 W standby, fridge cycling, breakfast, evening peak, kettles."""
    h = ((t - T0) % DAY) / 3600.0
    day = int((t - T0) // DAY)
    p = 150.0 + 20.0 * _u(day)
    if (t % 3000.0) < 1200.0:
        p += 110.0  # fridge compressor: 20 min of every 50
    if 7.0 <= h < 8.5:
        p += 600.0 + 300.0 * _u(day * 7 + 1)
    if 17.0 <= h < 22.5:
        p += 900.0 + 900.0 * _u(int(t // 900.0))
    if _u(int(t // 600.0) * 3 + 2) < 0.05:
        p += 2000.0  # a kettle or the oven for ten minutes
    return p


def miner(t, onset, watts):
    """A rig with about 1 % ripple from ``onset``."""
    if t < onset:
        return 0.0
    return watts * (1.0 + 0.01 * (2.0 * _u(int(t // 5.0)) - 1.0))


def feed(det, t_from, t_to, step, load):
    t = t_from
    score = 0.0
    while t < t_to:
        score = det.update(t, load(t))
        t += step
    return score


def close(a, b, tol):
    return abs(a - b) <= tol


# --------------------------------------------------------------------------- checks


def check_default_settings_are_plain_numbers():
    s = default_settings()
    expect("tz_offset_s" in s and "slot_s" in s, "tz_offset_s and slot_s must be settings")
    for k in s:
        v = s[k]
        expect(isinstance(v, (int, float)) and not isinstance(v, bool),
               "setting %s is not a plain number: %r" % (k, v))


def check_bad_settings_are_rejected_by_key():
    # A refused setting raises SettingsError (a ValueError) whose ``key`` names it: the
    # config names the key from there, on the gateway and on the MCU alike.
    for bad, key in (({"no_such_key": 1.0}, "no_such_key"), ({"slot_s": 700.0}, "slot_s"),
                     ({"slot_s": "900"}, "slot_s"), ({"floor_pct": 1.5}, "floor_pct"),
                     ({"min_block_h": 0.5}, "min_block_h"),
                     ({"warmup_days": float("nan")}, "warmup_days"),
                     ({"learn_up": 1.5}, "learn_up"), ({"up_z": -3.0}, "up_z"),
                     ({"persist_full_h": 0.0}, "persist_full_h")):
        try:
            Detector(bad)
        except ValueError as e:
            expect(getattr(e, "key", None) == key, "settings %r refused with key %r, not %r"
                   % (bad, getattr(e, "key", None), key))
            continue
        raise CheckFailed("settings %r were accepted" % (bad,))


def check_warmup_stays_neutral():
    d = Detector({})
    t = T0
    while t < T0 + 1.5 * DAY:
        s = d.update(t, household(t) + 1400.0)  # even a miner from the start
        expect(s == 0.0, "score %r while warming up" % s)
        expect(not d.ready, "ready after %r s" % (t - T0))
        t += 60.0
    c = d.contributions()
    for k in c:
        expect(c[k] == 0.0, "contribution %s=%r while warming up" % (k, c[k]))
    expect("summary" in d.evidence(), "evidence needs a summary while warming up")


def check_miner_on_household_is_detected():
    d = Detector({})
    onset = T0 + 5 * DAY + 3 * 3600.0
    feed(d, T0, onset + 3 * DAY, 30.0, lambda t: household(t) + miner(t, onset, 1400.0))
    expect(d.ready, "not ready after 8 days")
    expect(d.score >= 70.0, "1.4 kW miner scored only %r: %r" % (d.score, d.evidence()))
    ev = d.evidence()
    expect(close(ev["step_kw"], 1.4, 0.2), "step %r is not about 1.4 kW" % ev["step_kw"])
    expect(ev["summary"].find("+1.4 kW 24/7 since 2013-03-0") == 0,
           "summary %r" % ev["summary"])
    sc = ev["schedule"]
    expect(sc is not None and sc["start_hour"] == 0 and sc["end_hour"] == 24,
           "a 24/7 rig's schedule %r" % (sc,))
    expect(ev["jitter_pct"] is not None and ev["jitter_pct"] < 5.0,
           "jitter at the floor %r" % ev["jitter_pct"])
    c = d.contributions()
    total = 0.0
    for k in FEATURES:
        total += c[k]
    expect(close(total, d.score, 1e-6), "contributions sum %r != score %r" % (total, d.score))


def check_household_alone_is_not_detected():
    d = Detector({})
    top = 0.0
    t = T0
    while t < T0 + 12 * DAY:
        s = d.update(t, household(t))
        if s > top:
            top = s
        t += 60.0
    expect(d.ready, "not ready after 12 days")
    expect(top < 20.0, "plain household peaked at %r" % top)


def check_flat_vacant_home_is_not_detected():
    # Lived in for a week, then vacant: a flat, rhythm-free, low floor for ten days.
    d = Detector({})

    def load(t):
        if t < T0 + 7 * DAY:
            return household(t)
        return 140.0 * (1.0 + 0.03 * _u(int(t // 60.0)))

    top = 0.0
    t = T0
    while t < T0 + 17 * DAY:
        s = d.update(t, load(t))
        if s > top:
            top = s
        t += 120.0
    expect(top == 0.0, "vacant home scored %r: %r" % (top, d.evidence()))


def check_small_flat_server_is_not_detected():
    d = Detector({})
    onset = T0 + 4 * DAY
    feed(d, T0, T0 + 10 * DAY, 60.0,
         lambda t: household(t) + (120.0 if t >= onset else 0.0))
    expect(d.score < 10.0, "120 W server scored %r" % d.score)


def check_grow_light_12_12_is_named_as_a_day_block():
    # At slot means a 12/12 grow light is a scheduled block like a rig (the benchmark
    # reports it as its own class): what the detector must get right is the block itself.
    d = Detector({})
    onset = T0 + 4 * DAY

    def load(t):
        on = ((t - T0) % DAY) < 12 * 3600.0
        return household(t) + (600.0 if t >= onset and on else 0.0)

    feed(d, T0, T0 + 10 * DAY, 60.0, load)
    sc = d.evidence()["schedule"]
    expect(sc is not None and sc["start_hour"] == 0 and sc["end_hour"] == 12,
           "12/12 grow light's block %r" % (sc,))
    expect(close(sc["level_kw"], 0.6, 0.1), "grow light level %r" % (sc,))


def check_pool_pump_with_motor_power_factor_is_not_raised():
    # A timer-driven pool pump (8 h, 1.1 kW) adds a block as a rig does; at 1-min samples
    # with pf its induction motor (pf 0.8) tells it apart. Without pf it would score high.
    onset = T0 + 4 * DAY

    def pump(t):
        h = ((t - T0) % DAY) / 3600.0
        return 1100.0 if t >= onset and 9.0 <= h < 17.0 else 0.0

    with_pf = Detector({})
    without = Detector({})
    top_pf = 0.0
    top = 0.0
    t = T0
    while t < onset + 5 * DAY:
        p = household(t) + pump(t)
        pf = 0.8 if pump(t) > 0.0 else 0.98
        a = with_pf.update(t, p, pf)
        b = without.update(t, p)
        if a > top_pf:
            top_pf = a
        if b > top:
            top = b
        t += 60.0
    expect(top >= 72.0, "the same pump without pf scored only %r" % top)
    expect(top_pf < 72.0, "pool pump at pf 0.8 scored %r: %r" % (top_pf, with_pf.evidence()))


def check_a_new_run_is_judged_on_its_own_jitter_and_pf():
    # An inverter heat pump in frosty weather adds a flat, 24/7, kW-scale rise, and its
    # PFC holds pf 0.97 as a rig's supplies do: at 30-min energy it is a rig's twin. At
    # 1-min samples its in-slot spread differs: minute-to-minute modulation and a 4-min
    # reverse-cycle defrost at about twice the input every 75 min (its slot's mean stays
    # inside the block's level band), against a rig's ~1 % ripple. The spread and pf must
    # be the new run's own and measured by the time it would raise (before, a run's slots
    # never counted until it had lasted 24 h: it raised on energy alone). With
    # ``jitter_veto`` (off by default, see README) the spread takes part of the score.
    onset = T0 + 3 * DAY

    def compressor(t):
        if t < onset:
            return 0.0
        if (t - onset) % 4500.0 < 240.0:
            return 1900.0
        return 900.0 * (1.0 + 0.03 * (2.0 * _u(int(t // 60.0) + 77) - 1.0))

    veto = {"jitter_veto": 0.5, "jitter_bad": 0.06}
    hp = Detector({})
    hp_veto = Detector(veto)
    rig = Detector({})
    rig_veto = Detector(veto)
    at_raise = {}
    top = [0.0, 0.0, 0.0, 0.0]
    t = T0
    while t < onset + 3 * DAY:
        pf = 0.97 if t >= onset else 0.98
        p_hp = household(t) + compressor(t)
        p_rig = household(t) + miner(t, onset, 1000.0)
        for i, (d, p) in enumerate(((hp, p_hp), (hp_veto, p_hp), (rig, p_rig),
                                    (rig_veto, p_rig))):
            x = d.update(t, p, pf)
            if x > top[i]:
                top[i] = x
            if x >= 72.0 and i not in at_raise:
                e = d.evidence()
                at_raise[i] = (e["jitter_pct"], e["pf"])
        t += 60.0
    expect(0 in at_raise and 2 in at_raise, "heat pump / rig not scored as rigs without "
           "the veto: %r" % (top,))
    jit, pf = at_raise[0]
    expect(jit is not None and jit >= 6.0 and pf == 0.97,
           "the heat pump's own jitter/pf were not measured when it scored 72: %r" % (at_raise[0],))
    jit, pf = at_raise[2]
    expect(jit is not None and jit <= 3.0 and pf == 0.97,
           "the rig's own jitter/pf were not measured when it scored 72: %r" % (at_raise[2],))
    expect(top[3] >= 72.0, "with jitter_veto the rig scored only %r" % top[3])
    expect(top[1] < 72.0, "with jitter_veto the heat pump scored %r: %r" % (top[1],
                                                                           hp_veto.evidence()))


def check_determinism():
    a = Detector({})
    b = Detector({})
    onset = T0 + 3 * DAY
    load = lambda t: household(t) + miner(t, onset, 1000.0)  # noqa: E731
    feed(a, T0, T0 + 6 * DAY, 45.0, load)
    feed(b, T0, T0 + 6 * DAY, 45.0, load)
    expect(a.state() == b.state(), "same input, different state")
    expect(a.score == b.score and a.evidence() == b.evidence(), "same input, different output")


def check_state_round_trip_continues_identically():
    onset = T0 + 3 * DAY + 5000.0
    load = lambda t: household(t) + miner(t, onset, 1400.0)  # noqa: E731
    a = Detector({})
    # Stop in the middle of a slot, mid-alert-build-up.
    stop = T0 + 4 * DAY + 417.0
    feed(a, T0, stop, 37.0, load)
    saved = a.state()
    b = Detector.from_state({}, saved)
    expect(b.state() == saved, "from_state(state()) does not reproduce the state")
    expect(b.score == a.score and b.ready == a.ready, "restored score/ready differ")
    expect(b.evidence() == a.evidence(), "restored evidence differs")
    expect(b.contributions() == a.contributions(), "restored contributions differ")
    t = stop
    while t < T0 + 7 * DAY:
        sa = a.update(t, load(t))
        sb = b.update(t, load(t))
        expect(sa == sb, "restored detector diverged at t=%r: %r != %r" % (t, sa, sb))
        t += 37.0
    expect(a.state() == b.state(), "states differ after continuing")
    expect(a.score > 60.0, "miner not seen in the round-trip run (%r)" % a.score)


def check_fresh_state_round_trip():
    a = Detector({})
    b = Detector.from_state({}, a.state())
    expect(a.state() == b.state(), "a fresh detector does not round-trip")
    feed(a, T0, T0 + DAY, 300.0, household)
    feed(b, T0, T0 + DAY, 300.0, household)
    expect(a.state() == b.state(), "fresh round-trip diverged")


def check_from_state_rejects_other_slot_length():
    st = Detector({}).state()
    try:
        Detector.from_state({"slot_s": 1800.0}, st)
    except ValueError:
        return
    raise CheckFailed("state of 900-s slots accepted with slot_s=1800")


def check_corrupt_state_is_rejected_not_crashing():
    good = Detector({}).state()
    short = {}
    for k in good:
        short[k] = good[k]
    short["f"] = [1.0, 2.0]
    wrong = {}
    for k in good:
        wrong[k] = good[k]
    wrong["i"] = ["x"] * len(good["i"])
    for bad in ([], {"v": 99}, {"v": 1}, short, wrong):
        try:
            Detector.from_state({}, bad)
        except (KeyError, TypeError, ValueError):
            continue
        raise CheckFailed("corrupt state %r was accepted" % (bad,))


def check_bad_readings_are_not_learned():
    nan = float("nan")
    inf = float("inf")
    a = Detector({})
    b = Detector({})
    t = T0
    k = 0
    while t < T0 + 3 * DAY:
        p = household(t)
        a.update(t, p)
        b.update(t, p)
        bad = (nan, inf, -inf, -250.0, -1e-9)[k % 5]
        s = b.update(t + 1.0, bad)  # never learned, never scored
        expect(s == s and 0.0 <= s <= 100.0, "bad reading %r gave score %r" % (bad, s))
        b.update(nan, p)  # a NaN time is ignored too
        b.update(inf, p)
        t += 60.0
        k += 1
    expect(a.state() == b.state(), "NaN/inf/negative readings changed the learned state")


def check_nan_power_factor_is_ignored():
    a = Detector({})
    b = Detector({})
    t = T0
    while t < T0 + DAY:
        a.update(t, household(t))
        b.update(t, household(t), float("nan"))
        t += 60.0
    expect(a.state() == b.state(), "a NaN power factor was learned")


def check_clock_going_backwards_is_ignored():
    a = Detector({})
    b = Detector({})
    t = T0
    while t < T0 + 2 * DAY:
        a.update(t, household(t))
        b.update(t, household(t))
        b.update(t - 3600.0, 9999.0)  # a clock jump back: ignored, not learned
        b.update(t - 0.5, 5000.0)
        t += 60.0
    expect(a.state() == b.state(), "samples from the past were learned")


def check_clock_that_stays_back_is_followed():
    # One bogus reading years ahead must not make the detector ignore the real clock.
    d = Detector({})
    feed(d, T0, T0 + 3 * DAY, 60.0, household)
    d.update(T0 + 3650 * DAY, 500.0)
    days = d.evidence()["days_learned"]
    feed(d, T0 + 3 * DAY, T0 + 6 * DAY, 60.0, lambda t: household(t) + miner(t, T0, 0.0))
    ev = d.evidence()
    expect(ev.get("days_learned", -1) >= days + 2, "stopped learning after a clock jump: %r"
           % ev)
    expect(d.ready and ev["coverage"] >= 0.99, "did not recover after a clock jump: %r" % ev)
    # A few stray old samples are still just ignored.
    a = Detector({})
    b = Detector({})
    t = T0
    while t < T0 + 2 * DAY:
        a.update(t, household(t))
        b.update(t, household(t))
        if int(t) % 3600 == 0:
            b.update(t - 5 * DAY, 800.0)
        t += 60.0
    expect(a.state()["i"] == b.state()["i"], "stray old samples were learned")


def check_gaps_are_survived_and_not_alarming():
    d = Detector({})
    feed(d, T0, T0 + 4 * DAY, 60.0, household)
    # Three days without data, then the same home again.
    s = feed(d, T0 + 7 * DAY, T0 + 7 * DAY + 3600.0, 60.0, household)
    expect(s < 20.0, "score %r right after a gap" % s)
    ev = d.evidence()
    expect(ev["summary"].find("not enough data") >= 0, "gap not reported: %r" % ev)
    top = 0.0
    t = T0 + 7 * DAY + 3600.0
    while t < T0 + 11 * DAY:
        sc = d.update(t, household(t))
        if sc > top:
            top = sc
        t += 60.0
    expect(top < 20.0, "household scored %r after a gap" % top)
    expect(d.evidence()["coverage"] >= 0.99, "coverage did not recover after the gap")


def check_sample_rate_independence():
    onset = T0 + 4 * DAY + 7200.0
    load = lambda t: household(t) + miner(t, onset, 1400.0)  # noqa: E731
    fast = Detector({})
    slow = Detector({})
    half = Detector({})
    feed(fast, T0, T0 + 8 * DAY, 5.0, load)
    feed(slow, T0, T0 + 8 * DAY, 900.0, load)
    feed(half, T0, T0 + 8 * DAY, 1800.0, load)
    expect(fast.score > 60.0 and slow.score > 60.0 and half.score > 60.0,
           "miner missed at some rate: 5 s %r, 15 min %r, 30 min %r"
           % (fast.score, slow.score, half.score))
    expect(close(fast.score, slow.score, 15.0) and close(fast.score, half.score, 15.0),
           "rates disagree: 5 s %r, 15 min %r, 30 min %r" % (fast.score, slow.score,
                                                             half.score))
    sf = fast.evidence()["step_kw"]
    ss = slow.evidence()["step_kw"]
    expect(close(sf, ss, 0.15), "step differs by rate: %r vs %r" % (sf, ss))


def check_level_backstop_for_a_farm_present_from_day_one():
    # A farm running before the gateway was installed: no step to see, the level speaks.
    d = Detector({})
    feed(d, T0, T0 + 6 * DAY, 60.0, lambda t: household(t) + miner(t, T0, 9000.0))
    expect(d.score >= 90.0, "9 kW farm from day one scored %r" % d.score)
    expect(d.contributions()["level"] == d.score, "level backstop not reported as such")


def check_power_factor_is_reported_at_the_floor():
    d = Detector({})
    onset = T0 + 3 * DAY
    t = T0
    while t < T0 + 6 * DAY:
        d.update(t, household(t) + miner(t, onset, 1400.0), 0.98)
        t += 30.0
    pf = d.evidence()["pf"]
    expect(pf is not None and close(pf, 0.98, 0.005), "pf at the floor %r" % pf)
    expect(d.evidence()["summary"].find("pf 0.98") > 0, "pf not in the summary")


def check_evidence_is_plain():
    d = Detector({})
    feed(d, T0, T0 + 5 * DAY, 120.0, lambda t: household(t) + miner(t, T0 + 2 * DAY, 1400.0))
    ev = d.evidence()
    for k in ev:
        v = ev[k]
        if isinstance(v, dict):  # the schedule object: plain numbers only
            for kk in v:
                expect(isinstance(v[kk], (int, float)), "schedule %s is %r" % (kk, v[kk]))
            continue
        expect(v is None or isinstance(v, (int, float, str)),
               "evidence %s is not plain: %r" % (k, v))
    st = d.state()
    for k in st:
        v = st[k]
        if isinstance(v, list):
            for x in v:
                expect(isinstance(x, (int, float)) and x == x and -1e301 < x < 1e301,
                       "state %s holds %r" % (k, x))
        else:
            expect(isinstance(v, (int, float)), "state %s is %r" % (k, v))


def _peak(d, t_from, t_to, step, load):
    top = 0.0
    t = t_from
    while t < t_to:
        s = d.update(t, load(t))
        if s > top:
            top = s
        t += step
    return top


def check_night_only_rig_is_caught_after_its_second_night():
    # A 1 kW rig running 22:00-06:00 never lifts the 24-h floor; it lifts the same hours of
    # every night by the same watts, with sharp edges: a block, raised at its second night.
    onset = T0 + 6 * DAY

    def night_rig(t):
        h = ((t - T0) % DAY) / 3600.0
        return miner(t, onset, 1000.0) if (h >= 22.0 or h < 6.0) else 0.0

    home = _peak(Detector({}), T0, onset + 3 * DAY, 300.0, household)
    d = Detector({})
    first = _peak(d, T0, onset + 1 * DAY, 300.0, lambda t: household(t) + night_rig(t))
    rig = _peak(d, onset + 1 * DAY, onset + 3 * DAY, 300.0,
                lambda t: household(t) + night_rig(t))
    expect(home < 20.0, "the home alone scored %r" % home)
    expect(first < 72.0, "raised on the first night already: %r" % first)
    expect(rig >= 72.0, "night-only rig scored only %r: %r" % (rig, d.evidence()))
    ev = d.evidence()
    sc = ev["schedule"]
    expect(sc is not None and sc["start_hour"] == 22 and sc["end_hour"] == 6
           and sc["days_seen"] >= 2, "night rig's schedule %r" % (sc,))
    expect(ev["summary"].find("+1.0 kW from 22:00 to 06:00 every night since 2013-03-07") == 0,
           "summary %r" % ev["summary"])


def check_a_busy_morning_does_not_move_a_night_blocks_end():
    # A 10 kW rig runs 22:00-07:00; on its first morning the household also runs 1.5 kW
    # until 10:00, so that night's block of up hours ends at 10:00. Those hours rose by far
    # less than the block's level: the block is 22:00-07:00 and the second night repeats it
    # (before, it ended at 10:00, the second night's end moved by 3 h and started anew).
    onset = T0 + 6 * DAY + 22 * 3600.0
    busy = onset + 9 * 3600.0

    def load(t):
        h = ((t - T0) % DAY) / 3600.0
        p = household(t)
        if h >= 22.0 or h < 7.0:
            p += miner(t, onset, 10000.0)
        if busy <= t < busy + 3 * 3600.0:
            p += 1500.0
        return p

    d = Detector({})
    top = _peak(d, T0, T0 + 8 * DAY + 12 * 3600.0, 300.0, load)
    sc = d.evidence()["schedule"]
    expect(sc is not None and sc["start_hour"] == 22 and sc["end_hour"] == 7
           and sc["days_seen"] >= 2, "night rig's schedule %r" % (sc,))
    expect(top >= 72.0, "10 kW night rig scored only %r after its second night: %r"
           % (top, d.evidence()))


def check_weather_shaped_heater_is_not_raised():
    # A heater that draws 1.6 kW in the small hours and 0.8 kW in the afternoon is steady
    # from day to day but not flat through its block; a rig is both.
    onset = T0 + 5 * DAY + 3 * 3600.0

    def heater(t):
        if t < onset:
            return 0.0
        h = ((t - T0) % DAY) / 3600.0
        return 1200.0 + 400.0 * math.cos(2.0 * math.pi * (h - 3.0) / 24.0)

    rig = Detector({})
    feed(rig, T0, onset + 3 * DAY, 120.0, lambda t: household(t) + miner(t, onset, 1200.0))
    expect(rig.score >= 72.0, "missed a 1.2 kW rig: %r %r" % (rig.score, rig.evidence()))
    expect(rig.evidence()["block_flat"] >= 0.85, "a rig's flatness %r"
           % rig.evidence()["block_flat"])
    heat = Detector({})
    top = _peak(heat, T0, onset + 3 * DAY, 120.0, lambda t: household(t) + heater(t))
    expect(heat.evidence()["block_flat"] < 0.6,
           "a night-heavy heater's flatness %r" % heat.evidence()["block_flat"])
    expect(top < 72.0, "scored a night-heavy heater %r: %r" % (top, heat.evidence()))


def check_outputs_belong_to_their_detector():
    # evidence()/contributions() are built on demand and cached once for all detectors:
    # asking two detectors in turn must never hand one the other's figures.
    a = Detector({})
    b = Detector({})
    onset = T0 + 3 * DAY
    feed(a, T0, onset + 3 * DAY, 120.0, lambda t: household(t) + miner(t, onset, 1400.0))
    feed(b, T0, onset + 3 * DAY, 120.0, household)
    ea = a.evidence()
    eb = b.evidence()
    expect(ea["step_kw"] > 1.0 and eb["step_kw"] < 0.3, "evidence mixed up: %r %r"
           % (ea["step_kw"], eb["step_kw"]))
    expect(a.contributions()["step"] > 0.0 and b.contributions()["step"] == 0.0,
           "contributions mixed up")
    expect(a.evidence() == ea and b.evidence() == eb, "evidence changed without a sample")


if __name__ == "__main__":
    raise SystemExit(run(globals()))
