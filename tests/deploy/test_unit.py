"""deploy/systemd/loadwatch.service: systemd's own checks, and the sandbox we promise.

systemd-analyze comes with the `systemd` package that `make setup` installs, so a missing
one fails these tests instead of skipping them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Deploy tests (the unit file under systemd-analyze and a sandbox): `make test` only.
pytestmark = pytest.mark.slow

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "loadwatch.service"
EXEC = "/opt/loadwatch/current/bin/loadwatch"


def _analyze() -> str:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze missing: `make setup` installs the systemd package"
    return exe


def _settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_unit_passes_systemd_analyze_verify(tmp_path):
    # verify insists that ExecStart exists: point it at this tree's loadwatch.
    text = UNIT.read_text()
    assert EXEC in text
    (tmp_path / "loadwatch.service").write_text(
        text.replace(EXEC, str(Path(sys.executable).with_name("loadwatch"))))
    proc = subprocess.run([_analyze(), "verify", str(tmp_path / "loadwatch.service")],
                          capture_output=True, text=True, timeout=60)
    # Unknown or misspelt keys only warn (exit 0): any output at all is a failure.
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), \
        proc.stdout + proc.stderr


def test_security_exposure_is_at_most_2():
    proc = subprocess.run([_analyze(), "security", "--offline=yes", str(UNIT)],
                          capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for loadwatch\.service: (\d+\.\d)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) <= 2.0, proc.stdout


def test_unit_sandbox_and_lifecycle_settings():
    s = _settings()
    one = {k: v[-1] for k, v in s.items()}
    assert one["ExecStart"] == EXEC + " run --config /etc/loadwatch/loadwatch.toml"
    # Readings and alerts are stamped with the wall clock: start after it is synchronised.
    assert "time-sync.target" in one["After"].split()
    assert one["User"] == "loadwatch" and one["SupplementaryGroups"] == "dialout"
    assert one["Restart"] == "on-failure" and one["RestartPreventExitStatus"] == "2"
    assert int(one["StartLimitBurst"]) >= 1 and int(one["StartLimitIntervalSec"]) > 0
    # Long enough for checkpoint + the publisher's 5 s flush on SIGTERM.
    assert one["KillSignal"] == "SIGTERM" and int(one["TimeoutStopSec"]) >= 15
    assert one["ProtectSystem"] == "strict"
    assert s["ReadWritePaths"] == ["/var/lib/loadwatch"]
    assert one["DevicePolicy"] == "closed"
    assert all(d.startswith(("char-tty", "/dev/tty")) and d.endswith(" rw")
               for d in s["DeviceAllow"])
    assert one["CapabilityBoundingSet"] == "" and one["NoNewPrivileges"] == "yes"
    assert one["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"
    assert "@system-service" in s["SystemCallFilter"]
    for key in ("ProtectHome", "PrivateTmp", "ProtectKernelTunables", "ProtectKernelModules",
                "ProtectControlGroups", "RestrictNamespaces", "LockPersonality",
                "MemoryDenyWriteExecute", "RestrictRealtime", "RestrictSUIDSGID"):
        assert one[key] == "yes", key
