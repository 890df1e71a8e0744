"""TOML written from data: the agent configs the rig and the demo start their agent with
are dicts turned into text here, never assembled by string concatenation (a meter id or a
path with a quote in it would have broken the file).

Only what those configs use: strings, booleans, integers, finite floats, lists of
scalars, tables and arrays of tables.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("TOML has no %r" % v)
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[%s]" % ", ".join(_value(x) for x in v)
    raise TypeError("cannot write %r as a TOML value" % (v,))


def dumps(data: dict, _path: str = "") -> str:
    """``data`` as TOML text (keys in insertion order, plain keys only)."""
    lines = []
    tables = []
    for key, v in data.items():
        if isinstance(v, dict):
            tables.append(("table", key, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            tables.append(("array", key, v))
        else:
            lines.append("%s = %s" % (key, _value(v)))
    for kind, key, v in tables:
        name = "%s.%s" % (_path, key) if _path else key
        for one in (v if kind == "array" else [v]):
            lines.append(("[[%s]]" if kind == "array" else "[%s]") % name)
            body = dumps(one, name)
            if body:
                lines.append(body.rstrip("\n"))
    return "\n".join(lines) + "\n" if lines else ""
