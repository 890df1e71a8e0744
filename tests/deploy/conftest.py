"""Fixtures for the deploy tests: bundles built once per session, a PKI from mkcert.sh.

Building a bundle (a wheel build plus pip downloads) takes seconds, so every bundle the
tests need is built once per session: the current tree, and three copies of it with a
changed version (a good upgrade, one whose ``check-config`` rejects every config, one that
dies at start). Dependencies come from the package index configured on this machine, as on
a technician's connected machine; the *installs* run with no network at all.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# Appended to agent/config.py of the "rejects" build: every config is refused, as a new
# version with a stricter schema would refuse an old config.
REJECT_ALL = '''

def load(path):  # test build: this version rejects every config
    raise ConfigError("", "this build rejects every config", str(path))
'''
# Appended to agent/cli.py of the "crashes" build: the agent dies right after starting.
# That build also ships a changed unit file, which a rollback must put back.
CRASH_ON_RUN = '''

def cmd_run(args):  # test build: dies at start, as a release with a broken import would
    print("loadwatch: simulated start-up failure", file=sys.stderr)
    return 1
'''


def _gateway_python() -> str:
    """The interpreter a gateway would have: Debian's python3 if present."""
    for cand in ("/usr/bin/python3", getattr(sys, "_base_executable", ""), sys.executable):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise RuntimeError("no python3")


@pytest.fixture(scope="session")
def gateway_python() -> str:
    """The gateway's python3 (LOADWATCH_PYTHON for install.sh)."""
    return _gateway_python()


def python_version(python: str) -> str:
    out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _copy_source(dest: Path, version: str, patches: dict[str, str]) -> Path:
    """A copy of the source tree with ``version`` in setup.cfg and text appended to files."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".venv", ".git", "build",
                                    "dist", ".pytest_cache", ".ruff_cache", ".hypothesis")
    dest.mkdir(parents=True)
    for name in ("setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in", "setup.py"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    for name in ("agent", "hil", "firmware_bridge", "deploy"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    cfg = dest / "setup.cfg"
    text, n = re.subn(r"(?m)^version\s*=.*$", "version = %s" % version, cfg.read_text())
    assert n == 1, "setup.cfg has no version line"
    cfg.write_text(text)
    for rel, extra in patches.items():
        with open(dest / rel, "a") as f:
            f.write(extra)
    return dest


def _no_isolation_builder() -> list[str]:
    """build-bundle.sh options for a quicker wheel build, when some interpreter here has
    setuptools and wheel installed (Debian's python3 with python3-wheel); else none."""
    for python in ("/usr/bin/python3", sys.executable):
        probe = subprocess.run([python, "-c", "import setuptools, wheel, pip"],
                               capture_output=True, timeout=60)
        if probe.returncode == 0:
            return ["--python", python, "--no-build-isolation"]
    return ["--python", sys.executable]


def build_bundle(source: Path, out: Path, pyver: str, extra: list[str]) -> Path:
    proc = subprocess.run(
        ["bash", str(DEPLOY / "build-bundle.sh"), "--source", str(source), "--out", str(out),
         "--python-version", pyver, *extra],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, "build-bundle.sh failed:\n%s\n%s" % (proc.stdout, proc.stderr)
    m = re.search(r"^bundle: (\S+) \((\d+) bytes", proc.stdout, re.M)
    assert m, proc.stdout
    path = Path(m.group(1))
    assert path.is_file() and path.stat().st_size == int(m.group(2))
    return path


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """name -> bundle: base (this tree), upgrade (0.1.1), rejects (0.1.2), crashes (0.1.3)."""
    base = tmp_path_factory.mktemp("bundles")
    pyver = python_version(_gateway_python())
    variants = {
        "upgrade": ("999.0.1", {}),
        "rejects": ("999.0.2", {"agent/config.py": REJECT_ALL}),
        "crashes": ("999.0.3", {"agent/cli.py": CRASH_ON_RUN,
                                "deploy/systemd/loadwatch.service": "# changed in 999.0.3\n"}),
    }
    sources = {"base": ROOT}  # built straight from the work tree, as a technician would
    for name, (version, patches) in variants.items():
        sources[name] = _copy_source(base / ("src-" + name), version, patches)
    # The base bundle the way a technician builds it (a fresh build environment); the
    # variants the quicker way. One after the other: side by side was slower on 2 cores.
    quick = _no_isolation_builder()
    out = {name: build_bundle(src, base / ("out-" + name), pyver,
                              ["--python", sys.executable] if name == "base" else quick)
           for name, src in sources.items()}
    return out


@pytest.fixture
def bundle_builder(tmp_path):
    """bundle_builder(python_version) -> a bundle of this tree for that Python."""
    def build(pyver: str) -> Path:
        return build_bundle(ROOT, tmp_path / "out", pyver, _no_isolation_builder())
    return build


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    """CA, broker, two gateways of two sites and a utility, minted by deploy/mkcert.sh."""
    d = tmp_path_factory.mktemp("pki")
    mk = str(DEPLOY / "mkcert.sh")
    for args in (["ca"], ["server"], ["gateway", "north-depot", "gw-0001"],
                 ["gateway", "south-yard", "gw-0001"], ["utility", "utility-ops"]):
        proc = subprocess.run(["sh", mk, "-d", str(d), *args], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
    return d
