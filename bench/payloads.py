"""Telemetry payload figures of bench/delivery.py: bytes and CPU per reading, schema 2
against today's schema 1 messages (telemetry + score), measured in one run.

Readings come from the rig's own simulated meter (hil/meters.py SimUnit: a synthetic
household with an Antminer S9, every quantity of the profile self-consistent) as the
registers of the profile's planned reads, then go through the shared per-meter pipeline
(register decoding, quality checks, slot, detector, policy) and the codec, exactly as the
agent runs a Modbus poll (the CPU figure is that path: no Modbus I/O, no outbox).
Today's path is the same pipeline with the frozen pre-schema-2 slot and messages of
bench/baseline/.
"""

from __future__ import annotations

import time
from array import array
from types import SimpleNamespace

from agent.decode import fields
from agent.modbus.blocks import plan_reads
from agent.pipeline import MeterPipeline
from agent.policy import Policy
from agent.profiles import load_profile
from agent.publish.payloads import EventCodec
from agent.signature import Detector
from bench.baseline import aggregate_v1, payloads_v1
from hil.loads.base import Sum
from hil.loads.miners import antminer_s9
from hil.loads.synthetic import SyntheticHousehold
from hil.meters import SimUnit

T0 = 1772323200.0  # 2026-03-01 00:00 UTC
DAY = 86400.0
SITE, GATEWAY, METER = "north", "gw-17", "home-04"
PREFIX = "loadwatch/v1/%s/%s" % (SITE, GATEWAY)


def readings(profile: str, step_s: float, n: int, seed: int = 4,
             names: tuple[str, ...] | None = None) -> tuple[list, list]:
    """The compact field table of the quantities ``names`` (None: every one ``profile``
    has), and ``n`` polls of them every ``step_s`` as ``(t, blocks)`` (the registers of
    each planned read)."""
    prof = load_profile(profile)
    wanted = [f for f in prof.quantities.values() if names is None or f.name in names]
    load = Sum(SyntheticHousehold(seed=seed, tz_hours=8.0),
               antminer_s9(seed=seed, tz_hours=8.0, start=T0 - DAY))
    clock = SimpleNamespace(t=T0, t0=T0 - DAY)
    clock.now = lambda: clock.t
    unit = SimUnit(1, prof, load, clock)
    reads = plan_reads(wanted, prof.quirks.max_gap, prof.quirks.max_registers)
    out = []
    for k in range(n):
        clock.t = t = T0 + k * step_s
        out.append((t, [(r.fc, r.address, unit.registers(r.fc, r.address, r.count))
                        for r in reads]))
    return fields(wanted), out


def run_new(table: list, rows: list, slot_s: float,
            encoding: str = "json") -> tuple[int, int]:
    """(payload bytes, messages) of schema 2: one telemetry message a slot; ``encoding``
    ``cbor``: the agent's codec with ``telemetry_encoding = "cbor"``."""
    if encoding == "json":
        codec = EventCodec(PREFIX, SITE, GATEWAY)  # the MCU's and the agent's JSON
    else:
        from agent.publish.codec import Codec

        codec = Codec(PREFIX, SITE, GATEWAY, telemetry_encoding=encoding)
    p = MeterPipeline(table, Detector({}), Policy(METER, {}), slot_s)
    nbytes = msgs = 0
    for t, blocks in rows:
        values, q = p.decode(t, blocks, "")
        for ev in p.process(t, values, q):
            if codec.publishes(ev):
                nbytes += len(codec.event(ev).payload)
                msgs += 1
    return nbytes, msgs


def run_old(table: list, rows: list, slot_s: float) -> tuple[int, int]:
    """(payload bytes, messages) as main published them: telemetry + score a slot."""
    p = MeterPipeline(table, Detector({}), Policy(METER, {}), 0.0)
    slot = array("d", [0.0] * aggregate_v1.SIZE)
    aggregate_v1.init(slot, 0, slot_s)
    det = p.detector
    nbytes = msgs = 0
    for t, blocks in rows:
        values, q = p.decode(t, blocks, "")
        closed = aggregate_v1.add(slot, 0, t, values, q)
        if closed is not None:
            state = "ready" if det.ready else "warming"
            closed["score"] = round(det.score, 2)
            closed["detector_state"] = state
            start = int(closed["slot_start"])
            nbytes += len(payloads_v1.telemetry(SITE, GATEWAY, METER, t, "%s:telemetry:%d"
                                                % (METER, start), closed))
            nbytes += len(payloads_v1.score(SITE, GATEWAY, METER, t, "%s:score:%d"
                                            % (METER, start), det.score, state,
                                            det.contributions(), det.evidence()))
            msgs += 2
        p.process(t, values, q)
    return nbytes, msgs


def cpu_us(table: list, rows: list, slot_s: float, rounds: int) -> tuple[float, float]:
    """Best-of-``rounds`` CPU per reading (us), today's path and schema 2, alternated."""
    best_old = best_new = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        run_old(table, rows, slot_s)
        t1 = time.process_time()
        run_new(table, rows, slot_s)
        t2 = time.process_time()
        best_old = min(best_old, t1 - t0)
        best_new = min(best_new, t2 - t1)
    return best_old * 1e6 / len(rows), best_new * 1e6 / len(rows)


def example(profile: str = "sdm630", hour: float = 1.0) -> bytes:
    """One schema-2 message of a three-phase meter with every quantity (README)."""
    table, rows = readings(profile, 10.0, int((hour * 3600 + 900) / 10) + 1)
    codec = EventCodec(PREFIX, SITE, GATEWAY)
    p = MeterPipeline(table, Detector({}), Policy(METER, {}), 900.0)
    last = b""
    for t, blocks in rows:
        values, q = p.decode(t, blocks, "")
        for ev in p.process(t, values, q):
            if ev.kind == "telemetry":
                last = codec.event(ev).payload
    return last


