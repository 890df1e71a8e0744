"""The topic and payload contract (DESIGN.md 6): every kind validates against its schema."""

from __future__ import annotations

import json

import pytest
from conftest import schema_errors
from publish_helpers import PREFIX, alert, codec, health, score, telemetry

from agent.model import Event, Score
from agent.publish.codec import iso_utc


def decode(msg):
    return json.loads(msg.payload)


@pytest.mark.parametrize("make, leaf, qos, retain", [
    (lambda: alert("m1", 1, "raised"), "alert", 1, True),
    (lambda: alert("m1", 2, "updated"), "alert", 1, True),
    (lambda: alert("m1", 3, "cleared"), "alert", 1, True),
    (lambda: telemetry("m1", 1), "telemetry", 0, False),
    (lambda: score("m1", 1), "score", 0, False),
    (lambda: health("m1", 1), "health", 1, True),
])
def test_every_event_kind_has_its_topic_qos_retain_and_valid_payload(make, leaf, qos, retain):
    ev = make()
    msg = codec().event(ev)
    assert msg.topic == "%s/meter/m1/%s" % (PREFIX, leaf)
    assert (msg.qos, msg.retain, msg.id, msg.meter) == (qos, retain, ev.id, "m1")
    body = decode(msg)
    assert schema_errors(msg.topic, body) == []
    if leaf == "telemetry":  # schema 2: the topic names kind, meter, site and gateway
        assert body["schema"] == 2 and body["id"] == ev.id
        assert not {"kind", "time", "t", "site", "gateway", "meter", "units"} & set(body)
        return
    assert body["schema"] == 1 and body["id"] == ev.id and body["kind"] == ev.kind
    assert body["time"].endswith("Z") and body["t"] == ev.t


def test_alert_carries_alert_id_evidence_contributions_and_state():
    body = decode(codec().event(alert("m1", 1, "raised")))
    assert body["alert_id"] == "m1:onset:1" and body["state"] == "active"
    assert body["contributions"] == {"floor": 40.0, "flatness": 25.0, "jitter": 22.5}
    assert body["evidence"]["summary"].startswith("floor")
    # JSON has no NaN: a non-finite figure is published as null, never as invalid JSON.
    assert body["evidence"]["night_evening_ratio"] is None
    cleared = decode(codec().event(alert("m1", 1, "cleared")))
    assert cleared["state"] == "cleared"


def test_status_will_and_reply():
    c = codec()
    birth = c.status("online", 0.0, "s-1", {"outbox": {"pending": 0, "bytes": 0,
                                                        "max_bytes": 1, "rejected": 0,
                                                        "dropped": {"telemetry": 0,
                                                                    "score": 0}}})
    assert (birth.topic, birth.qos, birth.retain) == (PREFIX + "/status", 1, True)
    assert decode(birth)["time"] == "1970-01-01T00:00:00.000Z"
    will = c.will(1.5, "w-1")
    assert decode(will)["state"] == "offline" and will.retain
    for m in (birth, will, c.reply("ping", 2.0, "r-1", "q1", True, {"pong": True}),
              c.reply("read", 2.0, "r-2", None, False, error="unknown meter")):
        assert schema_errors(m.topic, decode(m)) == []
    assert c.command_name(PREFIX + "/cmd/ping") == "ping"
    assert c.command_name(PREFIX + "/cmd/ping/reply") is None
    assert c.command_filter == PREFIX + "/cmd/+"


def test_bad_meter_ids_and_kinds_are_refused():
    with pytest.raises(ValueError):
        codec().event(alert("a/b", 1))
    with pytest.raises(ValueError):
        codec().event(Event("nonsense", "m1", 0.0, "x"))
    with pytest.raises(ValueError):
        type(codec())("bad/#", "s", "g")


def test_iso_utc():
    assert iso_utc(1772413200.25) == "2026-03-02T01:00:00.250Z"
    assert iso_utc(None) is None


def test_events_of_the_real_policy_and_aggregate_fit_the_contract():
    """The detector room's Policy and the integrator's pipeline produce what we encode."""
    from array import array

    from agent import aggregate
    from agent.meter_health import Health
    from agent.policy import Policy, default_policy_settings

    c = codec()
    policy = Policy("m1", default_policy_settings())
    contributions = {"step": 30.0, "flatness": 25.0, "jitter": 20.0}
    evidence = {"summary": "floor +1.4 kW", "floor_w": 1400.0, "jitter_pct": None}
    events = []
    t = 1_772_400_000.0
    for value in [80.0] * 60 + [10.0] * 400:  # on for 15 h, then off for 100 h
        events += policy.update(Score(t, value, True, 1.4, None, contributions, evidence))
        t += 900.0
    assert events[0].kind == "raised" and events[-1].kind == "cleared"
    table = [["p_w"], ["pf"], ["v_v_l1"], ["v_v_l2"], ["v_v_l3"], ["e_import_kwh"]]
    mask = aggregate.all_mask(table)
    slot = array("d", [0.0] * aggregate.size(table, mask))
    aggregate.init(slot, 0, 900.0, table, mask)
    closed = None
    for i in range(200):
        closed = aggregate.add(slot, 0, table, t + i * 10.0,
                               {"p_w": 1500.0, "pf": 0.97, "v_v_l1": 230.0, "v_v_l2": 231.0,
                                "v_v_l3": 229.0, "e_import_kwh": 10.0 + i / 360}, 0) or closed
    assert closed is not None
    events.append(Event("telemetry", "m1", t, "m1:telemetry:1", data=closed))
    events.append(Event("health", "m1", t, "m1:health:1", data=Health("m1", t).as_dict()))
    for ev in events:
        msg = c.event(ev)
        assert schema_errors(msg.topic, decode(msg)) == [], ev


def test_alert_payload_carries_the_detectors_schedule() -> None:
    """A night-only rig's block travels as the alert's ``schedule`` object (schema-checked);
    a bad one is refused by the schema."""
    from agent.model import Schedule
    from agent.policy import Policy

    c = codec()
    policy = Policy("m1", {"hold_s": 900.0})
    night = Schedule(22, 7, 4, 1.4, 1_772_300_000)
    ev = {"summary": "+1.4 kW from 22:00 to 07:00 every night since 2026-03-01 (4 nights)"}
    events = []
    t = 1_772_400_000.0
    for _ in range(3):
        events += policy.update(Score(t, 90.0, True, 1.4, night, {"step": 20.0}, ev))
        t += 900.0
    assert [e.kind for e in events] == ["raised"]
    body = decode(c.event(events[0]))
    assert body["schedule"] == {"start_hour": 22, "end_hour": 7, "days_seen": 4,
                                "level_kw": 1.4, "since_t": 1_772_300_000}
    assert schema_errors(c.event(events[0]).topic, body) == []
    body["schedule"]["start_hour"] = 25
    assert schema_errors(c.event(events[0]).topic, body) != []


def test_a_class_publishes_only_its_telemetry_quantities(tmp_path) -> None:
    """The real agent: an SDM630 read for everything, its class publishing power and the
    L1 voltage only; what is published validates against schema 2."""
    from agent.config import load_text
    from agent.model import Reading
    from agent.runtime import Agent

    cfg = ('site = "s"\ngateway = "g"\nstate_dir = "%s"\ntelemetry_every_s = 60\n'
           '[broker]\nhost = "127.0.0.1"\n[[buses]]\nname = "b"\nkind = "tcp"\n'
           'host = "127.0.0.1"\n[[meters]]\nid = "m1"\nbus = "b"\nprofile = "sdm630"\n'
           'class = "flat"\nquantities = "all"\n[classes.flat]\n'
           'telemetry_quantities = ["p_w", "v_v_l1", "e_import_kwh"]\n' % tmp_path)
    agent = Agent(load_text(cfg, "t.toml"))
    bodies = []
    agent.add_listener(lambda ev: bodies.append(json.loads(agent.codec.event(ev).payload))
                       if ev.kind == "telemetry" else None)
    t0 = 1772413200.0
    for k in range(13):
        values = {"p_w": 1000.0 + k, "v_v_l1": 230.0, "v_v_l2": 231.0, "i_a": 4.0,
                  "e_import_kwh": 100.0 + k / 100, "f_hz": 50.0 + k / 1000}
        agent.on_reading(Reading("m1", t0 + 10.0 * k, values))
    assert len(bodies) == 2, bodies
    body = bodies[0]
    assert set(body["q"]) == {"p", "v1"} and set(body["e"]) == {"ei"}, body
    assert body["q"]["p"] == [1003, 3, 2] and body["n"] == 6 and "c" not in body, body
    assert schema_errors("lw/v1/s/g/meter/m1/telemetry", body) == []


def test_cbor_telemetry_is_the_json_message_in_fewer_bytes():
    """``telemetry_encoding = "cbor"``: the same fields (schema 2 validates the decoded
    message), announced by its content type; every other kind stays JSON."""
    from agent.publish.codec import CBOR, Codec, content_type
    from agent.publish.codec import decode as decode_payload

    c = Codec(PREFIX, "s1", "g1", telemetry_encoding="cbor")
    ev = telemetry("m1", 1)
    ev.data["counters"]["e_export_kwh"] = None  # a counter no good reading carried
    js, cb = codec().event(ev), c.event(ev)
    assert content_type(cb.payload) == CBOR and content_type(js.payload) is None
    assert cb.payload[:1] != b"{" and len(cb.payload) < 0.8 * len(js.payload)
    body = decode_payload(cb.payload, CBOR)
    assert body == json.loads(js.payload) and body["e"]["ee"] is None
    assert schema_errors(cb.topic, body) == []
    assert (cb.topic, cb.qos, cb.retain, cb.id) == (js.topic, js.qos, js.retain, js.id)
    for other in (alert("m1", 1), health("m1", 1), score("m1", 1)):
        assert c.event(other).payload == codec().event(other).payload  # JSON
        assert content_type(c.event(other).payload) is None
    with pytest.raises(ValueError, match="broken CBOR"):
        decode_payload(cb.payload[:-3], CBOR)
    with pytest.raises(ValueError, match="neither JSON nor CBOR"):
        decode_payload(cb.payload, "application/xml")
    with pytest.raises(ValueError, match="not one of"):
        Codec(PREFIX, "s1", "g1", telemetry_encoding="xml")
