"""Every JSON example in README is a payload the agent really sends (issue 13 item 16).

Each ```json block of README.md must validate against the schema of its kind, and the
examples of the meter topics must carry the same fields as payloads produced here by the
real code path (a real agent pipeline fed a miner trace from tests/golden, the real codec,
the real health), with ids of the same shape. The alert example once showed ``floor_w``
and ``baseline_floor_w`` while the agent sends ``floor_kw`` and ``baseline_kw``.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import jsonschema

from agent.config import load_text
from agent.meter_health import Health
from agent.model import Event, Reading
from agent.publish import load_schema, schema_name
from agent.replay import parse_time
from agent.runtime import Agent

ROOT = Path(__file__).resolve().parents[2]
TRACE = ROOT / "tests" / "golden" / "replay" / "street-s9" / "input.csv"
CONFIG = """
site = "north"
gateway = "gw-17"
state_dir = "%s"
telemetry_every_s = 900
[broker]
host = "127.0.0.1"
[[buses]]
name = "b"
kind = "tcp"
host = "127.0.0.1"
[[meters]]
id = "home-miner"
bus = "b"
unit = 1
profile = "sdm630"
"""


def readme_examples() -> list[dict]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no JSON examples"
    return [json.loads(b) for b in blocks]


def real_payloads(tmp_path: Path) -> dict[str, dict]:
    """The first payload of each meter kind the real agent produces for a miner."""
    agent = Agent(load_text(CONFIG % tmp_path, "t.toml"))
    out: dict[str, dict] = {}

    def keep(ev: Event) -> None:
        kind = "alert" if ev.is_alert else ev.kind
        if kind not in out:
            out[kind] = json.loads(agent.codec.event(ev).payload)

    agent.add_listener(keep)
    with open(TRACE, newline="") as f:
        for row in csv.DictReader(f):
            if row["meter"] == "home-miner":
                agent.on_reading(Reading("home-miner", parse_time(row["timestamp"]),
                                         {"p_w": float(row["p_w"]), "pf": float(row["pf"])}))
            if "alert" in out:
                break
    h = Health("home-miner", 1772413200.0)
    h.polls = 52
    h.set_problem("down", "timeout", "unit 1: no answer in 1000 ms", "check the wiring")
    agent.on_health(h)
    return out


def _shape(ident: str) -> str:
    return re.sub(r"[0-9a-f]{8}", "H", re.sub(r"\d+", "N", ident.replace("home-miner", "M")))


def test_every_readme_example_validates_against_its_schema() -> None:
    examples = readme_examples()
    kinds = {schema_name(e) for e in examples}
    assert {"alert", "telemetry", "score", "health", "status", "reply"} <= kinds
    for ex in examples:
        schema = load_schema(schema_name(ex))
        errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(ex)]
        assert not errors, "README example %s: %s" % (ex["id"], errors)


def test_readme_examples_carry_the_fields_of_real_payloads(tmp_path: Path) -> None:
    real = real_payloads(tmp_path)
    assert set(real) == {"alert", "telemetry", "score", "health"}, set(real)
    assert schema_name(real["telemetry"]) == "telemetry"  # the agent sends schema 2
    for ex in readme_examples():
        kind = schema_name(ex)
        if kind not in real:
            continue
        got = real[kind]
        meter = ex.get("meter") or ex["id"].split(":")[0]
        assert _shape(ex["id"].replace(meter, "home-miner")) == _shape(got["id"]), \
            (ex["id"], got["id"])
        if kind == "telemetry":
            # Schema 2 leaves out what a slot lacks (c, de, qf), so the field sets differ
            # by slot; what must hold is that both sides only use fields of the schema
            # (additionalProperties false) with the same short quantity keys' shape.
            schema = load_schema("telemetry")
            assert not list(jsonschema.Draft202012Validator(schema).iter_errors(got))
            assert set(schema["required"]) <= set(ex) and set(schema["required"]) <= set(got)
            assert set(got["q"]) <= set(ex["q"]), (sorted(got["q"]), sorted(ex["q"]))
            continue
        assert set(ex) == set(got), "README %s example: extra %s, missing %s" % (
            kind, sorted(set(ex) - set(got)), sorted(set(got) - set(ex)))
        assert set(ex["units"]) == set(got["units"]), kind
        if "evidence" in ex:
            extra = set(ex["evidence"]) - set(got["evidence"])
            assert not extra, "README %s evidence has fields the agent never sends: %s" % (
                kind, sorted(extra))
        if kind == "alert":
            assert _shape(ex["alert_id"].replace(ex["meter"], "home-miner")) == \
                _shape(got["alert_id"])
            # The real evidence itself validates against the typed schema.
            schema = load_schema("alert")
            assert not list(jsonschema.Draft202012Validator(schema).iter_errors(got))
