"""Stopping what a simulated run started: the scenario runner's (hil/runner.py) and the
demo's (hil/demo.py) runs are built from the same pieces and end the same way."""

from __future__ import annotations

import asyncio
import shutil
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from hil.broker import MosquittoBroker
    from hil.subscriber import Recorder


class Meters(Protocol):
    """Simulated meters a run serves (a scenario's Rig, the demo's meter server)."""

    async def stop(self) -> None: ...


async def stop_run(agent_task: asyncio.Task | None, recorder: Recorder | None,
                   meters: Meters | None, broker: MosquittoBroker, workdir: str) -> None:
    """Stop a run's pieces however far it got (None: not started yet), for a ``finally``.

    The agent goes first, so that nothing polls a stopped meter or publishes to a stopped
    broker; an agent task that already ended is left as it is (its error, if any, was the
    run's to raise). Then the subscriber, the meters, the broker with its work folder
    (off the event loop: Mosquitto may take seconds to save and exit) and the run's folder.
    """
    if agent_task is not None and not agent_task.done():
        agent_task.cancel()
        await asyncio.gather(agent_task, return_exceptions=True)
    if recorder is not None:
        recorder.stop()
    if meters is not None:
        await meters.stop()
    await asyncio.get_running_loop().run_in_executor(None, broker.close)
    shutil.rmtree(workdir, ignore_errors=True)
