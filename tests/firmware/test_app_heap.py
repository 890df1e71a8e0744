"""The device app's heap per meter as it boots from config.json, on the real MicroPython
unix port: the meters' tables are shared and their config is not kept twice.

json.load gives every meter its own copy of its field and read tables and settings
(~1 KB a meter on MicroPython: lists, dicts, boxed floats); an app that kept the loaded
config beside the meters held that for good, on top of bench/footprint.py's figure."""

from __future__ import annotations

import json
import os
import subprocess

from firmware_bridge.build import build
from firmware_bridge.devconfig import load_text

CONFIG = """
site = "s"
gateway = "g"
uplink = "serial"
wdt_ms = 0
state_dir = "{state}"
[rs485]
port = "{port}"
[link]
port = "{port}"
{meters}
"""
MP = """
import gc, app
gc.collect()
b = gc.mem_alloc()
a = app.App(app.load_config("%s"))
gc.collect()
print(len(a.meters), gc.mem_alloc() - b)
"""


def test_app_holds_under_2_kb_a_meter_with_its_config(tmp_path, micropython_bin):
    master, slave = os.openpty()
    try:
        port = os.ttyname(slave)
        meters = "".join('[[meters]]\nid = "meter-%d"\nunit = %d\nprofile = "generic"\n'
                         % (i, i + 1) for i in range(20))
        cfg = load_text(CONFIG.format(state=tmp_path / "flash", port=port, meters=meters),
                        "fw.toml")
        (tmp_path / "flash").mkdir()
        fw = tmp_path / "fw"
        build("unix", device_config=cfg, out=fw)
        held = {}
        for n in (4, 20):
            c = json.loads((fw / "config.json").read_text())
            c["meters"] = c["meters"][:n]
            (fw / ("config%d.json" % n)).write_text(json.dumps(c))
            proc = subprocess.run([micropython_bin, "-X", "heapsize=4M", "-c",
                                   MP % ("config%d.json" % n)], capture_output=True,
                                  text=True, cwd=fw, env={"MICROPYPATH": "."}, timeout=60,
                                  check=False)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            count, heap = (int(x) for x in proc.stdout.split()[-2:])
            assert count == n
            held[n] = heap
    finally:
        os.close(master)
        os.close(slave)
    per_meter = (held[20] - held[4]) / 16
    # Fresh meters (nothing learned yet) hold ~1.7 KB; with each meter's loaded config
    # kept too it was ~2.7 KB.
    assert per_meter < 2048, held
