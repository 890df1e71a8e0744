"""The rig's and the demo's agent configs are written from data (hil/toml_out.py)."""

from __future__ import annotations

import sys

import pytest

from hil import toml_out

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_round_trip_of_what_the_configs_use() -> None:
    data = {"site": "hil", "gateway": 'a "quoted" \\ name', "tz_offset_hours": 8.0,
            "poll_s": 600, "flag": False,
            "broker": {"host": "127.0.0.1", "port": 1883, "tls": False},
            "buses": [{"name": "b", "kind": "rtu", "port": "/dev/pts/7", "baud": 9600}],
            "meters": [{"id": "m-1", "bus": "b", "unit": 1, "quantities": ["p_w", "pf"]},
                       {"id": "m-2", "bus": "b", "address": "000012340001"}]}
    assert tomllib.loads(toml_out.dumps(data)) == data


def test_values_toml_cannot_hold_are_refused() -> None:
    with pytest.raises(ValueError):
        toml_out.dumps({"x": float("nan")})
    with pytest.raises(TypeError):
        toml_out.dumps({"x": object()})
