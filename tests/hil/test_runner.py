"""The scenario parser's errors, the runner's judging rules and the CLI's exit codes.

The full scenario runs live in test_scenarios.py; here the cases are small and fast.
"""

from __future__ import annotations

import argparse
import asyncio

import pytest

from agent.model import Event
from hil.cli import add_hil_arguments, hil_main
from hil.judge import Observer, Report, judge
from hil.scenario import DAY, ScenarioError, load, parse_text, shipped

BASE = """
[scenario]
name = "t"
[timeline]
days = 6.0
[[buses]]
name = "b"
kind = "tcp"
[[meters]]
id = "m-{n}"
count = 3
bus = "b"
profile = "sdm120"
"""


def parse(extra: str = "", base: str = BASE):
    return parse_text(base + extra, "x.toml")


def test_shipped_scenarios_parse() -> None:
    names = shipped()
    for want in ("street-gpu", "village-bus", "heatpump-winter", "night-miner",
                 "broker-outage"):
        assert want in names
    for name in names:
        sc = load(name)
        assert sc.name == name and sc.meters and sc.days > 0


def test_groups_expand_with_consecutive_units() -> None:
    sc = parse("[[loads]]\nmeter = \"m-2\"\nminer = {kind = \"s9\", from_day = 2}\n")
    assert [(m.id, m.unit) for m in sc.meters] == [("m-1", 1), ("m-2", 2), ("m-3", 3)]
    assert sc.meters[1].miner.kind == "s9" and sc.meters[1].miner.from_day == 2.0
    assert sc.speed == pytest.approx(6 * DAY / 60.0)


@pytest.mark.parametrize("extra,message", [
    ("[[loads]]\nmeter = \"m-9\"\n",
     "scenario error: loads[0].meter: 'm-9' is not a meter of this scenario in x.toml"),
    ("[[loads]]\nmeter = \"m-1\"\nappliances = [{kind = \"ev\", form_day = 2}]\n",
     "scenario error: loads[0].appliances[0].form_day: unknown key (typo?); known keys here: "
     "days_per_week, from_day, kind, rated_w, schedule, to_day in x.toml"),
    ("[[loads]]\nmeter = \"m-1\"\nminer = {kind = \"s9\", from_day = -1}\n",
     "scenario error: loads[0].miner.from_day: -1.0 is below the minimum 0.0 in x.toml"),
    ("[[loads]]\nmeter = \"m-1\"\nappliances = [{kind = \"sauna\"}]\n",
     "scenario error: loads[0].appliances[0].kind: 'sauna' is not an appliance"),
    ("[[faults]]\nkind = \"crc\"\nbus = \"b\"\nrate = 0.02\n",
     "scenario error: faults[0].bus: CRC faults need an rtu bus"),
    ("[[faults]]\nkind = \"dead\"\n", "scenario error: faults[0].meter: is required in x.toml"),
    ("[[expect.alerts]]\nmeter = \"m-1\"\ndetected = \"yes\"\n",
     "scenario error: expect.alerts[0].detected: 'yes' must be true or false in x.toml"),
    ("[[expect.health]]\nmeter = \"m-1\"\nstate = \"dead\"\n",
     "scenario error: expect.health[0].state: 'dead' is not one of ok|degraded|down"),
    ("[[meters]]\nid = \"m-1\"\nbus = \"b\"\nunit = 9\nprofile = \"sdm120\"\n",
     "scenario error: meters[1].id: 'm-1' is used by another meter in x.toml"),
    ("[[meters]]\nid = \"z\"\nbus = \"b\"\nunit = 2\nprofile = \"sdm120\"\n",
     "scenario error: meters[1].unit: unit 2 is already used on bus b in x.toml"),
    ("[[meters]]\nid = \"z\"\nbus = \"nope\"\nprofile = \"sdm120\"\n",
     "scenario error: meters[1].bus: 'nope' is not a bus defined in [[buses]]"),
    ("[[meters]]\nid = \"z\"\nbus = \"b\"\nunit = 7\nprofile = \"x\"\nhousehold = \"sgsc\"\n",
     "scenario error: meters[1].household: 'sgsc' must be auto, synthetic, sgsc:<n>"),
    ("speed = 3\n", "scenario error: meters[0].speed: unknown key (typo?)"),
])
def test_errors_name_the_key_and_the_file(extra: str, message: str) -> None:
    with pytest.raises(ScenarioError) as e:
        parse(extra)
    assert str(e.value).startswith(message), str(e.value)


def test_not_toml_and_missing_file(tmp_path) -> None:
    with pytest.raises(ScenarioError, match=r"^scenario error: not valid TOML: .* in x.toml"):
        parse_text("[scenario\n", "x.toml")
    with pytest.raises(ScenarioError, match=r"file not found .*street-gpu"):
        load(tmp_path / "nope.toml")


def alert(meter: str, kind: str, t: float, id: str) -> dict:
    return {"topic": "p/meter/%s/alert" % meter,
            "payload": {"id": id, "kind": kind, "meter": meter, "t": t}}


def health(meter: str, state: str, t: float, id: str) -> dict:
    return {"topic": "p/meter/%s/health" % meter,
            "payload": {"id": id, "kind": "health", "meter": meter, "t": t, "state": state}}


def judged(sc, received, emitted=()):
    obs = Observer(sc)
    for ev in emitted:
        obs.on_event(ev)
    rep = Report(sc)
    judge(sc, rep, received, obs, sc.end)
    return rep


EXPECT = """
[[loads]]
meter = "m-2"
miner = {kind = "s9", from_day = 2}
[expect]
false_alarms = 0
[[expect.alerts]]
meter = "m-2"
detected = true
from_day = 2.0
to_day = 5.0
[[expect.alerts]]
meter = "m-3"
detected = false
[[expect.health]]
meter = "m-1"
state = "down"
by_day = 1.0
"""


def test_judge_passes_exactly_when_expectations_hold() -> None:
    sc = parse(EXPECT)
    s = sc.start
    good = [alert("m-2", "raised", s + 3.5 * DAY, "a1"), health("m-1", "down", s + 0.5 * DAY,
                                                                 "h1")]
    emitted = [Event("raised", "m-2", s + 3.5 * DAY, "a1"),
               Event("health", "m-1", s + 0.5 * DAY, "h1")]
    rep = judged(sc, good, emitted)
    assert rep.passed, rep.text()
    assert "raised day 3.50, 36.0 h after onset" in rep.text()

    late = judged(sc, [alert("m-2", "raised", s + 5.5 * DAY, "a1"), good[1]])
    assert not late.passed and "OUTSIDE WINDOW" in late.text()
    missed = judged(sc, [good[1]])
    assert not missed.passed and "MISSED" in missed.text()
    # A documented miss that is detected after all fails too: the scenario must be updated.
    surprise = judged(sc, good + [alert("m-3", "raised", s + 4 * DAY, "a2")])
    assert not surprise.passed and "UNEXPECTED ALERT" in surprise.text()
    # An alert on the miner meter before the onset is a false alarm.
    early = judged(sc, good + [alert("m-2", "raised", s + 1 * DAY, "a0")])
    assert early.false_alarms == ["m-2 day 1.00"] and not early.passed
    other = judged(sc, good + [alert("m-1", "raised", s + 4 * DAY, "a3")])
    assert other.false_alarms == ["m-1 day 4.00"] and not other.passed
    no_health = judged(sc, [good[0]])
    assert not no_health.passed and "not seen" in no_health.text()


def test_judge_counts_emitted_but_not_received_as_lost() -> None:
    sc = parse(EXPECT)
    s = sc.start
    received = [alert("m-2", "raised", s + 3 * DAY, "a1"), health("m-1", "down", s, "h1")]
    emitted = [Event("raised", "m-2", s + 3 * DAY, "a1"),
               Event("updated", "m-2", s + 4 * DAY, "a1u"),
               Event("health", "m-1", s, "h1")]
    rep = judged(sc, received, emitted)
    assert rep.lost == {"alert": 1, "health": 0}
    assert not rep.passed
    assert "2 alert events emitted, 1 received, 1 lost" in rep.text()


def run_cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    add_hil_arguments(p)
    return hil_main(p.parse_args(argv))


def test_cli_exit_codes(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE.replace('profile = "sdm120"', 'profile = "sdm120"\npol_s = 3'))
    assert run_cli(["run", str(bad)]) == 2
    assert "scenario error: meters[0].pol_s: unknown key" in capsys.readouterr().err
    assert run_cli(["run", "street-gpu", "--serial", "/dev/null"]) == 2
    assert "--agent none" in capsys.readouterr().err
    assert run_cli(["run", "street-gpu", "--agent", "none", "--serial", "/dev/ttyUSB0"]) == 2
    assert "has 0 rtu bus" in capsys.readouterr().err
    assert run_cli(["run", "street-gpu", "--data", str(tmp_path)]) == 2
    assert run_cli(["list"]) == 0
    assert "village-bus" in capsys.readouterr().out
    # ``loadwatch hil ...`` reaches the same code through agent/cli.py's delegation.
    from agent.cli import main

    assert main(["hil", "list"]) == 0
    assert "night-miner" in capsys.readouterr().out
    assert main(["hil"]) == 2


SERVE = """
[scenario]
name = "serve"
tz_offset_hours = 10.0
[timeline]
days = 3.0
[[buses]]
name = "tcpbus"
kind = "tcp"
[[buses]]
name = "rtubus"
kind = "rtu"
baud = 19200
parity = "E"
[[meters]]
id = "t-{n}"
count = 2
bus = "tcpbus"
profile = "sdm120"
household = "synthetic"
[[meters]]
id = "r-{n}"
count = 2
bus = "rtubus"
profile = "sdm630"
household = "none"
miner = {kind = "s9", from_day = 0.0}
[[faults]]
kind = "dead"
meter = "r-2"
"""


def test_agent_none_serves_meters_in_real_time(arun, tmp_path) -> None:
    """``--agent none``: the printed endpoints answer a Modbus master; faults apply."""
    from agent.decode import decode_field
    from agent.modbus.transport import Transport, TransportError
    from agent.profiles import load_profile
    from hil.runner import serve

    sc = parse_text(SERVE, "serve.toml")
    lines: list[str] = []

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(serve(sc, None, [], "127.0.0.1", 0, 1.0, stop,
                                         lines.append))
        for _ in range(100):
            if any(line.startswith("serving") for line in lines):
                break
            await asyncio.sleep(0.05)
        try:
            where = {line.split()[1]: line.split(" on ")[1].split(":")[0:2]
                     for line in lines if line.startswith("bus ")}
            host, port = where["tcpbus"]
            tcp = Transport("tcp", host=host, port=int(port), timeout_s=1.0)
            p_field = load_profile("sdm120").quantities["p_w"]
            regs = await tcp.read(1, p_field.fc, p_field.address, p_field.size)
            tcp.close()
            assert 0.0 < decode_field(p_field, regs) < 20000.0
            rtu_path = where["rtubus"][0]
            assert rtu_path.endswith("ttyLW-master")
            rtu = Transport("rtu", port=rtu_path, baud=19200, parity="N", timeout_s=0.3)
            f630 = load_profile("sdm630").quantities["p_w"]
            regs = await rtu.read(1, f630.fc, f630.address, f630.size)
            # r-1 is a bare Antminer S9 (1.37 kW +-7%, with restarts at ~7% of rated).
            p = decode_field(f630, regs)
            assert 50.0 < p < 1500.0
            with pytest.raises(TransportError) as e:
                await rtu.read(2, f630.fc, f630.address, f630.size)  # the dead meter
            assert e.value.kind == "timeout"
            rtu.close()
        finally:
            stop.set()
            await task

    arun(main(), timeout=30.0)
    assert any("miner on r-1 (s9) from day 0" in line for line in lines)
    assert any(line.startswith("bus rtubus rtu 19200 8E1:") and "frames" in line
               for line in lines)


FAULTS = """
[scenario]
name = "faults"
tz_offset_hours = 10.0
[timeline]
days = 1.5
speed = 17280.0
poll_s = 1800.0
hold_poll_interval = false
[[buses]]
name = "bus"
kind = "rtu"
baud = 38400
timeout_ms = 150
retries = 0
[[meters]]
id = "m-{n}"
count = 3
bus = "bus"
profile = "sdm630"
household = "synthetic"
[[faults]]
kind = "exception"
meter = "m-1"
rate = 1.0
code = 2
from_day = 0.2
to_day = 0.6
[[faults]]
kind = "slow"
meter = "m-2"
delay_ms = 400
from_day = 0.4
to_day = 0.8
[[faults]]
kind = "bus_gone"
bus = "bus"
from_day = 1.0
to_day = 1.2
[expect]
[[expect.health]]
meter = "m-1"
state = "degraded"
by_day = 0.7
[[expect.health]]
meter = "m-2"
state = "down"
by_day = 0.9
[[expect.quality]]
meter = "m-1"
flag = "modbus_exception"
[[expect.quality]]
meter = "m-2"
flag = "timeout"
"""


@pytest.mark.serial  # a port that returns must be found again within the run: run alone
def test_meter_and_bus_faults_reach_the_agent(arun) -> None:
    """Exception replies, a slow unit and an unplugged bus, each seen as the agent must."""
    from hil.runner import run_local

    sc = parse_text(FAULTS, "faults.toml")
    rep = arun(run_local(sc), timeout=120.0)
    print(rep.text())
    assert rep.passed, rep.text()
    assert rep.poll_errors.get("exception", 0) >= 1
    assert rep.poll_errors.get("timeout", 0) >= 1  # m-2 answers after the agent gave up
    assert rep.poll_errors.get("io", 0) >= 1  # the master's port vanished
    # After the adapter is back, every meter answers again.
    for meter in ("m-1", "m-2", "m-3"):
        late = [s for t, s in rep.health_seen[meter] if t > sc.start + 1.25 * DAY]
        assert late and late[-1] == "ok", (meter, rep.health_seen[meter][-5:])
    assert rep.scored_bad == 0
