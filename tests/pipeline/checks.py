"""The shared pipeline check suite: one file, run under pytest AND the MicroPython unix port.

The per-meter pipeline (agent/decode.py, agent/aggregate.py, agent/health.py,
agent/pipeline.py) and the payload codec run unchanged on the agent and on the MCU
gateway; these checks hold both to the same behaviour, like tests/signature/checks.py
does for the detector. Every ``check_*`` function builds what it needs, raises
``CheckFailed`` on failure and returns nothing. Only MicroPython-safe modules are
imported:

    MICROPYPATH=<root>:<root>/tests .venv/bin/micropython tests/pipeline/checks.py
    .venv/bin/pytest -q tests/pipeline          (runs each check, and the line above)
"""

import json
import struct

from checkkit import CheckFailed, expect, run

from agent import aggregate, health, quality
from agent.model import (
    Q_BACKWARDS,
    Q_CRC,
    Q_EXCEPTION,
    Q_FROZEN,
    Q_INF,
    Q_MISSING,
    Q_NAN,
    Q_NEGATIVE,
    Q_RANGE,
    Q_RESET,
    Q_TIMEOUT,
    is_scorable,
)
from agent.pipeline import MeterPipeline
from agent.policy import Policy
from agent.publish.payloads import EventCodec, iso_utc
from agent.signature import Detector

T0 = 1767225600.0  # 2026-01-01 00:00 UTC
# p_w and pf as float32 ABCD at 0 and 2 (fc 4), the import counter as uint32 CDAB in
# hundredths of a kWh at 0x100, voltage as uint16 tenths at 0x200.
TABLE = [["p_w", 4, 0, "float32", "ABCD", 1.0], ["pf", 4, 2, "float32", "ABCD", 1.0],
         ["e_import_kwh", 4, 0x100, "uint32", "CDAB", 0.01],
         ["v_v", 4, 0x200, "uint16", "ABCD", 0.1]]


def f32(x):
    return list(struct.unpack(">HH", struct.pack(">f", x)))


def blocks(p_w=1000.0, pf=0.95, e_kwh=1234.5, v=230.1):
    """One poll's blocks as a meter would answer them."""
    e = round(e_kwh * 100.0)
    return [(4, 0, f32(p_w) + f32(pf)), (4, 0x100, [e & 0xFFFF, e >> 16]),
            (4, 0x200, [round(v * 10.0)])]


class Checks:
    """A meter's check state on its own, as the pipeline keeps it."""

    def __init__(self, frozen_s=900.0, table=TABLE):
        from array import array

        self.table = table
        self.v = array("d", [0.0] * (1 + quality.check_size(len(table))))
        quality.check_init(self.v, 1, len(table), frozen_s)  # at an offset, as in a meter

    def decode(self, t, blks, error_kind=""):
        return quality.decode(self.v, 1, self.table, t, blks, error_kind)


def pipeline(telemetry_s=900.0, decides_alerts=True):
    return MeterPipeline(TABLE, Detector({}), Policy("m1", {}), telemetry_s,
                         decides_alerts=decides_alerts, poll_s=10.0, unit=7)


# --------------------------------------------------------------------------- decoding


def check_policy_refuses_a_setting_by_key():
    # The policy's SettingsError names the key on the MCU too (it used to call
    # ValueError.__init__ by name, which MicroPython's ValueError does not have: the
    # refusal itself crashed with AttributeError there).
    for bad, key in (({"nope": 1.0}, "nope"), ({"hold_s": "1h"}, "hold_s"),
                     ({"hold_s": float("inf")}, "hold_s"), ({"clear_at": 99.0}, "clear_at")):
        try:
            Policy("m1", bad)
        except ValueError as e:
            expect(getattr(e, "key", None) == key, "policy settings %r refused with key %r"
                   % (bad, getattr(e, "key", None)))
            continue
        raise CheckFailed("policy settings %r were accepted" % (bad,))


def check_registers_decode_by_type_and_word_order():
    expect(quality.decode_value("float32", "ABCD", 1.0, [0x4366, 0]) == 230.0, "float ABCD")
    expect(quality.decode_value("float32", "CDAB", 1.0, [0, 0x4366]) == 230.0, "float CDAB")
    expect(quality.decode_value("int32", "CDAB", 0.1, [0xFFFF, 0xFFFF]) == -0.1, "int32")
    expect(quality.decode_value("uint32", "ABCD", 1.0, [1, 2]) == 65538.0, "uint32")
    expect(quality.decode_value("int16", "ABCD", 0.001, [0xFC18]) == -1.0, "int16")
    expect(quality.decode_value("uint16", "ABCD", 0.1, [500]) == 50.0, "uint16")


def check_a_good_poll_is_clean():
    values, q = Checks().decode(T0, blocks())
    expect(q == 0, "quality %d" % q)
    expect(values["p_w"] == 1000.0 and abs(values["e_import_kwh"] - 1234.5) < 1e-9,
           "values %r" % (values,))
    expect(abs(values["v_v"] - 230.1) < 1e-9, "voltage %r" % (values,))


def check_fields_outside_the_blocks_are_missing():
    values, q = Checks().decode(T0, [(4, 0, f32(500.0))])
    expect(values == {"p_w": 500.0} and q == 0, "%r %d" % (values, q))
    values, q = Checks().decode(T0, [(3, 0, f32(500.0) + f32(1.0))])  # other fc
    expect(values == {} and q & Q_MISSING, "%r %d" % (values, q))


def check_garbage_is_flagged_and_dropped():
    nan = float("nan")
    for p, flag in ((nan, Q_NAN), (float("inf"), Q_INF), (6e6, Q_RANGE)):
        values, q = Checks().decode(T0, blocks(p_w=p))
        expect("p_w" not in values and q & flag and q & Q_MISSING, "%r -> %d" % (p, q))
        expect(not is_scorable(q), "%r is scorable" % p)
    values, q = Checks().decode(T0, blocks(pf=1.5))
    expect("pf" not in values and q == Q_RANGE, "pf 1.5 -> %d" % q)


def check_negative_power_is_informational():
    values, q = Checks().decode(T0, blocks(p_w=-300.0))
    expect(values["p_w"] == -300.0 and q == Q_NEGATIVE and is_scorable(q), "%d" % q)


def check_failed_polls_carry_their_kind():
    for kind, flag in (("timeout", Q_TIMEOUT), ("io", Q_TIMEOUT), ("crc", Q_CRC),
                       ("exception", Q_EXCEPTION)):
        values, q = Checks().decode(T0, [], kind)
        expect(values == {} and q == flag, "%s -> %d" % (kind, q))


def check_frozen_values_after_frozen_s():
    c = Checks(frozen_s=600.0)
    for i in range(6):
        _, q = c.decode(T0 + 100.0 * i, blocks())
        expect(q == 0, "frozen too early at %d" % i)
    _, q = c.decode(T0 + 600.0, blocks())
    expect(q & Q_FROZEN, "not frozen after 600 s")
    _, q = c.decode(T0 + 700.0, blocks(v=230.2))
    expect(q == 0, "a change ends frozen")


def check_frozen_counts_nan_as_the_same():
    c = Checks(frozen_s=60.0)
    c.decode(T0, blocks(p_w=float("nan")))
    _, q = c.decode(T0 + 60.0, blocks(p_w=float("nan")))
    expect(q & Q_FROZEN and q & Q_NAN, "NaN == NaN for the frozen check: %d" % q)


def check_energy_reset_is_a_new_baseline():
    c = Checks()
    c.decode(T0, blocks(e_kwh=5000.0))
    _, q = c.decode(T0 + 10.0, blocks(e_kwh=0.5, v=231.0))
    expect(q == Q_RESET, "reset -> %d" % q)
    _, q = c.decode(T0 + 20.0, blocks(e_kwh=0.6, v=232.0))
    expect(q == 0, "after a reset the new baseline holds: %d" % q)


def check_energy_backwards_is_rebaselined_after_three():
    """The drift that started issue 14: the device never re-baselined."""
    c = Checks()
    c.decode(T0, blocks(e_kwh=1000.0))
    flags = []
    for i in range(8):
        _, q = c.decode(T0 + 10.0 * (i + 1), blocks(e_kwh=900.0, v=200.0 + i))
        flags.append(q)
    want = [Q_BACKWARDS, Q_BACKWARDS, Q_BACKWARDS, 0, 0, 0, 0, 0]
    expect(flags == want, "backwards flags %r, want %r" % (flags, want))
    _, q = c.decode(T0 + 100.0, blocks(e_kwh=900.001, v=210.0))
    expect(q == 0, "jitter under the epsilon is not backwards: %d" % q)


def check_backwards_counts_are_per_counter_and_reset_by_progress():
    table = TABLE + [["e_export_kwh", 4, 0x300, "uint32", "CDAB", 0.01]]
    c = Checks(table=table)

    def blks(e_in, e_out, v):
        b = blocks(e_kwh=e_in, v=v)
        e = round(e_out * 100.0)
        return b + [(4, 0x300, [e & 0xFFFF, e >> 16])]

    c.decode(T0, blks(1000.0, 50.0, 200.0))
    c.decode(T0 + 10, blks(900.0, 50.0, 201.0))  # import backwards once
    c.decode(T0 + 20, blks(1000.0, 40.0, 202.0))  # import recovers; export backwards
    c.decode(T0 + 30, blks(900.0, 40.0, 203.0))  # import backwards (1 again), export 2
    _, q = c.decode(T0 + 40, blks(900.0, 40.0, 204.0))  # import 2, export 3: rebased
    expect(q == Q_BACKWARDS, "import still backwards: %d" % q)
    _, q = c.decode(T0 + 50, blks(900.0, 40.0, 205.0))  # import 3: rebased now
    expect(q == Q_BACKWARDS, "third import backwards is flagged: %d" % q)
    _, q = c.decode(T0 + 60, blks(900.0, 40.0, 206.0))
    expect(q == 0, "both rebased: %d" % q)


# --------------------------------------------------------------------------- aggregate


def slot(table, slot_s=900.0, published=None):
    from array import array

    mask = aggregate.mask_of(table, published)
    v = array("d", [0.0] * aggregate.size(table, mask))
    aggregate.init(v, 0, slot_s, table, mask)
    return v


def check_slot_aggregate_closes_on_the_next_slot():
    v = slot(TABLE)
    expect(aggregate.add(v, 0, TABLE, T0 + 1.0, {"p_w": 100.0, "pf": -0.9,
                                                "e_import_kwh": 5.0, "v_v": 230.0},
                         0) is None, "closed early")
    aggregate.add(v, 0, TABLE, T0 + 300.0, {"p_w": 300.0, "e_import_kwh": 5.25,
                                            "v_v": 232.0}, 0)
    aggregate.add(v, 0, TABLE, T0 + 600.0, {}, Q_TIMEOUT)
    out = aggregate.add(v, 0, TABLE, T0 + 900.0, {"p_w": 50.0}, 0)
    want = {"slot_start": T0, "slot_s": 900.0, "samples": 2, "bad_samples": 1,
            "p_mean_w": 200.0, "p_min_w": 100.0, "p_max_w": 300.0, "energy_kwh": 0.25,
            "stats": {"p_w": [200.0, 100.0, 300.0, 2], "pf": [-0.9, -0.9, -0.9, 1],
                      "v_v": [231.0, 230.0, 232.0, 2]},
            "counters": {"e_import_kwh": 5.25}, "quality": ["timeout"]}
    expect(out == want, "slot %r" % (out,))
    out = aggregate.close(v, 0, TABLE)
    expect(out["slot_start"] == T0 + 900.0 and out["samples"] == 1, "%r" % (out,))
    expect(out["energy_kwh"] is None and out["stats"]["pf"] == [None, None, None, 0]
           and out["counters"] == {"e_import_kwh": None}, "%r" % (out,))
    expect(aggregate.close(v, 0, TABLE) is None, "an empty slot closes to None")


def check_slot_publishes_only_the_chosen_quantities():
    v = slot(TABLE, published=("p_w", "e_import_kwh"))
    expect(len(v) == 6 + 4 + 2, "run of %d numbers" % len(v))
    aggregate.add(v, 0, TABLE, T0, {"p_w": 1.0, "pf": 0.5, "v_v": 230.0,
                                    "e_import_kwh": 2.0}, 0)
    out = aggregate.close(v, 0, TABLE)
    expect(list(out["stats"]) == ["p_w"] and out["counters"] == {"e_import_kwh": 2.0},
           "%r" % (out,))


def check_slots_of_one_table_with_other_quantities_stay_apart():
    # aggregate keeps one plan per table (shared by a class's meters): two classes on the
    # same profile table publishing other quantities, readings interleaved.
    a = slot(TABLE, published=("p_w", "e_import_kwh"))
    b = slot(TABLE)
    for k in range(3):
        for v in (a, b):
            aggregate.add(v, 0, TABLE, T0 + k, {"p_w": 10.0 * (k + 1), "pf": 0.5,
                                                "v_v": 230.0, "e_import_kwh": 2.0 + k}, 0)
    oa, ob = aggregate.close(a, 0, TABLE), aggregate.close(b, 0, TABLE)
    expect(oa["stats"] == {"p_w": [20.0, 10.0, 30.0, 3]} and oa["energy_kwh"] == 2.0,
           "%r" % (oa,))
    expect(ob["stats"]["p_w"] == oa["stats"]["p_w"] and ob["stats"]["v_v"][0] == 230.0
           and ob["stats"]["pf"] == [0.5, 0.5, 0.5, 3] and ob["energy_kwh"] == 2.0,
           "%r" % (ob,))


def check_open_slot_survives_a_checkpoint():
    v = slot(TABLE)
    aggregate.add(v, 0, TABLE, T0 + 1.0, {"p_w": 100.0, "pf": 0.9, "e_import_kwh": 5.0},
                  0)
    aggregate.add(v, 0, TABLE, T0 + 2.0, {}, Q_TIMEOUT)
    saved = json.loads(json.dumps(aggregate.state(v, 0, TABLE)))
    w = slot(TABLE)
    aggregate.restore(w, 0, TABLE, saved)
    expect(aggregate.close(w, 0, TABLE) == aggregate.close(v, 0, TABLE),
           "restored slot differs")
    empty = slot(TABLE)
    aggregate.restore(w, 0, TABLE, json.loads(json.dumps(aggregate.state(empty, 0, TABLE))))
    expect(aggregate.close(w, 0, TABLE) is None, "an empty saved slot restores empty")
    fewer = slot(TABLE, published=("p_w",))
    try:
        aggregate.restore(fewer, 0, TABLE, saved)
        raise CheckFailed("a slot of other quantities was restored")
    except ValueError:
        pass
    other = slot(TABLE, 60.0)
    try:
        aggregate.restore(other, 0, TABLE, saved)
    except ValueError:
        return
    raise CheckFailed("a slot of another length was restored")


def check_slot_ignores_a_clock_going_back():
    v = slot(TABLE, 60.0)
    aggregate.add(v, 0, TABLE, T0 + 65.0, {"p_w": 10.0}, 0)
    expect(aggregate.add(v, 0, TABLE, T0 + 5.0, {"p_w": 99.0}, 0) is None, "went back")
    out = aggregate.close(v, 0, TABLE)
    expect(out["samples"] == 1 and out["bad_samples"] == 1 and out["p_max_w"] == 10.0,
           "%r" % (out,))


# --------------------------------------------------------------------------- pipeline


def check_pipeline_learns_only_good_readings():
    p = pipeline()
    for i in range(3):
        t = T0 + 10.0 * i
        values, q = p.decode(t, blocks(p_w=800.0 + i), "")
        p.process(t, values, q)
    values, q = p.decode(T0 + 40.0, [], "timeout")
    p.process(T0 + 40.0, values, q)
    values, q = p.decode(T0 + 50.0, blocks(p_w=float("nan")), "")
    p.process(T0 + 50.0, values, q)
    expect(p.samples == 3, "samples %d" % p.samples)
    expect(p.id == "m1" and p.unit == 7 and p.poll_s == 10.0, "identity")


def check_pipeline_telemetry_and_score_at_slot_close():
    p = pipeline(telemetry_s=60.0)
    kinds = []
    for i in range(13):
        t = T0 + 10.0 * i
        values, q = p.decode(t, blocks(p_w=500.0, v=220.0 + i), "")
        for ev in p.process(t, values, q):
            kinds.append((ev.kind, ev.t))
            if ev.kind == "telemetry":
                expect(ev.data["samples"] == 6 and ev.data["detector_state"] == "warming",
                       "telemetry %r" % (ev.data,))
                expect(ev.id == "m1:telemetry:%d" % int(ev.data["slot_start"]), ev.id)
    expect(kinds == [("telemetry", T0 + 60.0), ("score", T0 + 60.0),
                     ("telemetry", T0 + 120.0), ("score", T0 + 120.0)], "%r" % (kinds,))
    expect(pipeline(telemetry_s=0.0).process(T0, {"p_w": 1.0}, 0) == [], "no slot at 0 s")


def check_pipeline_of_a_bridged_meter_never_decides():
    p = pipeline(decides_alerts=False)
    expect(not p.decides_alerts and pipeline().decides_alerts, "flag")
    t = T0
    for _ in range(24 * 12):  # a big steady load: the level backstop would alert
        p.process(t, {"p_w": 60000.0}, 0)
        t += 300.0
    expect(p.policy.active is False and p.samples == 288, "a bridged meter alerted")


def check_pipeline_state_round_trips_through_json():
    p = pipeline()
    for i in range(50):
        p.process(T0 + 600.0 * i, {"p_w": 400.0 + i}, 0)
    saved = json.loads(json.dumps(p.state()))
    q = MeterPipeline(TABLE, Detector.from_state({}, saved["detector"]),
                      Policy.from_state("m1", {}, saved["policy"]), 900.0, restored=True)
    expect(q.restored and not p.restored, "restored flag")
    expect(q.detector.score == p.detector.score, "score differs after restore")


# --------------------------------------------------------------------------- health


def check_health_rules():
    p = pipeline()
    p.poll_done(T0, "", "", 0, 0.0)
    ev = p.health_event(T0)
    expect(ev is not None and ev.data["state"] == "ok" and ev.data["polls"] == 1, "ok")
    expect(ev.id == "m1:health:%d:1" % int(T0), ev.id)
    expect(p.health_event(T0 + 10.0) is None, "unchanged health is not re-sent at once")
    p.poll_done(T0 + 10.0, "", "", 2, 0.0)
    d = p.health_event(T0 + 10.0).data
    expect(d["state"] == "degraded" and d["errors"] == {"retried": 2}, "retried %r" % d)
    expect(d["cause"] == "retried" and "1 request" not in d["reason"], "%r" % d)
    p.poll_done(T0 + 20.0, "exception", "exception 2", 0, 0.0)
    d = p.health_event(T0 + 20.0).data  # still degraded, but for another cause: news
    expect(d["state"] == "degraded" and d["cause"] == "exception"
           and d["reason"] == "exception 2" and d["backoff_s"] == 0.0, "exception %r" % d)
    p.poll_done(T0 + 25.0, "exception", "exception 2", 0, 0.0)
    expect(p.health_event(T0 + 25.0) is None, "the same state and cause is not re-sent")
    p.poll_done(T0 + 30.0, "timeout", "no answer", 0, 20.0)
    d = p.health_event(T0 + 30.0).data
    expect(d["state"] == "down" and d["backoff_s"] == 20.0 and d["consecutive_failures"] == 3
           and d["last_error"] == "no answer" and d["last_success"] == T0 + 10.0,
           "down %r" % d)
    expect(d["errors"] == {"retried": 2, "exception": 2, "timeout": 1}, "%r" % d)
    expect(d["cause"] == "timeout" and d["reason"] == "no answer", "%r" % d)
    expect(p.failures == 3, "failures")
    expect(p.health_event(T0 + 30.0 + health.REFRESH_S) is not None, "hourly refresh")
    p.poll_done(T0 + 40.0, "", "", 0, 0.0)
    d = p.health_event(T0 + 40.0 + health.REFRESH_S).data
    expect(d["state"] == "ok" and d["backoff_s"] == 0.0 and d["consecutive_failures"] == 0
           and d["cause"] == d["reason"] == d["hint"] == "" and d["last_error"] == "no answer",
           "recovered %r" % d)


def check_which_failures_back_off_and_retry():
    expect([health.backs_off(k) for k in ("", "timeout", "crc", "io", "exception")]
           == [False, True, True, True, False], "backs_off")
    expect([health.retryable(k) for k in ("timeout", "crc", "io", "exception")]
           == [True, True, False, False], "retryable")


def check_health_object_matches_the_run():
    from agent.meter_health import Health

    h = Health("m9", T0)
    h.record(T0, "crc", "bad crc", 0, 4.0)
    expect(h.state == "down" and h.polls == 1 and h.errors == {"crc": 1}, "record")
    expect(h.due(T0) and not h.due(T0 + 1.0), "due")
    h.state = "degraded"
    expect(h.as_dict()["state"] == "degraded", "state setter")


# --------------------------------------------------------------------------- codec


def check_iso_times():
    got = [iso_utc(t) for t in (0.0, T0, T0 + 0.9999996, 951782400.0, 4102444799.5)]
    want = ["1970-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:00:01.000Z", "2000-02-29T00:00:00.000Z",
            "2099-12-31T23:59:59.500Z"]
    expect(got == want and iso_utc(None) is None, "%r" % (got,))


def check_codec_topics_and_qos():
    p = pipeline()
    p.poll_done(T0, "timeout", "x", 0, 2.0)
    c = EventCodec("lw/v1/s/g", "s", "g", telemetry_qos=1)
    m = c.event(p.health_event(T0))
    expect(m.topic == "lw/v1/s/g/meter/m1/health" and m.qos == 1 and m.retain, "health")
    body = json.loads(m.payload)
    expect(body["schema"] == 1 and body["state"] == "down" and body["meter"] == "m1"
           and body["time"] == "2026-01-01T00:00:00.000Z", "%r" % (body,))
    from agent.model import Event

    ev = Event("score", "m1", T0, "m1:score:1:1", score=5.0, evidence={"x": float("nan")},
               data={"state": "ready", "contributions": {"step": 5.0}})
    m = c.event(ev)
    body = json.loads(m.payload)
    expect(m.qos == 0 and not m.retain and body["evidence"] == {"x": None}, "%r" % (body,))
    expect(c.event(Event("telemetry", "m1", T0, "i", data={})).qos == 1, "telemetry_qos")
    expect(not c.publishes(ev) and EventCodec("lw", "s", "g", score_topic=True).publishes(ev),
           "the score topic is an option")


THREE = [["v_v_l1"], ["v_v_l2"], ["v_v_l3"], ["p_w"], ["p_w_l1"], ["p_w_l2"], ["p_w_l3"],
         ["i_a_l1"], ["f_hz"], ["e_import_kwh"], ["e_export_kwh"]]


def check_compact_telemetry_of_a_three_phase_meter():
    from agent.model import Event

    v = slot(THREE)
    for k, (p1, volts) in enumerate(((900.0, 230.04), (1100.0, 229.0), (1000.0, 231.0))):
        values = {"v_v_l1": volts, "v_v_l2": 231.0, "v_v_l3": 229.5, "p_w": 3 * p1,
                  "p_w_l1": p1, "p_w_l2": p1, "p_w_l3": p1, "f_hz": 50.004,
                  "e_import_kwh": 100.0 + k * 0.25}
        if k:
            values["i_a_l1"] = 4.0 + k
        aggregate.add(v, 0, THREE, T0 + 10.0 * k, values, Q_NEGATIVE if k == 2 else 0)
    data = aggregate.close(v, 0, THREE)
    data["score"] = 41.26
    data["detector_state"] = "ready"
    c = EventCodec("lw/v1/s/g", "s", "g")
    m = c.event(Event("telemetry", "m1", T0 + 900.0, "m1:telemetry:%d" % int(T0), data=data))
    body = json.loads(m.payload)
    want = {"schema": 2, "id": "m1:telemetry:%d" % int(T0), "ts": int(T0), "dt": 900,
            "n": 3,  # no "nb": no bad reading
            "q": {"v": [2300, 10, 10, 2310, 0, 0, 2295, 0, 0],
                  # the total's mean alone, then the phases' triples
                  "p": [3000, 1000, 100, 100, 1000, 100, 100, 1000, 100, 100],
                  "i1": [550, 50, 50], "f": [5000, 0, 0]},
            "e": {"ei": 100.5, "ee": None}, "de": 0.5, "c": {"i1": 2},
            "qf": ["negative_power"], "sc": 41.3, "ds": "ready"}
    expect(body == want, "%r" % (body,))
    expect(m.topic == "lw/v1/s/g/meter/m1/telemetry" and b"units" not in m.payload,
           "%r" % (m,))
    v = slot(THREE)
    aggregate.add(v, 0, THREE, T0, {"p_w": 5.0}, 0)
    aggregate.add(v, 0, THREE, T0 + 10.0, {}, Q_TIMEOUT)
    bad = json.loads(c.event(Event("telemetry", "m1", T0 + 900.0, "b",
                                   data=aggregate.close(v, 0, THREE))).payload)
    expect(bad["n"] == 1 and bad["nb"] == 1, "a bad reading is counted: %r" % (bad,))
    v = slot(THREE, 1.0)
    aggregate.add(v, 0, THREE, T0, {"v_v_l1": 230.0, "v_v_l2": 231.0, "v_v_l3": 232.0,
                                    "p_w": 5.0, "f_hz": 49.99}, 0)
    one = json.loads(c.event(Event("telemetry", "m1", T0 + 1.0, "i",
                                   data=aggregate.close(v, 0, THREE))).payload)
    # The layout follows what the meter is read for, not what one reading carried.
    expect(one["q"] == {"v": [2300, 2310, 2320], "p": [5, None, None, None], "f": 4999,
                        "i1": None} and one["e"] == {"ei": None, "ee": None}
           and one["c"] == {"p1": 0, "p2": 0, "p3": 0, "i1": 0} and one["dt"] == 1,
           "one sample: %r" % (one,))


# --------------------------------------------------------------------------- runner


if __name__ == "__main__":
    raise SystemExit(run(globals()))
