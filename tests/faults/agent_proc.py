"""The real agent as its own process for the kill campaigns: ``Agent(plan, clock).run()``
exactly as ``loadwatch run`` does (SIGTERM/SIGINT stop it), but on the campaign's fast
simulated clock (``--clock`` is a ``Clock.spec()`` as JSON, shared with the simulated
meters), and printing ``ALERT <id>`` once an alert event is in the outbox (listeners run
after the outbox write), so the campaign knows which alerts it must see arrive.

    python agent_proc.py --config FILE --clock '{"speed": ..., "t0": ..., "wall_start": ...}'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))

from agent.clock import Clock
from agent.config import load
from agent.runtime import Agent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--clock", required=True)
    args = ap.parse_args()
    agent = Agent(load(args.config), Clock.from_spec(json.loads(args.clock)))

    def show(ev) -> None:
        if ev.is_alert:
            print("ALERT %s" % ev.id, flush=True)

    agent.add_listener(show)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.request_stop)
        print("RUNNING", flush=True)
        await agent.run()

    asyncio.run(run())
    print("STOPPED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
