"""The utility's read-only commands (``cmd/<name>``): ping, state and an on-demand read.

Answered on the publisher's thread; a read runs on the agent's event loop, on the bus
that owns the meter, and waits for it a bounded time. Nothing here can write to a meter
or change the config (DESIGN.md 6).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import TYPE_CHECKING

from agent.decode import Decoder
from agent.model import quality_names
from agent.sources import OnDemand

if TYPE_CHECKING:  # pragma: no cover
    from agent.runtime import Agent

# The longest an on-demand read may keep the command worker waiting.
READ_TIMEOUT_S = 10.0


class Commands:
    """What each command answers for one agent; ValueError is a refusal (ok: false)."""

    def __init__(self, agent: Agent, version: str):
        self.agent = agent
        self.version = version

    def answer(self, name: str, args: dict) -> dict:
        if name == "ping":
            return {"pong": True, "version": self.version,
                    "uptime_s": time.time() - self.agent.started_at}
        if name == "state":
            return {"meters": self.agent.snapshot()}
        if name == "read":
            return self.read(args.get("meter"))
        raise ValueError("unknown command %r" % (name,))

    def read(self, meter: object) -> dict:
        """Poll one meter now on its own bus; its reading, or why not."""
        agent = self.agent
        if meter not in agent.pipelines:
            raise ValueError("unknown meter %r" % (meter,))
        source = agent.source_of(str(meter))
        if not isinstance(source, OnDemand) or agent.loop is None:
            raise ValueError("meter %r cannot be read on demand" % (meter,))
        fut = asyncio.run_coroutine_threadsafe(source.poll_now(meter), agent.loop)
        try:
            raw = fut.result(timeout=READ_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise ValueError("meter %r: no result within 10 s (a slow or busy bus)"
                             % (meter,)) from None
        if raw.error:
            # A read that failed is not a result: ok false, with the meter's reason.
            raise ValueError("meter %r could not be read: %s" % (meter, raw.error))
        reading = Decoder(agent.pipelines[str(meter)].plan).decode(raw)
        return {"meter": meter, "values": reading.values,
                "quality": quality_names(reading.quality), "error": raw.error}
