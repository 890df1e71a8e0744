"""``loadwatch firmware flash``: copy a build to a board with mpremote, verify, reset.

Every step is a plain ``mpremote`` command a technician could type, and every failure
says which step failed, what mpremote said, and what to check (cable, port, another
program holding the port, MicroPython version). After the copy the board itself hashes
every file (``hashlib.sha256`` on the device) and the hashes are compared with the build
manifest: a flaky USB cable or a full filesystem is caught here, not in the field.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

# Runs on the board: prints "<path> <sha256 hex>" per file, or "<path> missing".
_HASH_SNIPPET = """
import hashlib, binascii
for p in %r:
    try:
        h = hashlib.sha256()
        with open(p, 'rb') as f:
            while True:
                b = f.read(512)
                if not b:
                    break
                h.update(b)
        print(p, binascii.hexlify(h.digest()).decode())
    except OSError:
        print(p, 'missing')
"""
_MKDIR_SNIPPET = """
import os
for d in %r:
    try:
        os.mkdir(d)
    except OSError:
        pass
"""
# mpy version, platform, and whether floats are 64-bit (1.0 still visible next to a
# 2026 UNIX time: false with the 32-bit floats of stock ESP32/RP2040 builds).
_PROBE = ("import sys; x = 1767225600.0; "
          "print(sys.implementation._mpy & 0xff, sys.platform, int(x + 1.0 != x))")
FLOAT32_WARNING = (
    "WARNING: this board's MicroPython uses 32-bit floats: UNIX timestamps resolve to "
    "~128 s there and the detector's figures will not match the agent's. For results "
    "that match, build MicroPython with double-precision floats (ESP32: `make "
    "BOARD=ESP32_GENERIC MICROPY_FLOAT_IMPL=double`; RP2040: set MICROPY_FLOAT_IMPL to "
    "MICROPY_FLOAT_IMPL_DOUBLE in the board's mpconfigboard.h) and flash that first.")


class FlashError(RuntimeError):
    """A flashing problem phrased for the technician."""


def find_mpremote(explicit: str | None = None) -> str:
    if explicit:
        if Path(explicit).is_file():
            return explicit
        raise FlashError("mpremote not found at %s: install it with `pip install mpremote` "
                         "or pass --mpremote PATH" % explicit)
    local = Path(sys.executable).with_name("mpremote")
    if local.exists():
        return str(local)
    found = shutil.which("mpremote")
    if found:
        return found
    raise FlashError("mpremote not found on PATH: install it with `pip install mpremote` "
                     "(or pass --mpremote PATH)")


class Flasher:
    def __init__(self, port: str, mpremote: str | None = None, timeout_s: float = 60.0,
                 log: Callable[[str], None] = print):
        self.port = port
        self.tool = find_mpremote(mpremote)
        self.timeout_s = timeout_s
        self.log = log

    def run(self, step: str, *args: str) -> str:
        cmd = [self.tool, "connect", self.port, *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise FlashError("%s: mpremote did not finish in %.0f s on %s (is the board "
                             "stuck in a program? press reset and retry)"
                             % (step, self.timeout_s, self.port)) from None
        except OSError as e:
            raise FlashError("%s: cannot run %s: %s" % (step, self.tool, e)) from None
        if proc.returncode != 0:
            said = (proc.stderr.strip() or proc.stdout.strip() or "exit %d" % proc.returncode)
            raise FlashError("%s failed on %s: %s\n%s" % (step, self.port, said,
                                                          self._hint(said)))
        return proc.stdout

    def _hint(self, said: str) -> str:
        ports = ""
        try:
            ports = subprocess.run([self.tool, "connect", "list"], capture_output=True,
                                   text=True, timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
        lines = ["check: the board is plugged in with a data (not charge-only) cable and "
                 "runs MicroPython; no other program (a serial monitor, Thonny) holds %s;"
                 % self.port,
                 "serial ports mpremote can see now: %s" % (ports.replace("\n", "; ")
                                                           or "none")]
        if "no device found" in said or "failed to access" in said:
            lines.insert(0, "no board answered at %s." % self.port)
        return "\n".join(lines)


def _remote(path: str) -> str:
    return ":" + path


def flash(build_dir: str | Path, port: str, mpremote: str | None = None, reset: bool = True,
          with_umqtt: bool = False, log: Callable[[str], None] = print) -> dict:
    """Copy, verify and reset; returns {"files": n, "bytes": total, "verified": n}."""
    build = Path(build_dir)
    try:
        manifest = json.loads((build / "manifest.json").read_text())
    except FileNotFoundError:
        raise FlashError("%s has no manifest.json: run `loadwatch firmware build --out %s` "
                         "first" % (build, build)) from None
    if manifest.get("board") == "unix":
        raise FlashError("%s is a unix-port build (tests only); build for the board: "
                         "--board esp32 or --board rp2" % build)
    f = Flasher(port, mpremote, log=log)
    files = [e["path"] for e in manifest["files"]]
    missing = [p for p in files if not (build / p).is_file()]
    if missing:
        raise FlashError("build %s is incomplete (missing %s): rebuild it"
                         % (build, ", ".join(missing)))
    out = f.run("probe", "exec", _PROBE).split()
    log("board at %s: MicroPython mpy v%s on %s" % (port, out[0] if out else "?",
                                                   out[1] if len(out) > 1 else "?"))
    if len(out) > 2 and out[2] == "0":
        log(FLOAT32_WARNING)
    mpy_version = _mpy_version(build, files)
    if out and mpy_version is not None and out[0].isdigit() and int(out[0]) != mpy_version:
        raise FlashError("the board's MicroPython loads .mpy v%s but this build is v%d: "
                         "update the board's firmware or use the matching mpy-cross"
                         % (out[0], mpy_version))
    dirs = sorted({str(Path(p).parent) for p in files if "/" in p},
                  key=lambda d: d.count("/"))
    if dirs:
        f.run("create folders", "exec", _MKDIR_SNIPPET % (dirs,))
    args: list[str] = []
    for p in files:
        if args:
            args.append("+")
        args += ["fs", "cp", str(build / p), _remote(p)]
    log("copying %d files (%d bytes)" % (len(files), sum(e["bytes"]
                                                         for e in manifest["files"])))
    f.run("copy", *args)
    if with_umqtt:
        f.run("install umqtt.simple", "mip", "install", "umqtt.simple")
    got = {}
    for line in f.run("verify", "exec", _HASH_SNIPPET % (files,)).splitlines():
        parts = line.split()
        if len(parts) == 2:
            got[parts[0]] = parts[1]
    bad = [e["path"] for e in manifest["files"] if got.get(e["path"]) != e["sha256"]]
    if bad:
        raise FlashError("verify failed on %s: %s differ from the build (flash full? bad "
                         "cable?); nothing was reset, run flash again"
                         % (port, ", ".join(bad)))
    log("verified %d files by SHA-256 on the board" % len(files))
    if reset:
        f.run("reset", "reset")
        log("board reset: the gateway starts from main.py")
    return {"files": len(files), "bytes": sum(e["bytes"] for e in manifest["files"]),
            "verified": len(files)}


def _mpy_version(build: Path, files: list[str]) -> int | None:
    for p in files:
        if p.endswith(".mpy"):
            head = (build / p).read_bytes()[:2]
            if len(head) == 2 and head[0] == ord("M"):
                return head[1]
    return None
