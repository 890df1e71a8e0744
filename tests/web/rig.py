"""A running agent with its status page, for the web tests and the hostile-HTTP fault
campaign: real pymodbus meters, a real Mosquitto on a free loopback port, the real
``Agent`` on its own event loop in a thread (so a test can attack or browse it from the
outside, as a client would). A plain module, not a conftest, so tests/faults can import
it too."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest

from agent.clock import Clock
from agent.config import load_text
from agent.runtime import Agent
from hil.broker import MosquittoBroker, free_port
from hil.meters import SimMeterServer, SimUnit

ROOT = Path(__file__).resolve().parents[2]
# Screenshots are test artefacts (gitignored); CI can keep the folder.
ARTIFACTS = ROOT / "test-artifacts" / "web"


def agent_config(broker_port: int, meters_port: int, units: list[SimUnit], state_dir: str,
                 web_port: int, tz_hours: float = 0.0, poll_s: float = 300.0,
                 telemetry_every_s: float = 3600.0, web_extra: str = "",
                 extra: str = "") -> str:
    lines = [
        'site = "s1"', 'gateway = "gw1"', "tz_offset_hours = %r" % tz_hours,
        "state_dir = %s" % json.dumps(state_dir), "poll_s = %r" % poll_s,
        "telemetry_every_s = %r" % telemetry_every_s, "checkpoint_every_s = 21600",
        "[broker]", 'host = "127.0.0.1"', "port = %d" % broker_port, "tls = false",
        "[web]", 'listen = "127.0.0.1:%d"' % web_port, "header_timeout_s = 1.0",
        web_extra,
        extra,
        "[[buses]]", 'name = "street"', 'kind = "tcp"', 'host = "127.0.0.1"',
        "port = %d" % meters_port, "timeout_ms = 500", "retries = 0", "backoff_max_s = 2",
    ]
    for u in units:
        lines += ["[[meters]]", 'id = "%s"' % u.name, 'bus = "street"',
                  "unit = %d" % u.unit_id, 'profile = "%s"' % u.profile.name]
    return "\n".join(lines) + "\n"


class BrakingClock(Clock):
    """A simulated clock that can be slowed down mid-run without a jump: the page tests
    run days on a fast clock until the miner is caught, then brake, so the pages they
    read do not keep changing under them (a fast clock on a busy machine outruns the
    polls and the evidence reads 'not enough data')."""

    def __init__(self, speed: float, t0: float):
        super().__init__(speed=speed, t0=t0)
        self._braked: tuple[float, float] | None = None  # (simulated t, monotonic) at brake

    def now(self) -> float:
        if self._braked is None:
            return super().now()
        t, m = self._braked
        return t + (time.monotonic() - m) * self.speed

    def brake(self, speed: float) -> None:
        self._braked = (self.now(), time.monotonic())
        self.speed = float(speed)


class AgentRig:
    """Broker + simulated meters + agent, running on a background event loop."""

    def __init__(self, tmp: Path, make_units: Callable[[Clock], list[SimUnit]], clock: Clock,
                 **config: Any):
        self.tmp = tmp
        self.clock = clock
        self.units = make_units(clock)
        self.config = config
        self.broker = MosquittoBroker()
        self.web_port = free_port()
        self.agent: Agent | None = None
        self.events: list = []
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="web-rig", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.web_port

    def start(self) -> AgentRig:
        self.broker.start()
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            self.stop()
            raise RuntimeError("agent rig did not start: %r" % (self._error,))
        return self

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        server = SimMeterServer(self.units, tcp=("127.0.0.1", 0))
        await server.start()
        try:
            plan = load_text(agent_config(self.broker.port, server.port, self.units,
                                          str(self.tmp / "state"), self.web_port,
                                          **self.config), "web-test-config")
            self.agent = Agent(plan, self.clock)
            self.agent.add_listener(self.events.append)
            self._loop = asyncio.get_running_loop()
            # One executor thread, started now: module-scoped rigs outlive single tests,
            # and the leak check must not see a worker thread appear mid-way.
            self._loop.set_default_executor(ThreadPoolExecutor(1, "web-rig-executor"))
            await self._loop.run_in_executor(None, lambda: None)
            task = asyncio.create_task(self.agent.run())
            for _ in range(200):  # until the page answers
                await asyncio.sleep(0.05)
                if task.done():
                    break
                try:
                    _r, w = await asyncio.open_connection("127.0.0.1", self.web_port)
                    w.close()
                    break
                except OSError:
                    continue
            self._ready.set()
            await task
        except BaseException as e:  # reported by start()
            self._error = e
            self._ready.set()
        finally:
            await server.stop()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the agent's loop thread (where the agent's state lives)."""
        assert self._loop is not None
        fut: Any = asyncio.run_coroutine_threadsafe(_call(fn), self._loop)
        return fut.result(10)

    def polls(self) -> dict[str, int]:
        return {row["meter"]: row["polls"]
                for row in self.call(lambda: self.agent.snapshot())}  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.request_stop()
        self._thread.join(30)
        self.broker.stop()


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()


def get(url: str, timeout: float = 10.0, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def chromium_path() -> str:
    """Debian's headless Chromium (``make system-packages`` installs it)."""
    for name in ("chromium-headless-shell", "chromium"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no Chromium: install Debian's chromium-headless-shell (make system-packages)")


# Chromium as root, offline: no sandbox (root), and none of its background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
