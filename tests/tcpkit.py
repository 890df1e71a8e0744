"""A fake TCP peer on a free loopback port, for tests that play a meter, a gateway or a
recorder at the byte level (tests/ is on sys.path: ``from tcpkit import LoopbackServer``).

A subclass writes only ``handle``: what the peer does with one connection. Starting on a
free port, and ending every connection at ``stop`` so that no handler task outlives the
test (the suite fails a test that leaks one), are here once.
"""

from __future__ import annotations

import asyncio


class LoopbackServer:
    """``await start()``, then connect to 127.0.0.1:``port``; ``await stop()``."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._handlers: dict[asyncio.Task, asyncio.StreamWriter] = {}

    async def handle(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        """One client connection; it is closed when this returns or raises."""
        raise NotImplementedError

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers[task] = writer
        try:
            await self.handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away mid-frame: a normal end for a fake peer
        finally:
            writer.close()
            self._handlers.pop(task, None)

    async def stop(self) -> None:
        """Close the listener and every connection; wait for the handlers to end.

        Closing a connection ends its handler's pending read, so the handlers finish on
        their own; a cancelled one would make asyncio log an error for the connection
        callback (which a test that checks the log for tracebacks counts). A handler that
        is not reading is cancelled after a second."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._handlers.values()):
            writer.close()
        if self._handlers:
            _, late = await asyncio.wait(list(self._handlers), timeout=1.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._server.wait_closed()
