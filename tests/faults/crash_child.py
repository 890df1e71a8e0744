"""A child process for the crash campaigns: the real in-process agent of ``harness.py``
fed from ``--from`` to ``--to`` and checkpointed every ``checkpoint_every_s`` as the runtime's
loop does, which dies with ``os._exit`` (no cleanup, as SIGKILL)
either right after its first alert event reached the outbox (``--die-after-alert``: the
listeners run after the outbox write and before the checkpoint) or never.

    python crash_child.py STATE_DIR OUTBOX --from T --to T [--die-after-alert]

Prints ``DIED <t>`` or ``END <t>`` (the simulated time reached) as its last line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))

import harness as h

from agent.runtime import Agent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("state_dir")
    ap.add_argument("outbox")
    ap.add_argument("--from", dest="t_from", type=float, required=True)
    ap.add_argument("--to", dest="t_to", type=float, required=True)
    ap.add_argument("--die-after-alert", action="store_true")
    args = ap.parse_args()
    agent = Agent(h.plan(Path(args.state_dir), outbox=Path(args.outbox)))
    agent.open_outbox()
    now = [args.t_from]

    def die(ev) -> None:
        if args.die_after_alert and ev.is_alert:
            print("DIED %r" % now[0], flush=True)
            os._exit(9)

    agent.add_listener(die)
    t = args.t_from
    next_checkpoint = t + agent.plan.checkpoint_every_s
    while t < args.t_to:
        now[0] = t
        for m in h.METERS:
            agent.on_reading(h.reading(m, t))
        if t >= next_checkpoint:  # what the runtime's checkpoint loop does
            agent.checkpoint()
            next_checkpoint += agent.plan.checkpoint_every_s
        t += h.POLL_S
    agent.save_state()
    agent.outbox.close()
    print("END %r" % t, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
