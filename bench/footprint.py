"""Firmware footprint: bytecode size, heap per meter and at idle, time per sample.

    .venv/bin/python bench/footprint.py [--meters 1,8,32] [--days 3]

Builds the firmware (``firmware_bridge.build``) for esp32, rp2 and the unix port, then
runs the unix build's .mpy files in the real MicroPython unix port:

* **bytecode**: total .mpy bytes per board (target < 64 KB), split core / device app, for
  the default config (serial uplink, Modbus: what ``firmware build`` ships for it), and on
  the ESP32 also for the largest config (MQTT uplink, DL/T 645 meters) and for every
  module with line numbers (``--all-modules --lines``, what every build shipped before);
* **heap at idle**: ``gc.mem_alloc()`` after importing the app (modules are loaded into
  the heap on a board too, unless frozen into the firmware image);
* **heap per meter**: ``mem_alloc`` delta over N meters, each fed ``--days`` of 10-minute
  samples so the detector's day rings are full (target < 2 KB a meter);
* **heap per meter as the app boots**: ``App(config.json)`` with 20 meters against 4
  (fresh meters, their config loaded from JSON as on a board), per meter;
* **time per sample**: the device pipeline (register decode + detector + policy +
  telemetry slot + the uplink's JSON record) and the bare core, MicroPython beside
  CPython running the same core on the same samples.

Figures are for the unix port on this machine; a 240 MHz ESP32 is roughly 10-30x slower
per sample than a desktop unix port, which still leaves milliseconds per sample.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.policy import Policy  # noqa: E402
from agent.signature import Detector  # noqa: E402
from firmware_bridge import devconfig  # noqa: E402
from firmware_bridge.build import build  # noqa: E402

TARGET_MPY = 64 * 1024
TARGET_METER = 2048
T0 = 1767225600.0
STEP = 600.0

MP_SCRIPT = r"""
import gc, json, math, struct, time
gc.collect()
base = gc.mem_alloc()
import app, meter, uplink_serial, modbus_rtu, store, devclock
from agent.bridge import framing
gc.collect()
idle_serial = gc.mem_alloc()  # what the default build (serial uplink, Modbus) imports
from agent.publish import payloads
gc.collect()
idle = gc.mem_alloc()
ARGS = json.loads(%(args)r)
mcfg = ARGS["meter"]
T0 = ARGS["t0"]; STEP = ARGS["step"]; N_SAMPLES = ARGS["samples"]

def power(t, k):
    h = ((t - T0) %% 86400) / 3600.0
    p = 250.0 + 900.0 * math.exp(-((h - 19.0) ** 2) / 4.0) + 60.0 * math.sin(t / 700.0 + k)
    if t > T0 + 1.5 * 86400:
        p += 1400.0
    return p

def regs(p):
    w = struct.unpack(">HH", struct.pack(">f", p))
    pf = struct.unpack(">HH", struct.pack(">f", 0.95))
    e = struct.unpack(">HH", struct.pack(">f", 1000.0 + (p / 1000.0)))
    return list(w) + list(pf) + [0] * 6 + list(e)

def heap_per_meter(n, tel_s):
    gc.collect()
    before = gc.mem_alloc()
    ms = []
    for i in range(n):
        c = dict(mcfg); c["id"] = "m%%d" %% i
        ms.append(meter.Meter(c, tel_s))
    for j in range(N_SAMPLES):
        t = T0 + j * STEP
        for k in range(n):
            m = ms[k]
            v, q = m.decode(t, [(3, 0, regs(power(t, k)))], "")
            m.process(t, v, q)
    # The harness's own leftovers (the last meter's config copy, the last reading's
    # values) are not the meters' heap: drop them before counting.
    c = m = v = q = None
    gc.collect()
    per = (gc.mem_alloc() - before) / n
    ms = None
    gc.collect()
    return per

heap = {}
for n in ARGS["ns"]:
    heap[n] = heap_per_meter(n, 900.0)
serial_heap = heap_per_meter(ARGS["ns"][-1], 0.0)

# Time per sample: one meter, the full device pipeline and the bare core.
m = meter.Meter(dict(mcfg), 900.0)
samples = [(T0 + j * STEP, regs(power(T0 + j * STEP, 0))) for j in range(N_SAMPLES)]
gc.collect()
t_start = time.ticks_us()
for t, r in samples:
    v, q = m.decode(t, [(3, 0, r)], "")
    evs = m.process(t, v, q)
    rec = json.dumps({"k": "r", "m": m.id, "t": t, "v": v, "q": q})
pipeline_us = time.ticks_diff(time.ticks_us(), t_start) / len(samples)
from agent.signature import Detector
from agent.policy import Policy
d = Detector({}); p = Policy("x", {})
pw = [(t, power(t, 0)) for t, _ in samples]
gc.collect()
t_start = time.ticks_us()
for t, w in pw:
    s = d.update(t, w, 0.95)
    p.update(d.verdict(t))
core_us = time.ticks_diff(time.ticks_us(), t_start) / len(pw)
state_bytes = len(json.dumps({"detector": m.detector.state(), "policy": m.policy.state()}))
print(json.dumps({"idle": idle, "idle_serial": idle_serial, "modules": idle - base,
                  "heap": heap,
                  "serial_heap": serial_heap,
                  "pipeline_us": pipeline_us, "core_us": core_us, "state_bytes": state_bytes,
                  "score": d.score}))
"""


def cpython_core_us(samples: int) -> float:
    d, p = Detector({}), Policy("x", {})
    pw = []
    for j in range(samples):
        t = T0 + j * STEP
        h = ((t - T0) % 86400) / 3600.0
        w = 250.0 + 900.0 * math.exp(-((h - 19.0) ** 2) / 4.0) + 60.0 * math.sin(t / 700.0)
        if t > T0 + 1.5 * 86400:
            w += 1400.0
        pw.append((t, w))
    start = time.perf_counter()
    for t, w in pw:
        d.update(t, w, 0.95)
        p.update(d.verdict(t))
    return (time.perf_counter() - start) * 1e6 / len(pw)


# The largest config the build ships for: MQTT uplink (payload codec) and DL/T 645 meters
# (master and codec).
LARGEST = """
site = "s"
gateway = "g"
uplink = "mqtt"
[mqtt]
host = "broker.example"
[rs485]
protocol = "dlt645"
[[meters]]
id = "m1"
address = "000012340001"
profile = "dlt645_single"
"""


BOOT_TOML = """
site = "s"
gateway = "g"
uplink = "serial"
wdt_ms = 0
state_dir = "%(state)s"
[rs485]
port = "%(port)s"
[link]
port = "%(port)s"
"""
BOOT_MP = """
import gc, app
gc.collect()
b = gc.mem_alloc()
a = app.App(app.load_config("%s"))
gc.collect()
print(len(a.meters), gc.mem_alloc() - b)
"""


def app_boot_heap_per_meter(micropython: str, unix: Path) -> float:
    """Heap the device app holds per meter right after boot, its config included:
    App(config.json) with 20 meters against 4, on a pty for both UARTs."""
    import os

    master, slave = os.openpty()
    try:
        port = os.ttyname(slave)
        (unix / "flash").mkdir(exist_ok=True)
        text = BOOT_TOML % {"state": unix / "flash", "port": port} + "".join(
            '[[meters]]\nid = "meter-%d"\nunit = %d\nprofile = "generic"\n' % (i, i + 1)
            for i in range(20))
        cfg = devconfig.load_text(text, "boot")
        cfg["board"] = "unix"
        held = {}
        for n in (4, 20):
            c = dict(cfg, meters=cfg["meters"][:n])
            (unix / ("boot%d.json" % n)).write_text(json.dumps(c))
            proc = subprocess.run([micropython, "-X", "heapsize=8M", "-c",
                                   BOOT_MP % ("boot%d.json" % n)], capture_output=True,
                                  text=True, cwd=str(unix), env={"MICROPYPATH": "."},
                                  timeout=120, check=False)
            if proc.returncode != 0:
                raise RuntimeError(proc.stdout + proc.stderr)
            count, heap = (int(x) for x in proc.stdout.split()[-2:])
            if count != n:
                raise RuntimeError("the app made %d meters of %d" % (count, n))
            held[n] = heap
    finally:
        os.close(master)
        os.close(slave)
    return (held[20] - held[4]) / 16.0


def _label(n: int) -> str:
    # The first meter of a settings class also holds the tables the others share.
    return "heap per meter, %d meter%s" % (n, " (+shared)" if n == 1 else "s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", default="1,8,32", help="meter counts for the heap figure")
    ap.add_argument("--days", type=float, default=3.0, help="days of samples per meter")
    ap.add_argument("--micropython", default=str(Path(sys.executable).with_name(
        "micropython")))
    args = ap.parse_args()
    ns = [int(x) for x in args.meters.split(",")]
    samples = int(args.days * 86400 / STEP)
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {}
        for board in ("esp32", "rp2"):
            m = build(board, out=Path(tmp) / board)
            sizes[board] = (m["mpy_bytes"], m["core_mpy_bytes"])
        m = build("esp32", out=Path(tmp) / "largest",
                  device_config=devconfig.load_text(LARGEST, "largest"))
        sizes["esp32 mqtt+dlt645"] = (m["mpy_bytes"], m["core_mpy_bytes"])
        m = build("esp32", out=Path(tmp) / "all", everything=True, lines=True)
        sizes["esp32 all+lines"] = (m["mpy_bytes"], m["core_mpy_bytes"])
        # The heap figures import both uplinks' modules (as they always have): every module.
        build("unix", out=Path(tmp) / "unix", everything=True)
        meter_cfg = devconfig.load(None)["meters"][0]
        mp_args = json.dumps({"meter": meter_cfg, "t0": T0, "step": STEP,
                              "samples": samples, "ns": ns})
        proc = subprocess.run([args.micropython, "-X", "heapsize=8M", "-c",
                               MP_SCRIPT % {"args": mp_args}], capture_output=True,
                              text=True, cwd=str(Path(tmp) / "unix"),
                              env={"MICROPYPATH": "."}, timeout=600, check=False)
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return 1
        mp = json.loads(proc.stdout.strip().splitlines()[-1])
        boot = app_boot_heap_per_meter(args.micropython, Path(tmp) / "unix")
    cp_us = cpython_core_us(samples)
    print("firmware footprint (MicroPython unix port %s; %d samples a meter, every %.0f s)"
          % (subprocess.run([args.micropython, "-c", "import sys; print(sys.version)"],
                            capture_output=True, text=True).stdout.strip(), samples, STEP))
    print()
    print("%-44s %12s %12s %8s" % ("figure", "measured", "target", "ratio"))
    for board in sizes:
        total, core = sizes[board]
        print("%-44s %10d B %10d B %8.2f" % (".mpy total, %s (core %d B)" % (board, core),
                                              total, TARGET_MPY, total / TARGET_MPY))
    print("%-44s %10d B %12s %8s" % ("heap at idle (app imported)", mp["idle"], "-", "-"))
    print("%-44s %10d B %12s %8s" % ("  same, only the default build's modules",
                                     mp["idle_serial"], "-", "-"))
    for n in ns:
        per = mp["heap"][str(n)]
        print("%-44s %10.0f B %10d B %8.2f" % (_label(n), per,
                                              TARGET_METER, per / TARGET_METER))
    per = mp["serial_heap"]
    print("%-44s %10.0f B %10d B %8.2f" % ("  same, serial uplink (no slots)", per,
                                          TARGET_METER, per / TARGET_METER))
    print("%-44s %10.0f B %10d B %8.2f" % ("heap per meter as the app boots (fresh)", boot,
                                          TARGET_METER, boot / TARGET_METER))
    print("%-44s %10d B %12s %8s" % ("saved state per meter (JSON)", mp["state_bytes"], "-",
                                     "-"))
    print("%-44s %10.1f us %12s %8s" % ("device pipeline per sample (MP)", mp["pipeline_us"],
                                       "-", "-"))
    print("%-44s %10.1f us %10.1f us %8.2f" % ("core per sample: MP vs CPython",
                                               mp["core_us"], cp_us, mp["core_us"] / cp_us))
    return 0


if __name__ == "__main__":
    sys.exit(main())
