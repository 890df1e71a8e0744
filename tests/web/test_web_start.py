"""Starting the status page: a taken port is a one-line error, not a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

from hil.broker import free_port

from .rig import ROOT


def test_a_taken_port_stops_the_agent_with_one_line(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cfg = tmp_path / "lw.toml"
        cfg.write_text(
            'site = "s"\ngateway = "g"\nstate_dir = "state"\n'
            '[broker]\nhost = "127.0.0.1"\nport = %d\n[web]\nlisten = "127.0.0.1:%d"\n'
            '[[buses]]\nname = "b"\nkind = "tcp"\nhost = "127.0.0.1"\nport = %d\n'
            '[[meters]]\nid = "m"\nbus = "b"\nprofile = "sdm120"\n'
            % (free_port(), port, free_port()))
        out = subprocess.run([sys.executable, "-m", "agent.cli", "run", "-c", str(cfg)],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 1, out.stderr
    lines = [x for x in out.stderr.splitlines() if x.strip()]
    assert lines[-1] == "loadwatch: web: cannot listen on 127.0.0.1:%d: Address already in " \
        "use" % port, out.stderr
    assert "Traceback" not in out.stderr
    # It stopped cleanly: the status page says so.
    assert '"running":false' in (tmp_path / "state" / "status.json").read_text()
