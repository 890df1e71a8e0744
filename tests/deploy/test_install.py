"""install.sh / uninstall.sh run for real into a throw-away root, with no network.

The root is a temporary directory with a minimal /etc/passwd, /etc/group and shadow files,
so ``useradd --prefix`` creates the service user there and ownership is set by number, as
on a gateway. Every install runs in a fresh network namespace (``unshare -n``: no
interface but a downed loopback), so a pip that tried the index would fail.

The tests run in file order and share one gateway root: fresh install, a second run that
changes nothing, a refused version switch without --upgrade, an upgrade whose first start
is checked with the real agent, two upgrades that roll back, uninstall, reinstall, purge.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

# Deploy tests (bundles, install into a throw-away root, brokers): `make test` only.
pytestmark = pytest.mark.slow

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SYSTEM_PATHS = ("/opt/loadwatch", "/etc/loadwatch", "/var/lib/loadwatch")


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Gateway:
    """A throw-away root and the commands a technician would run on it."""

    def __init__(self, root: Path, config: Path, python: str):
        self.root = root
        self.python = python
        self.config = config
        self.offline = _unshare_works()

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def run(self, script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOADWATCH_")}
        env.update(LOADWATCH_ROOT=str(self.root), LOADWATCH_PYTHON=self.python,
                   # Would be fatal if anything tried an index (install.sh also drops it).
                   PIP_INDEX_URL="http://127.0.0.1:9/simple")
        cmd = ["bash", str(DEPLOY / script), *args]
        if self.offline:
            cmd = ["unshare", "-n", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        proc.output = proc.stdout + proc.stderr  # type: ignore[attr-defined]
        return proc

    def ids(self, name: str) -> tuple[int, int]:
        for line in self.path("/etc/passwd").read_text().splitlines():
            f = line.split(":")
            if f[0] == name:
                return int(f[2]), int(f[3])
        raise KeyError(name)

    def current(self) -> str:
        return os.readlink(self.path("/opt/loadwatch/current"))

    def releases(self) -> list[str]:
        return sorted(os.listdir(self.path("/opt/loadwatch/releases")))

    def snapshot(self) -> dict[str, tuple]:
        """Everything an install could change: type, mode, owner, size, mtime, content."""
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                digest = ""
                if stat.S_ISREG(st.st_mode):
                    digest = hashlib.sha256(Path(p).read_bytes()).hexdigest()
                link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else ""
                out[os.path.relpath(p, self.root)] = (st.st_mode, st.st_uid, st.st_gid,
                                                      st.st_size, st.st_mtime_ns, digest, link)
        return out


def _seed_root(root: Path) -> None:
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\ndialout:x:20:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\ndialout:*::\n")
    os.chmod(etc / "shadow", 0o640)
    os.chmod(etc / "gshadow", 0o640)


def _closed_port() -> int:
    from hil.broker import free_port

    return free_port()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, gateway_python) -> Gateway:
    root = tmp_path_factory.mktemp("gateway-root")
    _seed_root(root)
    cfg = tmp_path_factory.mktemp("technician") / "loadwatch.toml"
    # Nothing listens on either port: the agent must stay up anyway (it retries the broker
    # and backs off from the meter), which is what the start check relies on.
    cfg.write_text(
        'site = "north-depot"\ngateway = "gw-0001"\n'
        'state_dir = "%s"\ncheckpoint_every_s = 3600\n'
        '[broker]\nhost = "127.0.0.1"\nport = %d\n'
        '[[buses]]\nname = "lan"\nkind = "tcp"\nhost = "127.0.0.1"\nport = %d\n'
        '[[meters]]\nid = "flat-1"\nbus = "lan"\nunit = 1\nprofile = "sdm630"\n'
        % (root / "var/lib/loadwatch", _closed_port(), _closed_port()))
    return Gateway(root, cfg, gateway_python)


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.output
    return proc.output


def _mode(p: Path) -> tuple[str, int, int]:
    st = os.lstat(p)
    return oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid


def test_fresh_install_creates_user_dirs_release_and_unit(gw, bundles):
    out = _ok(gw.run("install.sh", "--bundle", str(bundles["base"]), "--config", str(gw.config)))
    assert "skipping systemctl" in out
    uid, gid = gw.ids("loadwatch")
    assert uid != 0 and gid != 0
    passwd = gw.path("/etc/passwd").read_text()
    assert re.search(r"(?m)^loadwatch:x:%d:%d:[^:]*:/var/lib/loadwatch:/usr/sbin/nologin$"
                     % (uid, gid), passwd)
    dialout = next(ln for ln in gw.path("/etc/group").read_text().splitlines()
                   if ln.startswith("dialout:"))
    assert "loadwatch" in dialout.split(":")[3].split(",")
    assert _mode(gw.path("/etc/loadwatch")) == ("0o750", 0, gid)
    assert _mode(gw.path("/etc/loadwatch/loadwatch.toml")) == ("0o640", 0, gid)
    assert _mode(gw.path("/etc/loadwatch/secrets")) == ("0o750", 0, gid)
    assert _mode(gw.path("/var/lib/loadwatch")) == ("0o750", uid, gid)
    assert gw.path("/etc/loadwatch/loadwatch.toml").read_bytes() == gw.config.read_bytes()
    assert gw.current().startswith("releases/")
    exe = gw.path("/opt/loadwatch/current/bin/loadwatch")
    assert os.access(exe, os.X_OK)
    # The installed agent works from the installed config.
    check = subprocess.run([str(exe), "check-config",
                            str(gw.path("/etc/loadwatch/loadwatch.toml"))],
                           capture_output=True, text=True, timeout=60, cwd=gw.root)
    assert check.returncode == 0 and check.stdout.startswith("ok"), check.stderr
    unit = gw.path("/etc/systemd/system/loadwatch.service").read_text()
    assert "ExecStart=/opt/loadwatch/current/bin/loadwatch run --config " \
           "/etc/loadwatch/loadwatch.toml" in unit


def test_installed_unit_passes_systemd_analyze_verify(gw, tmp_path):
    """The unit as installed, with its paths pointed into the root (verify checks that
    ExecStart exists and is executable)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: `make setup` installs the systemd package"
    unit = gw.path("/etc/systemd/system/loadwatch.service").read_text()
    for p in SYSTEM_PATHS:
        unit = unit.replace(p, str(gw.path(p)))
    (tmp_path / "loadwatch.service").write_text(unit)
    proc = subprocess.run([analyze, "verify", str(tmp_path / "loadwatch.service")],
                          capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys too, with a warning: any output is a failure.
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), \
        proc.stdout + proc.stderr


def test_second_run_changes_nothing(gw, bundles):
    before = gw.snapshot()
    out = _ok(gw.run("install.sh", "--bundle", str(bundles["base"]), "--config", str(gw.config)))
    assert "nothing changed" in out
    assert gw.snapshot() == before


def test_other_version_needs_upgrade_flag(gw, bundles):
    before = gw.snapshot()
    proc = gw.run("install.sh", "--bundle", str(bundles["upgrade"]))
    assert proc.returncode == 2, proc.output
    assert "--upgrade" in proc.output
    assert gw.snapshot() == before


def test_upgrade_switches_release_keeps_config_and_state(gw, bundles):
    _, gid = gw.ids("loadwatch")
    old = gw.current()
    keep = gw.path("/var/lib/loadwatch/keep-me")
    keep.write_text("learned state")
    config_before = gw.path("/etc/loadwatch/loadwatch.toml").read_bytes()
    # A key dropped in with loose permissions is tightened to root:loadwatch 0640.
    key = gw.path("/etc/loadwatch/secrets/gw.key")
    key.write_text("not really a key")
    os.chmod(key, 0o644)
    # --start-check without systemd runs the new agent in the foreground for 5 s and stops
    # it with SIGTERM: it must stay up, then save its state on the way out.
    out = _ok(gw.run("install.sh", "--upgrade", "--bundle", str(bundles["upgrade"]),
                     "--start-check", "5"))
    assert "stayed up for 5s" in out
    assert gw.current().startswith("releases/999.0.1-")
    assert os.readlink(gw.path("/opt/loadwatch/previous")) == old
    assert gw.releases() == sorted([old.split("/")[1], gw.current().split("/")[1]])
    assert gw.path("/etc/loadwatch/loadwatch.toml").read_bytes() == config_before
    assert keep.read_text() == "learned state"
    assert gw.path("/var/lib/loadwatch/state.json").is_file(), "no checkpoint on SIGTERM"
    assert _mode(key) == ("0o640", 0, gid)
    version = subprocess.run(
        [str(gw.path("/opt/loadwatch/current/bin/python")), "-I", "-c",
         "import importlib.metadata as m; print(m.version('loadwatch'))"],
        capture_output=True, text=True, timeout=60, cwd=gw.root)
    assert version.stdout.strip() == "999.0.1"


def test_upgrade_rejecting_the_config_rolls_back(gw, bundles):
    before = gw.current()
    config_before = gw.path("/etc/loadwatch/loadwatch.toml").read_bytes()
    proc = gw.run("install.sh", "--upgrade", "--bundle", str(bundles["rejects"]))
    assert proc.returncode == 1, proc.output
    assert "this build rejects every config" in proc.output
    assert "upgrade refused" in proc.output
    assert gw.current() == before
    assert not any(r.startswith("999.0.2-") for r in gw.releases())
    assert gw.path("/etc/loadwatch/loadwatch.toml").read_bytes() == config_before


def test_upgrade_that_dies_at_start_rolls_back(gw, bundles):
    before = gw.current()
    previous = os.readlink(gw.path("/opt/loadwatch/previous"))
    unit = gw.path("/etc/systemd/system/loadwatch.service").read_text()
    proc = gw.run("install.sh", "--upgrade", "--bundle", str(bundles["crashes"]),
                  "--start-check", "5")
    assert proc.returncode == 1, proc.output
    assert "simulated start-up failure" in proc.output
    assert "rolled back to" in proc.output
    assert gw.current() == before
    assert os.readlink(gw.path("/opt/loadwatch/previous")) == previous
    assert "wrote %s" % gw.path("/etc/systemd/system/loadwatch.service") in proc.output
    assert gw.path("/etc/systemd/system/loadwatch.service").read_text() == unit
    assert not any(r.startswith("999.0.3-") for r in gw.releases())
    # The rolled-back release still runs.
    assert os.access(gw.path("/opt/loadwatch/current/bin/loadwatch"), os.X_OK)


def test_uninstall_keeps_config_state_and_user(gw):
    out = _ok(gw.run("uninstall.sh"))
    assert "kept /etc/loadwatch" in out
    assert not gw.path("/opt/loadwatch").exists()
    assert not gw.path("/etc/systemd/system/loadwatch.service").exists()
    assert gw.path("/etc/loadwatch/loadwatch.toml").is_file()
    assert gw.path("/var/lib/loadwatch/keep-me").read_text() == "learned state"
    gw.ids("loadwatch")  # the user is still there


def test_reinstall_reuses_kept_config_then_purge_removes_everything(gw, bundles):
    # No --config: the kept one is validated and used.
    out = _ok(gw.run("install.sh", "--bundle", str(bundles["base"])))
    assert "checking %s" % gw.path("/etc/loadwatch/loadwatch.toml") in out
    assert gw.path("/var/lib/loadwatch/keep-me").exists()
    _ok(gw.run("uninstall.sh", "--purge"))
    for p in SYSTEM_PATHS:
        assert not gw.path(p).exists(), p
    with pytest.raises(KeyError):
        gw.ids("loadwatch")
    groups = [ln.split(":")[0] for ln in gw.path("/etc/group").read_text().splitlines()]
    assert "loadwatch" not in groups and "dialout" in groups


def test_install_without_config_stops_before_the_service(tmp_path, bundles, gateway_python):
    _seed_root(tmp_path)
    g = Gateway(tmp_path, tmp_path / "none.toml", gateway_python)
    out = _ok(g.run("install.sh", "--bundle", str(bundles["base"])))
    assert "there is no config yet" in out
    assert g.path("/etc/loadwatch/loadwatch.toml.example").is_file()
    assert not g.path("/etc/loadwatch/loadwatch.toml").exists()
    assert not g.path("/etc/systemd/system/loadwatch.service").exists()


def test_damaged_bundle_is_refused(tmp_path, bundles, gateway_python):
    import tarfile

    src = tmp_path / "src"
    with tarfile.open(bundles["base"]) as t:
        t.extractall(src)
    top = next(src.iterdir())
    wheel = next((top / "wheels").glob("loadwatch-*.whl"))
    wheel.write_bytes(wheel.read_bytes()[:-10])
    _seed_root(tmp_path / "root")
    g = Gateway(tmp_path / "root", tmp_path / "none.toml", gateway_python)
    proc = g.run(str(top / "install.sh"))  # run from the unpacked bundle, as documented
    assert proc.returncode == 1, proc.output
    assert "checksums do not match" in proc.output
    assert not g.path("/opt/loadwatch").exists()



def test_bundle_for_another_python_is_refused(tmp_path, gateway_python, bundle_builder):
    """A technician who built for the wrong Python is told which one to build for, before
    anything is touched."""
    have = subprocess.run([gateway_python, "-c",
                           "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    other = "3.12" if have != "3.12" else "3.11"
    bundle = bundle_builder(other)
    _seed_root(tmp_path / "root")
    g = Gateway(tmp_path / "root", tmp_path / "none.toml", gateway_python)
    proc = g.run("install.sh", "--bundle", str(bundle))
    assert proc.returncode == 1, proc.output
    assert "bundle is for Python %s, this gateway has %s" % (other, have) in proc.output
    assert "--python-version %s" % have in proc.output
    assert not g.path("/opt/loadwatch").exists()
    assert "loadwatch" not in g.path("/etc/passwd").read_text()
