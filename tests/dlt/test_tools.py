"""``loadwatch read/scan --protocol dlt645`` as a technician runs them (the real command
in a subprocess) against simulated meters on a paced line and behind a TCP gateway."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from agent.dlt645.tools import parse_addresses

from .rig import Rig

LOADWATCH = str(Path(sys.executable).with_name("loadwatch"))


async def run(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(LOADWATCH, *argv,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


def serial(rig: Rig) -> list[str]:
    # a pty takes no parity setting: the link emulator paces 8E1 characters anyway
    return ["--serial", rig.link.master_port, "--parity", "N"]


def test_read_prints_every_quantity_with_its_di(arun) -> None:
    async def main() -> None:
        async with Rig(2) as rig:
            code, out, err = await run("read", "--protocol", "dlt645", "--address",
                                       rig.meter(2).address, *serial(rig))
        assert code == 0, out + err
        assert "address 000012340002" in out and "profile dlt645_single" in out
        p_line = next(line for line in out.splitlines() if line.startswith("p_w "))
        assert "500.0000" in p_line and "02030000 XX.XXXX" in p_line
        assert "e_import_kwh" in out and "problem" not in out

    arun(main())


def test_read_names_an_unsupported_di_and_a_silent_meter(arun) -> None:
    async def main() -> None:
        async with Rig(1, gateway=True) as rig:
            rig.meter(1).set_fault("unsupported", di="02040000")
            where = ["--host", "127.0.0.1", "--tcp-port", str(rig.gateway.port)]
            code, out, _ = await run("read", "--protocol", "dlt645", "--address",
                                     rig.meter(1).address, *where)
            assert code == 1
            assert "DI 02040000: error 0x02: no such data (DI not supported)" in out
            assert "p_w " in out  # the rest was still read
            code, out, _ = await run("read", "--protocol", "dlt645", "--address",
                                     "000099999999", "--timeout-ms", "300", *where)
            assert code == 1 and "no reply: check the A/B wires" in out

    arun(main())


def test_read_refuses_a_bad_address_before_touching_the_line() -> None:
    code, out, err = asyncio.run(run("read", "--protocol", "dlt645", "--address",
                                     "12345678", "--serial", "/dev/null"))
    assert code == 2 and "not a 12-digit DL/T 645 address" in err and not out


def test_modbus_only_options_are_refused_not_ignored() -> None:
    code, _, err = asyncio.run(run("scan", "--protocol", "dlt645", "--serial", "/dev/null",
                                   "--units", "1-5"))
    assert code == 2 and "--units not available with --protocol dlt645 (use --addresses)" \
        in err
    code, _, err = asyncio.run(run("read", "--protocol", "dlt645", "--serial", "/dev/null",
                                   "--address", "000012345678", "--json"))
    assert code == 2 and "--json" in err, err


def test_scan_broadcast_finds_the_meter_alone_on_its_line(arun) -> None:
    async def main() -> None:
        async with Rig(1) as rig:
            code, out, err = await run("scan", "--protocol", "dlt645", *serial(rig))
        assert code == 0, out + err
        assert re.search(r"^000012340001  V=2\d\d\.\d V$", out, re.M), out
        assert "read-address broadcast" in out

    arun(main())


def test_scan_broadcast_on_a_shared_line_says_use_addresses(arun) -> None:
    async def main() -> None:
        async with Rig(3) as rig:
            code, out, _ = await run("scan", "--protocol", "dlt645", *serial(rig))
        assert code == 1 and "collide" in out and "--addresses" in out

    arun(main())


def test_scan_a_range_with_progress_and_eta(arun) -> None:
    async def main() -> None:
        async with Rig(3, gateway=True) as rig:
            rig.meter(2).set_fault("silent")
            code, out, err = await run("scan", "--protocol", "dlt645", "--host", "127.0.0.1",
                                       "--tcp-port", str(rig.gateway.port), "--timeout-ms",
                                       "300", "--addresses",
                                       "000012340000-000012340004")
        assert code == 0, out + err
        assert "5/5 addresses" in err and "ETA" in err
        found = re.findall(r"^(\d{12})  V=", out, re.M)
        assert found == ["000012340001", "000012340003"]
        assert "2 meter(s) found" in out

    arun(main())


def test_address_lists_and_ranges() -> None:
    assert parse_addresses("000000000009-000000000011,000000000001") == [
        "000000000001", "000000000009", "000000000010", "000000000011"]
    for bad, msg in (("12", "12-digit"), ("000000000002-000000000001", "backwards"),
                     ("000000000000-000001000000", "narrow the range")):
        with pytest.raises(ValueError, match=msg):
            parse_addresses(bad)
