"""A scenario meter's load: its household (real trace or synthetic), appliances and miner,
windowed to the run, each seeded from the scenario so a run repeats exactly."""

from __future__ import annotations

from pathlib import Path

from hil.scenario import DAY, MeterSpec, Scenario


def build_load(sc: Scenario, m: MeterSpec, data_dir: Path | None, start: float):
    """The meter's Load: household + appliances + miner, each switched by its days."""
    from hil.loads.base import Sum, Window

    parts = []
    household = _household(sc, m, data_dir)
    if household is not None:
        parts.append(household)
    for i, spec in enumerate(m.appliances):
        parts.append(_windowed(Window, appliance(sc, m, spec, i), spec, start))
    if m.miner is not None:
        parts.append(_windowed(Window, miner_load(sc, m, m.miner, start), m.miner, start))
    if not parts:
        from hil.loads.base import Constant

        return Constant(0.0, 1.0, "empty")
    return parts[0] if len(parts) == 1 else Sum(*parts)


def _windowed(window_cls, load, spec, start: float):
    if spec.from_day <= 0.0 and spec.to_day is None:
        return load
    end = None if spec.to_day is None else start + spec.to_day * DAY
    return window_cls(load, start + spec.from_day * DAY, end)


def _seed(sc: Scenario, m: MeterSpec, salt: int) -> int:
    return sc.seed * 1000003 + m.index * 101 + salt


def _household(sc: Scenario, m: MeterSpec, data_dir: Path | None):
    kind = m.household
    if kind == "none":
        return None
    if kind == "auto":
        kind = "sgsc:%d" % m.index if data_dir is not None else "synthetic"
    if kind.startswith("sgsc:") or kind == "uci":
        if data_dir is None:
            raise ValueError("%s: household %r needs real traces: pass --data DIR (or use "
                             "household = \"auto\")" % (m.key, m.household))
        from hil.loads.traces import Trace, read_sgsc, read_uci

        if kind == "uci":
            return Trace(read_uci(data_dir).house)
        series = read_sgsc(data_dir)
        ids = sorted(series)
        return Trace(series[ids[int(kind.split(":")[1]) % len(ids)]])
    return _synthetic_household(sc, m)


def _synthetic_household(sc: Scenario, m: MeterSpec):
    from hil.loads import synthetic

    return synthetic.SyntheticHousehold(seed=_seed(sc, m, 1), tz_hours=sc.tz_hours)


def appliance(sc: Scenario, m: MeterSpec, spec, i: int):
    from hil.loads.appliances import APPLIANCES

    cls = APPLIANCES[spec.kind]
    params = dict(spec.params)
    params.setdefault("seed", _seed(sc, m, 10 + i))
    params.setdefault("tz_hours", sc.tz_hours)
    try:
        return cls(**params)
    except (TypeError, ValueError) as e:
        raise ValueError("%s: %s" % (spec.key, e)) from None


def miner_load(sc: Scenario, m: MeterSpec, spec, start: float):
    """A hil/loads/miners model; its own ``start`` is the onset, so restarts, drift and
    ``ramp`` schedules count from the day it was switched on."""
    from hil.loads import miners

    params = dict(spec.params)
    params.update(seed=_seed(sc, m, 5), tz_hours=sc.tz_hours,
                  start=start + spec.from_day * DAY)
    try:
        if spec.kind == "gpu":
            return miners.gpu_rig(int(params.pop("gpus", 6)), float(params.pop("gpu_w", 145.0)),
                                  float(params.pop("platform_w", 130.0)), **params)
        if spec.kind == "s9":
            return miners.antminer_s9(**params)
        if spec.kind == "s19":
            return miners.antminer_s19(**params)
        return miners.farm(float(params.pop("kw", 10.0)), **params)
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError("%s: %s" % (spec.key, e)) from None
