"""Campaign: the agent killed right after an alert event reached the outbox, before the
checkpoint that follows it (issue 11, item 2). The restart must not decide that event
again under another id: the alert policy's state is written in the same transaction as
its events, and the restart continues from it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import harness as h
import pytest
from campaign import record

from agent.publish.outbox import Outbox

# Fault campaigns (tests/faults): `make test` and `make faults` only.
pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("crash_child.py")


def _run(state_dir: Path, outbox: Path, t_from: float, t_to: float, die: bool) -> tuple[str, float]:
    cmd = [sys.executable, str(CHILD), str(state_dir), str(outbox), "--from", repr(t_from),
           "--to", repr(t_to)] + (["--die-after-alert"] if die else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    last = out.stdout.strip().splitlines()[-1:] or [""]
    word, _, t = last[0].partition(" ")
    if word not in ("DIED", "END"):
        raise AssertionError("child failed (rc %d): %s" % (out.returncode, out.stderr[-2000:]))
    return word, float(t)


def second_ids(payloads: list[dict]) -> int:
    """Alert events published under more than one id: the policy numbers its events (the
    last field of the id), so one (alert, number) pair must carry one id."""
    ids: dict[tuple[str, str], set[str]] = {}
    for p in payloads:
        if p.get("kind") in ("raised", "updated", "cleared"):
            ids.setdefault((p["alert_id"], p["id"].rsplit(":", 1)[-1]), set()).add(p["id"])
    return sum(len(v) - 1 for v in ids.values())


@pytest.mark.slow
def test_kill_right_after_each_alert_never_sends_an_event_under_a_second_id(tmp_path):
    state_dir, outbox = tmp_path / "state", tmp_path / "outbox.sqlite"
    t, end, kills = h.T0, h.T0 + 9 * h.DAY, 0
    while t < end and kills < 8:
        word, t_died = _run(state_dir, outbox, t, end, die=True)
        if word == "END":
            break
        kills += 1
        t = t_died + h.POLL_S  # the meters went on while the agent restarted
    _run(state_dir, outbox, t, end, die=False)
    with Outbox(outbox) as ob:
        payloads = [json.loads(e.message.payload) for e in ob.begin(100000)]
    alerts = [p for p in payloads if p.get("kind") in ("raised", "updated", "cleared")]
    dup = second_ids(payloads)
    raised = [p for p in alerts if p["kind"] == "raised"]
    record("SIGKILL right after each alert", runs=kills, alerts=len(alerts),
           lost=0 if raised else 1, second_id=dup, crash_loops=0,
           note="killed between the outbox write and the checkpoint")
    assert kills >= 2, "the campaign killed the agent %d times only" % kills
    assert raised and dup == 0, [(p["kind"], p["id"]) for p in alerts]
