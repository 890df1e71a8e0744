"""A minimal agent config for tests that run the real agent against simulated Modbus TCP
meters (tests/ is on sys.path: ``from agentkit import tcp_agent_toml``).

Only what a test varies is a parameter, so the test shows it; everything else is the
smallest config the agent accepts.
"""

from __future__ import annotations

import json
from os import PathLike


def tcp_agent_toml(state_dir: str | PathLike, meter_port: int,
                   meters: tuple[tuple[str, int, str], ...] = (("m1", 1, "sdm630"),),
                   broker_port: int = 1, **bus: int) -> str:
    """Site ``s``, gateway ``g``, ``poll_s = 1``; one bus ``b`` of kind tcp on
    127.0.0.1:``meter_port`` with ``meters`` as (id, unit, profile) and any further bus
    keys given as keywords (``timeout_ms=300``); the broker on 127.0.0.1:``broker_port``
    (1: nothing listens, for tests that never publish)."""
    lines = ['site = "s"', 'gateway = "g"', "poll_s = 1",
             "state_dir = %s" % json.dumps(str(state_dir)),
             "[broker]", 'host = "127.0.0.1"', "port = %d" % broker_port,
             "[[buses]]", 'name = "b"', 'kind = "tcp"', 'host = "127.0.0.1"',
             "port = %d" % meter_port]
    lines += ["%s = %d" % kv for kv in bus.items()]
    for mid, unit, profile in meters:
        lines += ["[[meters]]", "id = %s" % json.dumps(mid), 'bus = "b"', "unit = %d" % unit,
                  "profile = %s" % json.dumps(profile)]
    return "\n".join(lines) + "\n"
