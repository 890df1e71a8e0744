"""Command requests from the utility (``cmd/<name>``): parsed, bounded and rate-limited
before anything answers them (agent/commands.py answers).

A request is a small JSON object; anything larger than ``MAX_COMMAND_BYTES``, nested
deeper than ``MAX_COMMAND_DEPTH``, not an object, or naming an unknown command is refused
with a reply saying why, and replies of every kind share one token bucket.
"""

from __future__ import annotations

import json
import time
from typing import Callable

from agent.publish.codec import COMMANDS

MAX_COMMAND_BYTES = 4096
MAX_COMMAND_DEPTH = 8  # nesting of JSON arrays/objects; a real request is flat (depth 1)
COMMAND_QUEUE = 16
# Replies (answers, errors and "busy" alike) are rate-limited by a token bucket: a burst of
# COMMAND_BURST, then COMMAND_RATE_PER_S. A flood of requests beyond that gets no reply
# at all (counted and logged once a minute), so it cannot turn the gateway into an
# amplifier or starve the uplink of alerts.
COMMAND_BURST = 20
COMMAND_RATE_PER_S = 2.0


class CommandError(ValueError):
    """A command that cannot be run; its message goes into the error reply."""


class ReplyBudget:
    """A token bucket: ``take()`` is True while the burst or the refill rate allows one
    more command (and so one more reply). ``now`` is a monotonic clock (a seam for tests)."""

    def __init__(self, burst: int = COMMAND_BURST, rate_per_s: float = COMMAND_RATE_PER_S,
                 now: Callable[[], float] = time.monotonic):
        self.burst = float(burst)
        self.rate_per_s = rate_per_s
        self._now = now
        self._tokens = float(burst)
        self._at = now()

    def take(self) -> bool:
        t = self._now()
        self._tokens = min(self.burst, self._tokens + (t - self._at) * self.rate_per_s)
        self._at = t
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def json_depth(payload: bytes) -> int:
    """The deepest nesting of arrays and objects in ``payload``, counted without parsing.

    ``json.loads`` recurses once per level and raises RecursionError (not ValueError) near
    1,000 levels, which 4 KB of ``[`` reach easily; so the depth is measured first, in
    one pass over the bytes that skips string contents (and their escapes)."""
    depth = deepest = 0
    in_string = escaped = False
    for b in payload:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:  # closing quote
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif b in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def _load_body(payload: bytes) -> object:
    """JSON from a request that passed the size check; CommandError for anything else."""
    if json_depth(payload) > MAX_COMMAND_DEPTH:
        raise CommandError("payload nested too deeply (at most %d levels)" % MAX_COMMAND_DEPTH)
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CommandError("payload is not valid UTF-8 JSON") from None


def parse_command(name: str, payload: bytes) -> tuple[str | None, dict]:
    """Validate a command request; (request id, args) or CommandError. Pure.

    Only ``ping``, ``state`` (no arguments) and ``read`` (``meter``: a string) exist;
    nothing else is accepted, so no request can reach a meter's write path or the config.
    """
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError("payload too large (%d bytes, at most %d)"
                           % (len(payload), MAX_COMMAND_BYTES))
    if name not in COMMANDS:
        raise CommandError("unknown command %r (available: %s)" % (name[:64],
                                                                    ", ".join(COMMANDS)))
    if payload.strip() == b"":
        return None, {}
    body = _load_body(payload)
    if not isinstance(body, dict):
        raise CommandError("payload must be a JSON object")
    request_id = body.pop("id", None)
    if request_id is not None and not isinstance(request_id, str):
        raise CommandError("'id' must be a string")
    allowed = {"read": {"meter"}}.get(name, set())
    extra = sorted(set(body) - allowed)
    if extra:
        raise CommandError("unexpected argument(s) %s for %s" % (", ".join(extra)[:200], name))
    if name == "read" and not isinstance(body.get("meter"), str):
        raise CommandError("read needs {\"meter\": \"<meter id>\"}")
    return request_id, body


def peek_request_id(payload: bytes) -> str | None:
    """The request's ``id`` if one can be read safely, so even an error reply can be
    matched to its request (never for oversized or malformed payloads)."""
    if len(payload) > MAX_COMMAND_BYTES:
        return None
    try:
        body = _load_body(payload)
    except CommandError:
        return None
    rid = body.get("id") if isinstance(body, dict) else None
    return rid if isinstance(rid, str) else None
