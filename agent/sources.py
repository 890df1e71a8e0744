"""What the runtime runs per bus: a source of readings (DESIGN.md 10).

A Modbus or DL/T 645 bus poller (agent/modbus/poller.py) and the serial bridge to an MCU
gateway (agent/bridge/source.py) are both sources: the runtime starts ``run()`` as a task
per bus, calls ``stop()`` before cancelling it (a read in flight may swallow the cancel,
see BusPoller.stop), and hands a source's output to the Agent through the callbacks it
was built with. A source that can read one meter at once (the ``read`` command) also has
``poll_now``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from agent.model import RawPoll


@runtime_checkable
class Source(Protocol):
    async def run(self) -> None:
        """Read until stopped or cancelled."""

    def stop(self) -> None:
        """End ``run()`` at its next turn, whatever a read in flight does."""


@runtime_checkable
class OnDemand(Protocol):
    async def poll_now(self, meter_id: str) -> RawPoll:
        """Read one meter at once, outside the schedule (not fed to the pipeline)."""
