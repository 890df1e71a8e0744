"""``scan`` and ``read`` as a technician meets real installations (issue 13 items 5, 7,
8, 9): a gateway that answers exception 11 for every empty unit id, a meter that ignores
the unit id, the default TCP range, JSON output, a config block to paste, a live view.
Real subprocesses against real pymodbus servers."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import pytest
from pollkit import sweep

from agent.clock import Clock
from agent.config import load_text
from agent.modbus.hints import HINT_NO_REPLY_TCP
from agent.modbus.poller import BusPoller
from agent.modbus.tools import DEFAULT_TCP_UNITS, common_first, parse_units
from agent.profiles import load_profile
from hil.loads.base import Constant
from hil.meters import SimMeterServer, SimUnit

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


async def cli(*argv: str) -> tuple[int, str, str]:
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", *argv, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(), 120)
    return p.returncode or 0, out.decode(), err.decode()


def test_common_ids_first() -> None:
    assert common_first([5, 100, 200, 1, 247, 11]) == [1, 5, 100, 247, 200, 11]
    assert common_first(parse_units("1-247"))[:12] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 247]


def test_scan_behind_a_gateway_that_answers_exception_11(arun) -> None:
    async def main() -> None:
        clock = Clock()
        units = [SimUnit(1, load_profile("sdm630"), Constant(1234.0, 0.93), clock),
                 SimUnit(7, load_profile("sdm120"), Constant(1234.0, 0.93), clock)]
        server = SimMeterServer(units, tcp=("127.0.0.1", 0), absent_exception=11)
        await server.start()
        host = ("--host", "127.0.0.1", "--tcp-port", str(server.port), "--timeout-ms", "200")
        try:
            code, out, err = await cli("scan", *host)
            assert code == 0, out + err
            rows = [ln.split()[:2] for ln in out.splitlines() if ln[:1].isdigit()
                    and "unit(s)" not in ln]
            assert rows == [["1", "sdm630"], ["7", "sdm120"]], out
            n = len(parse_units(DEFAULT_TCP_UNITS))
            assert "2 unit(s) found" in out and "(%d unit ids in" % n in out
            assert "--units 1-247 tries them all" in out
            assert "elapsed, ETA" in err
            # The block pastes into a config that loads.
            block = out.split("# paste into the agent's config (check ids and poll_s):\n")[1]
            cfg = tomllib.loads(block)
            assert [(m["unit"], m["profile"]) for m in cfg["meters"]] == [(1, "sdm630"),
                                                                          (7, "sdm120")]
            assert cfg["buses"][0]["kind"] == "tcp" and cfg["buses"][0]["port"] == server.port
            plan = load_text('site = "s"\ngateway = "g"\n[broker]\nhost = "127.0.0.1"\n'
                             + block, "pasted.toml")
            assert [m.id for m in plan.meters] == ["meter-1", "meter-7"]
            # --json: the same, machine-readable.
            code, out, _ = await cli("scan", *host, "--units", "1-8", "--json")
            doc = json.loads(out)
            assert code == 0 and [f["unit"] for f in doc["found"]] == [1, 7]
            assert doc["link"] == "tcp" and doc["units_tried"] == 8
            assert doc["one_device_ignores_unit_id"] is False and "[[meters]]" in doc["config"]
            # Nobody there: advice for TCP, no A/B wiring hint.
            code, out, _ = await cli("scan", *host, "--units", "20-22")
            assert code == 1 and HINT_NO_REPLY_TCP in out and "A/B" not in out
        finally:
            await server.stop()

    arun(main())


def test_scan_reports_one_device_that_ignores_the_unit_id(arun) -> None:
    async def main() -> None:
        clock = Clock()
        server = SimMeterServer([SimUnit(1, load_profile("sdm120"), Constant(1234.0, 0.93), clock)],
                                tcp=("127.0.0.1", 0), ignore_unit_id=True)
        await server.start()
        try:
            code, out, _ = await cli("scan", "--host", "127.0.0.1", "--tcp-port",
                                     str(server.port), "--units", "1-6")
            assert code == 0, out
            assert "ONE device that ignores the unit id" in out
            assert "1 unit(s) found" in out and out.count("[[meters]]") == 1
            code, out, _ = await cli("scan", "--host", "127.0.0.1", "--tcp-port",
                                     str(server.port), "--json")
            doc = json.loads(out)
            assert doc["one_device_ignores_unit_id"] is True and len(doc["found"]) == 1
        finally:
            await server.stop()

    arun(main())


def test_run_backs_off_a_unit_the_gateway_says_is_absent(arun) -> None:
    async def main() -> None:
        clock = Clock()
        server = SimMeterServer([SimUnit(1, load_profile("sdm120"), Constant(1234.0, 0.93), clock)],
                                tcp=("127.0.0.1", 0), absent_exception=11)
        await server.start()
        text = ('site = "s"\ngateway = "g"\npoll_s = 1\n[broker]\nhost = "127.0.0.1"\n'
                '[[buses]]\nname = "b"\nkind = "tcp"\nhost = "127.0.0.1"\nport = %d\n'
                '[[meters]]\nid = "here"\nbus = "b"\nunit = 1\nprofile = "sdm120"\n'
                '[[meters]]\nid = "gone"\nbus = "b"\nunit = 9\nprofile = "sdm120"\n'
                % server.port)
        health = {}
        poller = BusPoller(load_text(text, "t.toml").buses[0], clock, lambda raw: None,
                           lambda h: health.__setitem__(h.meter, h))
        try:
            await sweep(poller)
        finally:
            poller.close()
            await server.stop()
        gone = health["gone"]
        assert gone.state == "down" and gone.cause == "timeout" and gone.backoff_s > 0
        assert "exception 11" in gone.reason and "unit id" in gone.hint
        assert poller.meters["gone"].retry_at > 0  # skipped until its back-off expires
        assert health["here"].state == "ok"

    arun(main())


@pytest.mark.serial  # times a live view and its Ctrl-C: run alone
def test_read_json_repeat_is_a_live_view_until_ctrl_c(arun) -> None:
    async def main() -> None:
        clock = Clock()
        server = SimMeterServer([SimUnit(3, load_profile("sdm630"), Constant(1234.0, 0.93), clock)],
                                tcp=("127.0.0.1", 0))
        await server.start()
        try:
            p = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent.cli", "read", "--host", "127.0.0.1",
                "--tcp-port", str(server.port), "--unit", "3", "--profile", "sdm630",
                "--json", "--repeat", "0.2", stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            assert p.stdout is not None
            docs = [json.loads(await asyncio.wait_for(p.stdout.readline(), 30))
                    for _ in range(3)]
            p.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(p.communicate(), 30)
            assert p.returncode == 0 and "Traceback" not in err.decode(), err.decode()
            assert all(d["ok"] and d["values"]["p_w"] == {"value": 1234.0, "unit": "W",
                                                          "plausible": True} for d in docs)
            assert docs[0]["t"] < docs[1]["t"] < docs[2]["t"]
            code, out, _ = await cli("read", "--host", "127.0.0.1", "--tcp-port",
                                     str(server.port), "--unit", "3", "--profile", "sdm630",
                                     "--json")
            assert code == 0 and json.loads(out)["unit"] == 3
        finally:
            await server.stop()

    arun(main())
