"""Web page and /metrics cost: the same agent with and without ``[web]``, side by side.

Two real agent processes (``loadwatch run``) poll the same 32 simulated SDM meters (real
pymodbus TCP servers in this process) every ``--poll-s`` seconds and publish to one real
Mosquitto on a free loopback port. One has ``[web]`` on, with every chart ring full (7 days
of 15-min slots per meter, written to its state before start, so the SVGs are as big as
they get), and a client in this process scrapes it: /metrics every 5 s (a Prometheus
scrape is usually 15-60 s), the gateway page and one meter page with its chart every 10 s,
the alerts page every 30 s. Each agent's CPU (utime+stime from /proc) is read over the same
window, and its RSS at the end.

    .venv/bin/python bench/web.py                  # 32 meters, 60 s window
    .venv/bin/python bench/web.py --meters 8 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.clock import Clock
from agent.web.history import History
from hil.broker import MosquittoBroker, free_port
from hil.loads import demo_households
from hil.meters import SimMeterServer, SimUnit

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICKS


def rss_mb(pid: int) -> float:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return math.nan


def config(broker: int, meters: int, units: list[SimUnit], state: Path, poll_s: float,
           web_port: int | None) -> str:
    lines = ['site = "bench"', 'gateway = "gw"', "state_dir = %s" % json.dumps(str(state)),
             "poll_s = %r" % poll_s, "telemetry_every_s = 900", "checkpoint_every_s = 300",
             "[broker]", 'host = "127.0.0.1"', "port = %d" % broker, "tls = false"]
    if web_port is not None:
        lines += ["[web]", 'listen = "127.0.0.1:%d"' % web_port]
    lines += ["[[buses]]", 'name = "street"', 'kind = "tcp"', 'host = "127.0.0.1"',
              "port = %d" % meters, "per_host_limit = 4"]
    for u in units:
        lines += ["[[meters]]", 'id = "%s"' % u.name, 'bus = "street"',
                  "unit = %d" % u.unit_id, 'profile = "%s"' % u.profile.name]
    return "\n".join(lines) + "\n"


def full_history(state: Path, meters: list[str]) -> None:
    """Every ring full: 7 days of 15-min slots with load, score, floor and baseline."""
    h = History(meters, 900.0)
    t0 = math.floor(time.time() / 900.0) * 900.0 - 7 * 86400.0
    for i, m in enumerate(meters):
        ring = h.meters[m]
        for k in range(ring.n):
            t = t0 + k * 900.0
            p = 300.0 + 200.0 * math.sin(t / 86400.0 * 2 * math.pi) + 10 * i
            ring.add_slot(t, p, 20.0 + k % 50, None)
    state.mkdir(parents=True, exist_ok=True)
    h.save(state)


class Meters:
    """The simulated meters on their own event loop thread."""

    def __init__(self, n: int):
        self.households = demo_households(n, seed=11)
        self.clock = Clock()
        self.units = [SimUnit(i + 1, h.profile, h.load, self.clock, name=h.meter)
                      for i, h in enumerate(self.households.meters)]
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = SimMeterServer(self.units, tcp=("127.0.0.1", 0))
        await server.start()
        self.port = server.port
        self._ready.set()
        await self._stop.wait()
        await server.stop()

    def start(self) -> Meters:
        self._thread.start()
        self._ready.wait(30)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def scrape(base: str, meters: list[str], seconds: float, stats: dict) -> None:
    """The page load: /metrics every 5 s, gateway and a meter page every 10 s, alerts 30 s."""
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < seconds:
        paths = ["/metrics"]
        if tick % 2 == 0:
            paths += ["/", "/meter/%s" % meters[(tick // 2) % len(meters)]]
        if tick % 6 == 0:
            paths.append("/alerts")
        for p in paths:
            t = time.perf_counter()
            with urllib.request.urlopen(base + p, timeout=10) as r:
                body = r.read()
            stats.setdefault(p.split("/")[1] or "gateway", []).append(
                (time.perf_counter() - t, len(body)))
        tick += 1
        time.sleep(max(0.0, start + tick * 5.0 - time.monotonic()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meters", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--poll-s", type=float, default=10.0)
    args = ap.parse_args()

    sim = Meters(args.meters).start()
    names = [u.name for u in sim.units]
    procs: dict[str, subprocess.Popen] = {}
    with tempfile.TemporaryDirectory() as tmp, MosquittoBroker() as broker:
        web_port = free_port()
        for name, port in (("without [web]", None), ("with [web]", web_port)):
            state = Path(tmp) / name.replace(" ", "_").strip("[]")
            if port is not None:
                full_history(state, names)
            cfg = Path(tmp) / ("%s.toml" % state.name)
            cfg.write_text(config(broker.port, sim.port, sim.units, state, args.poll_s, port))
            procs[name] = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "-c",
                                            str(cfg)], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(args.warmup)
            for name, p in procs.items():
                if p.poll() is not None:
                    print("agent %s exited: %s" % (name, p.stderr.read() if p.stderr else ""))
                    return 1
            stats: dict = {}
            cpu0 = {n: cpu_s(p.pid) for n, p in procs.items()}
            t0 = time.monotonic()
            scrape("http://127.0.0.1:%d" % web_port, names, args.seconds, stats)
            wall = time.monotonic() - t0
            cpu = {n: cpu_s(p.pid) - cpu0[n] for n, p in procs.items()}
            rss = {n: rss_mb(p.pid) for n, p in procs.items()}
        finally:
            for p in procs.values():
                p.terminate()
            for p in procs.values():
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            sim.stop()

    off, on = "without [web]", "with [web]"
    print("web page cost: %d meters polled every %gs, %.0f s window, the same load on both"
          % (args.meters, args.poll_s, wall))
    print("%-16s %12s %10s" % ("agent", "CPU (core)", "RSS"))
    for n in (off, on):
        print("%-16s %11.2f%% %7.1f MB" % (n, 100 * cpu[n] / wall, rss[n]))
    print("%-16s %11.2f%% %7.1f MB   (targets: < 5%% of a core, < 5 MB)"
          % ("extra for [web]", 100 * (cpu[on] - cpu[off]) / wall, rss[on] - rss[off]))
    print()
    print("%-10s %6s %12s %10s" % ("page", "loads", "median ms", "bytes"))
    for page, xs in sorted(stats.items()):
        ms = sorted(x[0] * 1000 for x in xs)
        print("%-10s %6d %12.1f %10d" % (page, len(xs), ms[len(ms) // 2], xs[-1][1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
