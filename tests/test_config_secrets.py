"""Secrets and TLS files in the config (issue 11 smaller items, issue 13 items 3 and 14):
an inline password and a password sent in clear text are warned about, ``check-config``
and ``status`` show ``password: (set)`` and never the password, and a CA file that cannot
be used is named by its path, at check time and at connect time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent.backoff import Backoff
from agent.cli import main
from agent.config import BrokerSettings, ConfigError, load
from agent.publish.codec import Codec
from agent.publish.mqtt import Publisher
from agent.publish.outbox import Outbox
from agent.status import render

SECRET = "s3cret-Pa55"


def write_config(d: Path, broker: str) -> Path:
    p = d / "loadwatch.toml"
    p.write_text('site = "s1"\ngateway = "g1"\nstate_dir = "state"\n[broker]\n%s\n'
                 '[[buses]]\nname = "b"\nkind = "tcp"\nhost = "127.0.0.1"\n'
                 '[[meters]]\nid = "m1"\nbus = "b"\nunit = 1\nprofile = "sdm630"\n' % broker)
    return p


def check_config(path: Path, capsys) -> tuple[int, str, str]:
    code = main(["check-config", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_an_inline_password_is_warned_about_and_never_printed(tmp_path, capsys) -> None:
    cfg = write_config(tmp_path, 'host = "127.0.0.1"\nusername = "gw1"\npassword = "%s"'
                       % SECRET)
    code, out, err = check_config(cfg, capsys)
    assert code == 0
    assert "config warning: broker.password" in err and str(cfg) in err
    assert "password_file" in err
    assert "broker user 'gw1', password: (set)" in out
    assert SECRET not in out + err


def test_a_password_file_gives_no_warning_and_shows_set(tmp_path, capsys) -> None:
    (tmp_path / "pw").write_text(SECRET + "\n")
    cfg = write_config(tmp_path, 'host = "127.0.0.1"\nusername = "gw1"\npassword_file = "pw"')
    code, out, err = check_config(cfg, capsys)
    assert code == 0 and err == ""
    assert "password: (set)" in out and SECRET not in out
    cfg = write_config(tmp_path, 'host = "127.0.0.1"')
    code, out, err = check_config(cfg, capsys)
    assert "broker user (none), password: (none)" in out


@pytest.mark.parametrize("host, tls, warned", [
    ("broker.example", "false", True),
    ("192.0.2.10", "false", True),
    ("broker.example", "true", False),
    ("127.0.0.1", "false", False),
    ("localhost", "false", False),
])
def test_a_password_in_clear_text_to_a_remote_broker_is_warned_about(tmp_path, host, tls,
                                                                     warned) -> None:
    (tmp_path / "pw").write_text(SECRET)
    plan = load(write_config(tmp_path, 'host = "%s"\ntls = %s\nusername = "gw1"\n'
                             'password_file = "pw"' % (host, tls)))
    clear = [w for w in plan.warnings if "clear text" in w]
    assert bool(clear) == warned, plan.warnings
    if warned:
        assert "broker.tls" in clear[0] and host in clear[0] and "'gw1'" in clear[0]
        assert SECRET not in clear[0]


def test_run_logs_the_warnings_at_start(tmp_path) -> None:
    # state_dir is a file, so the agent stops at once (before any network), after the
    # start-up lines: the warning must be among them.
    (tmp_path / "state").write_text("not a directory")
    cfg = write_config(tmp_path, 'host = "broker.example"\ntls = false\nusername = "gw1"\n'
                       'password = "%s"' % SECRET)
    out = subprocess.run([sys.executable, "-m", "agent.cli", "run", "-c", str(cfg)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert "config warning: broker.password" in out.stderr, out.stderr[-2000:]
    assert "clear text" in out.stderr
    assert SECRET not in out.stdout + out.stderr


def test_status_shows_the_password_as_set() -> None:
    data = {"site": "s1", "gateway": "g1", "written": time.time(), "running": True,
            "broker": {"host": "b", "port": 8883, "connected": True, "username": "gw1",
                       "password": "(set)"}, "meters": []}
    assert "broker b:8883 connected, user 'gw1', password: (set)" in render(data, time.time())


def test_a_ca_file_that_is_not_a_certificate_is_named(tmp_path) -> None:
    (tmp_path / "ca.crt").write_text("this is not PEM\n")
    with pytest.raises(ConfigError) as err:
        load(write_config(tmp_path, 'host = "broker.example"\nca_file = "ca.crt"'))
    msg = str(err.value)
    assert "broker.ca_file" in msg and str(tmp_path / "ca.crt") in msg and "PEM" in msg


def test_a_ca_file_the_agent_may_not_read_is_named() -> None:
    """As the unprivileged user the service runs as (setpriv when the suite is root)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to drop root for this test"
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    folder = Path(tempfile.mkdtemp(prefix="lw-ca-"))
    try:
        os.chmod(folder, 0o755)
        ca = folder / "ca.crt"
        ca.write_text("-----BEGIN CERTIFICATE-----\n")
        os.chmod(ca, 0o600)
        cfg = write_config(folder, 'host = "broker.example"\nca_file = "ca.crt"')
        os.chmod(cfg, 0o644)
        out = subprocess.run(prefix + [sys.executable, "-m", "agent.cli", "check-config",
                                       str(cfg)], capture_output=True, text=True, timeout=60,
                             check=False)
        assert out.returncode == 2, out
        assert "broker.ca_file: cannot read %s: Permission denied" % ca in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_ca_file_spoilt_after_the_check_is_named_at_connect(tmp_path) -> None:
    (tmp_path / "ca.crt").write_text("garbage, replaced after check-config\n")
    settings = BrokerSettings(host="127.0.0.1", port=1, client_id="gw", tls=True,
                              prefix="lw/v1/s1/g1", ca_file=str(tmp_path / "ca.crt"))
    outbox = Outbox(tmp_path / "o.db", 1_000_000)
    pub = Publisher(settings, outbox, Codec("lw/v1/s1/g1", "s1", "g1"),
                    backoff=Backoff(5.0, 5.0))
    pub.start()
    try:
        deadline = time.monotonic() + 10
        while not pub.last_error and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        pub.stop(0.5)
        outbox.close()
    assert pub.error_kind == "tls"
    assert "ca_file %s" % (tmp_path / "ca.crt") in pub.last_error, pub.last_error
