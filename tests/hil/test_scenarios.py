"""Every shipped scenario runs end to end and its expectations hold.

Real parts throughout: a private Mosquitto, pymodbus TCP servers, RTU servers behind the
RS-485 link emulator on ptys, the real agent on a fast clock, a paho subscriber. The
scenarios run at their own ``[timeline] speed`` (chosen so the whole file is about 90 s of
real time); on a loaded machine the runner's governor slows the clock rather than let polls
drift apart, so the tests check the same thing and only take longer.

Beyond ``report.passed`` each test checks that the scenario's point was really exercised:
faults seen by the agent as the flags and health events the scenario names, alerts that
crossed a broker outage, a documented miss that stayed a miss.
"""

from __future__ import annotations

import time

import pytest

from hil.runner import run_local
from hil.scenario import DAY, load, shipped

# Whole HIL scenarios (simulated days on real meters and a broker): `make test` only.
pytestmark = pytest.mark.slow

TIMINGS: dict[str, float] = {}


def run(arun, name: str):
    sc = load(name)
    t0 = time.monotonic()
    report = arun(run_local(sc), timeout=300.0)
    TIMINGS[name] = time.monotonic() - t0
    print("\n" + report.text())
    return sc, report


def test_every_shipped_scenario_has_a_test() -> None:
    covered = {"street-gpu", "village-bus", "heatpump-winter", "night-miner", "broker-outage",
               "china-building"}
    assert set(shipped()) == covered


def test_street_gpu_rig_is_caught_within_72h(arun) -> None:
    sc, rep = run(arun, "street-gpu")
    assert rep.passed, rep.text()
    raised = rep.raised["home-07"][0]
    onset = sc.start + 3.0 * DAY
    assert onset < raised["t"] <= onset + 72 * 3600
    assert set(rep.raised) == {"home-07"}
    assert rep.lost == {"alert": 0, "health": 0}
    assert rep.polls >= 12 * 6.5 * 48 * 0.9  # every meter, every 30 min, 6.5 days


def test_village_bus_dead_meter_and_crc_noise(arun) -> None:
    _, rep = run(arun, "village-bus")
    assert rep.passed, rep.text()
    # The dead meter: timeouts, then health "down" as the subscriber saw it.
    assert any(s == "down" for _, s in rep.health_seen["v-17"])
    assert "v-17" not in rep.flag_counts or "crc" not in rep.flag_counts["v-17"]
    assert rep.poll_errors.get("timeout", 0) >= 1
    # CRC noise: flagged readings spread over the bus, none of them scored.
    crc_meters = [m for m, flags in rep.flag_counts.items() if flags.get("crc")]
    assert len(crc_meters) >= 3
    assert rep.scored_bad == 0
    assert rep.poll_errors.get("crc", 0) == sum(f.get("crc", 0)
                                                for f in rep.flag_counts.values())
    # The wire was really paced: 38400 8E1, utilisation measured by the link emulator.
    assert "rtu 38400 8E1" in rep.utilisation["village"]
    assert not rep.raised


def test_heatpump_winter_stays_silent(arun) -> None:
    _, rep = run(arun, "heatpump-winter")
    assert rep.passed, rep.text()
    assert not rep.raised
    assert rep.polls >= 8 * 6 * 288 * 0.9  # every meter, every 5 min, 6 days


def test_night_miner_is_caught_by_its_night_block(arun) -> None:
    """The S9 runs only 22:00-07:00 from day 3: no 24-h floor moves, but the night block
    repeats; raised after the second night, before day 6, with no false alarm."""
    sc, rep = run(arun, "night-miner")
    assert rep.passed, rep.text()
    raised = rep.raised["home-4"][0]
    assert sc.start + 4.0 * DAY <= raised["t"] <= sc.start + 6.0 * DAY, rep.text()
    assert "every night since" in raised["evidence"]["summary"], raised
    assert raised["schedule"]["start_hour"] in (21, 22, 23) and raised["schedule"]["end_hour"] \
        in (6, 7, 8), raised["schedule"]


def test_broker_outage_loses_nothing(arun) -> None:
    sc, rep = run(arun, "broker-outage")
    assert rep.passed, rep.text()
    assert rep.lost == {"alert": 0, "health": 0}
    assert "broker down at day 3." in rep.text() and "broker up at day 4." in rep.text()
    # The point of the scenario: the alert was decided while the broker was away.
    raised = rep.raised["home-2"][0]
    assert sc.start + 3.4 * DAY <= raised["t"] <= sc.start + 4.5 * DAY, rep.text()


def test_china_building_first_hours_over_a_paced_dlt645_line(arun) -> None:
    """The full run (5 days; the rig switches on at day 2) takes ~12 minutes because the
    2400-baud line is the limit: `loadwatch hil run china-building`, figures in README.
    Here its first 0.2 day: every flat's DL/T 645 meter is read through the transparent
    gateway on the paced line, hourly, without an error or a false alarm."""
    sc = load("china-building").with_timeline(days=0.2)
    assert not sc.alerts  # the rig switches on at day 2: nothing to judge yet
    t0 = time.monotonic()
    report = arun(run_local(sc), timeout=300.0)
    TIMINGS["china-building (0.2 day)"] = time.monotonic() - t0
    print("\n" + report.text())
    assert report.passed, report.text()
    assert report.polls >= 24 * 4  # 24 meters, hourly, 4.8 h
    assert not report.poll_errors or set(report.poll_errors.values()) == {0}
    assert not any(report.flag_counts.values()), report.flag_counts
    assert not report.raised
    assert "dlt645 2400 8E1 via a transparent TCP gateway" in report.utilisation["building"]


@pytest.fixture(scope="module", autouse=True)
def print_timings():
    yield
    if TIMINGS:
        print("\nscenario wall times: " + ", ".join("%s %.1f s" % kv for kv in
                                                    TIMINGS.items()))
