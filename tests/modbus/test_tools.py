"""``loadwatch scan`` and ``loadwatch read`` as a technician runs them (real subprocess,
real pymodbus servers, a real pty bus)."""

from __future__ import annotations

import asyncio
import sys

from agent.clock import Clock
from agent.modbus.tools import parse_units
from agent.profiles import available_profiles, load_profile
from hil.loads.base import Constant
from hil.meters import SimMeterServer, SimUnit
from hil.rs485 import LinkEmulator


async def cli(*argv: str) -> tuple[int, str, str]:
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", *argv, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(), 60)
    return p.returncode or 0, out.decode(), err.decode()


def test_parse_units() -> None:
    assert parse_units("1-3,7, 3") == [1, 2, 3, 7]
    for bad in ("0-3", "5-300", "x", ""):
        try:
            parse_units(bad)
        except ValueError as e:
            assert "--units" in str(e)
        else:
            raise AssertionError(bad)


def test_scan_and_read_over_tcp(arun) -> None:
    names = [n for n in available_profiles("modbus") if n != "generic"]

    async def main() -> None:
        clock = Clock()
        units = [SimUnit(i + 1, load_profile(n), Constant(1234.0, 0.93), clock)
                 for i, n in enumerate(names)]
        server = SimMeterServer(units, tcp=("127.0.0.1", 0))
        await server.start()
        port = str(server.port)
        try:
            code, out, err = await cli("scan", "--host", "127.0.0.1", "--tcp-port", port,
                                       "--units", "1-%d" % (len(names) + 1),
                                       "--timeout-ms", "150")
            assert code == 0, err
            rows = {int(line.split()[0]): line.split()[1] for line in out.splitlines()
                    if line[:1].isdigit() and "unit(s)" not in line}
            assert rows == {i + 1: n for i, n in enumerate(names)}, out
            assert "%d/%d units" % (len(names) + 1, len(names) + 1) in err  # progress bar
            unit = names.index("sdm630") + 1
            code, out, err = await cli("read", "--host", "127.0.0.1", "--tcp-port", port,
                                       "--unit", str(unit), "--profile", "sdm630")
            assert code == 0, out + err
            lines = {ln.split()[0]: ln.split() for ln in out.splitlines()[2:]}
            assert lines["p_w"][1:3] == ["1234.000", "W"]
            assert lines["e_import_kwh"][2] == "kWh" and lines["f_hz"][2] == "Hz"
            assert len(lines) == len(load_profile("sdm630").quantities)
            # Wrong profile: exception 2 and the hint.
            code, out, _ = await cli("read", "--host", "127.0.0.1", "--tcp-port", port,
                                     "--unit", str(names.index("adl400") + 1),
                                     "--profile", "dtsu666")
            assert code == 1 and "exception 2" in out and "wrong profile" in out
            # Wrong variant: exception 1 (function code) and the hint.
            code, out, _ = await cli("read", "--host", "127.0.0.1", "--tcp-port", port,
                                     "--unit", str(names.index("dtsu666") + 1),
                                     "--profile", "dtsu666_ir")
            assert (code == 1 and "exception 2" in out) or "exception 1" in out
        finally:
            await server.stop()

    arun(main())


def test_scan_and_read_on_a_serial_bus(arun) -> None:
    async def main() -> None:
        clock = Clock()
        link = LinkEmulator(baud=38400)
        await link.start()
        units = [SimUnit(3, load_profile("sdm630"), Constant(1234.0, 0.93), clock),
                 SimUnit(4, load_profile("em24"), Constant(1234.0, 0.93), clock)]
        server = SimMeterServer(units, rtu=link.device_port, baudrate=38400)
        await server.start()
        serial = ("--serial", link.master_port, "--baud", "38400", "--timeout-ms", "80")
        try:
            code, out, err = await cli("scan", *serial, "--units", "2-5")
            assert code == 0, out + err
            assert "3     sdm630" in out and "4     em24" in out
            # A silent unit: the wiring hints.
            code, out, _ = await cli("read", *serial, "--unit", "9", "--profile", "sdm630")
            assert code == 1 and "A/B" in out and "baud" in out and "parity" in out
            code, out, _ = await cli("scan", *serial, "--units", "6-7")
            assert code == 1 and "no unit answered" in out and "A/B" in out
        finally:
            await server.stop()
            await link.stop()

    arun(main())


def test_missing_port_and_bad_usage(arun) -> None:
    async def main() -> None:
        code, _, err = await cli("read", "--serial", "/dev/ttyNOPE9", "--unit", "1",
                                 "--profile", "sdm630")
        assert code == 1 and "/dev/ttyNOPE9 does not exist" in err
        code, _, err = await cli("scan", "--port", "/dev/ttyNOPE9")
        assert code == 1 and "does not exist" in err
        code, _, err = await cli("scan", "--port", "/dev/ttyNOPE9", "--units", "0-400")
        assert code == 2 and "--units" in err
        code, _, err = await cli("read", "--serial", "/dev/ttyNOPE9", "--unit", "1",
                                 "--profile", "nosuch")
        assert code == 2 and "no such shipped profile" in err

    arun(main())


def test_permission_error_is_explained() -> None:
    """A port the user may not open (run as nobody when the suite runs as root)."""
    import os
    import shutil
    import subprocess
    import tempfile

    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to drop root for this test"
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    folder = tempfile.mkdtemp(prefix="lw-perm-")  # 0700 by default
    try:
        os.chmod(folder, 0o755)
        port = os.path.join(folder, "ttyS9")
        with open(port, "wb"):
            pass
        os.chmod(port, 0o600)
        cmd = [sys.executable, "-m", "agent.cli", "read", "--unit", "1", "--profile",
               "sdm630", "--serial"]
        out = subprocess.run(prefix + cmd + [port], capture_output=True, text=True,
                             timeout=60, check=False)
        assert out.returncode == 1
        assert "no permission to open %s" % port in out.stderr and "dialout" in out.stderr
        # A folder the user may not enter reads as a permission problem, not "missing".
        os.chmod(folder, 0o700)
        out = subprocess.run(prefix + cmd + [port], capture_output=True, text=True,
                             timeout=60, check=False)
        assert out.returncode == 1 and "no permission to open" in out.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)
