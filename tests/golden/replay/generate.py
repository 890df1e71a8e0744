"""Regenerate the golden replay cases (inputs from hil/loads, outputs from agent.replay).

    .venv/bin/python tests/golden/replay/generate.py [--inputs] [--expected] [CASE ...]

``--inputs`` rewrites every ``<case>/input.csv`` from the seeded load models (pure functions
of t, so the files are reproducible); ``--expected`` re-runs ``loadwatch replay`` on each
case and rewrites ``expected.jsonl`` (do this, and review the diff, when the detector or
policy defaults change on purpose).
"""

from __future__ import annotations

import argparse
import io
import sys
from contextlib import redirect_stdout
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from hil.loads import appliances as ap  # noqa: E402
from hil.loads.base import Sum, Window  # noqa: E402
from hil.loads.miners import DUTY_OFF_S, DUTY_ON_S, antminer_s9, gpu_rig  # noqa: E402
from hil.loads.synthetic import SyntheticHousehold  # noqa: E402

DAY = 86400.0
T0 = 1704031200.0  # 2024-01-01 00:00 at UTC+10
TZ = 10.0


def _iso(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def street(days: float, step: float, style: str) -> str:
    """Two homes, one with an S9 from day 9: interleaved rows, ISO or UNIX timestamps."""
    plain = SyntheticHousehold(seed=11, tz_hours=TZ)
    miner = Sum(SyntheticHousehold(seed=12, tz_hours=TZ),
                antminer_s9(seed=5, tz_hours=TZ, start=T0 + 9 * DAY))
    lines = ["meter,timestamp,p_w,pf"]
    n = int(days * DAY / step)
    for i in range(n):
        t = T0 + i * step
        for name, load in (("home-plain", plain), ("home-miner", miner)):
            p, pf = load.power(t)
            stamp = _iso(t) if style == "iso" else "%d" % t
            lines.append("%s,%s,%.1f,%.3f" % (name, stamp, p, pf))
    return "\n".join(lines) + "\n"


def grouped_gpu(days: float, step: float) -> str:
    """One 1 kW GPU rig home and one plain home, rows grouped by meter, no pf, +10:00 offsets."""
    lines = ["timestamp,meter,p_w"]
    homes = (("flat-7", SyntheticHousehold(seed=21, tz_hours=TZ)),
             ("rig-3", Sum(SyntheticHousehold(seed=22, tz_hours=TZ),
                           gpu_rig(6, 145.0, 130.0, seed=3, tz_hours=TZ, start=T0 + 8 * DAY))))
    n = int(days * DAY / step)
    for name, load in homes:
        for i in range(n):
            t = T0 + i * step
            local = _iso(t + TZ * 3600.0)[:-1] + "+10:00"
            lines.append("%s,%s,%.1f" % (local, name, load.power(t)[0]))
    return "\n".join(lines) + "\n"


def scheduled(days: float, step: float, homes: list) -> str:
    """A scheduled rig and look-alikes on synthetic homes: rows interleaved, pf given."""
    lines = ["meter,timestamp,p_w,pf"]
    n = int(days * DAY / step)
    for i in range(n):
        t = T0 + i * step
        for name, load in homes:
            p, pf = load.power(t)
            lines.append("%s,%s,%.1f,%.3f" % (name, _iso(t), p, pf))
    return "\n".join(lines) + "\n"


def _home(seed: int, *extra: object) -> Sum:
    return Sum(SyntheticHousehold(seed=seed, tz_hours=TZ), *extra)  # type: ignore[arg-type]


def night_rig() -> str:
    """An S9 only 22:00-07:00 from day 8, beside night storage heating and nightly EV."""
    return scheduled(16.0, 900.0, [
        ("night-s9", _home(31, antminer_s9(seed=7, tz_hours=TZ, schedule="night",
                                           start=T0 + 8 * DAY))),
        ("storage-heater", _home(32, Window(ap.NightStorageHeater(seed=3, tz_hours=TZ),
                                            T0 + 5 * DAY))),
        ("ev-nightly", _home(33, Window(ap.EVCharger(schedule="offpeak", days_per_week=7.0,
                                                     seed=4, tz_hours=TZ), T0 + 5 * DAY))),
    ])


def duty_rig() -> str:
    """A 1 kW GPU rig off 17:00-21:00 (on 20 h) from day 8, beside a pool pump on a timer
    and off-peak water heating."""
    return scheduled(16.0, 900.0, [
        ("duty-gpu", _home(41, gpu_rig(6, 145.0, 130.0, seed=8, tz_hours=TZ, schedule="duty",
                                       duty_on_s=DUTY_ON_S, duty_off_s=DUTY_OFF_S,
                                       start=T0 + 8 * DAY))),
        ("pool-pump", _home(42, Window(ap.PoolPump(rated_w=1100.0, hours=8.0, on_hour=9.0,
                                                   pf=0.8, seed=5, tz_hours=TZ),
                                       T0 + 5 * DAY))),
        ("water-heater", _home(43, Window(ap.WaterHeater(controlled=True, seed=6,
                                                         tz_hours=TZ), T0 + 5 * DAY))),
    ])


def ramp_rig() -> str:
    """An S9 brought up one hash board at a time from day 6, beside a home server. (A heat
    pump in steady cold weather is raised at 15-min samples: see README, detector.)"""
    return scheduled(16.0, 900.0, [
        ("ramp-s9", _home(51, antminer_s9(seed=9, tz_hours=TZ, schedule="ramp",
                                          start=T0 + 6 * DAY))),
        ("home-server", _home(53, Window(ap.HomeServer(seed=8, tz_hours=TZ), T0 + 5 * DAY))),
    ])


def heat_and_grow() -> str:
    """A 1 kW GPU rig 24/7 from day 8, beside the look-alikes that 30-min energy confuses
    with one: an air-source heat pump in a cold spell and grow rooms on a 12/12 and an
    18/6 photoperiod, and a plain home that must stay quiet (README, detector: grow
    lights are reported as their own class; what the detector decides for each is pinned
    here, false alarms included)."""
    return scheduled(16.0, 900.0, [
        ("gpu-rig", _home(61, gpu_rig(6, 145.0, 130.0, seed=10, tz_hours=TZ,
                                      start=T0 + 8 * DAY))),
        ("heat-pump", _home(62, Window(ap.HeatPump(seed=7, tz_hours=TZ), T0 + 5 * DAY))),
        ("grow-12-12", _home(63, Window(ap.GrowLights(photoperiod_h=12.0, seed=8,
                                                      tz_hours=TZ), T0 + 5 * DAY))),
        ("grow-18-6", _home(64, Window(ap.GrowLights(photoperiod_h=18.0, seed=9,
                                                     tz_hours=TZ), T0 + 5 * DAY))),
        ("plain-home", _home(65)),
    ])


CASES = {
    "street-s9": lambda: street(16.0, 900.0, "iso"),
    "unix-seconds": lambda: street(16.0, 1800.0, "unix"),
    "grouped-gpu-offsets": lambda: grouped_gpu(16.0, 900.0),
    "night-rig": night_rig,
    "duty-rig": duty_rig,
    "ramp-rig": ramp_rig,
    "heat-pump-grow-lights": heat_and_grow,
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", action="store_true")
    ap.add_argument("--expected", action="store_true")
    ap.add_argument("cases", nargs="*", help="only these cases (default: every one)")
    a = ap.parse_args()
    unknown = sorted(set(a.cases) - set(CASES))
    if unknown:
        raise SystemExit("unknown case(s) %s; known: %s" % (", ".join(unknown),
                                                            ", ".join(CASES)))
    from agent.cli import main as cli

    for name, make in CASES.items():
        if a.cases and name not in a.cases:
            continue
        d = HERE / name
        d.mkdir(exist_ok=True)
        if a.inputs:
            (d / "input.csv").write_text(make())
        if a.expected:
            buf = io.StringIO()
            with redirect_stdout(buf):
                rc = cli(["replay", str(d / "input.csv"), "--summary", "--tz", "10"])
            if rc != 0:
                raise SystemExit("%s: replay exited %d" % (name, rc))
            (d / "expected.jsonl").write_text(buf.getvalue())
        print(name, "ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
