"""plan_reads: pure, fewest reads (then fewest registers) within max_gap and max_count."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.modbus.blocks import ReadRequest, plan_reads
from agent.profiles import KNOWN_QUANTITIES, Field, available_profiles, load_profile


def f(name: str, address: int, type: str = "float32", fc: int = 4) -> Field:
    return Field(name, fc, address, type)


def test_known_cases() -> None:
    fields = [f("p_w", 0), f("pf", 2), f("v_v", 20)]
    assert plan_reads(fields, max_gap=10, max_count=125) == [
        ReadRequest(4, 0, 4, ["p_w", "pf"]), ReadRequest(4, 20, 2, ["v_v"])]
    assert plan_reads(fields, max_gap=16, max_count=125) == [
        ReadRequest(4, 0, 22, ["p_w", "pf", "v_v"])]
    assert plan_reads(fields, max_gap=16, max_count=3) == [
        ReadRequest(4, 0, 2, ["p_w"]), ReadRequest(4, 2, 2, ["pf"]),
        ReadRequest(4, 20, 2, ["v_v"])]
    # Function codes never share a read; output is ordered fc, then address.
    mixed = [f("p_w", 0, fc=4), f("pf", 2, fc=3), f("v_v", 4, fc=4)]
    assert [(r.fc, r.address, r.count) for r in plan_reads(mixed, 10, 125)] == [
        (3, 2, 2), (4, 0, 6)]
    # Duplicates are read once.
    assert plan_reads([f("p_w", 0), f("p_w", 0)], 0, 125) == [ReadRequest(4, 0, 2, ["p_w"])]


def test_prefers_fewer_registers_among_equal_request_counts() -> None:
    # Three fields, max_count 6: {a,b}+{c} reads 4+2 regs, {a}+{b,c} reads 2+6 regs.
    fields = [f("p_w", 0), f("pf", 2), f("v_v", 6)]
    plan = plan_reads(fields, max_gap=10, max_count=6)
    assert len(plan) == 2 and sum(r.count for r in plan) == 6


def test_errors() -> None:
    with pytest.raises(ValueError, match="needs 2 registers"):
        plan_reads([f("p_w", 0)], 0, 1)
    with pytest.raises(ValueError, match="overlap"):
        plan_reads([f("p_w", 0), f("pf", 1)], 0, 125)
    with pytest.raises(ValueError):
        plan_reads([f("p_w", 0)], 0, 126)


def _legal(plan: list[ReadRequest], fields: list[Field], max_gap: int, max_count: int) -> None:
    by_name = {x.name: x for x in fields}
    covered = [n for r in plan for n in r.fields]
    assert sorted(covered) == sorted(by_name), "every field exactly once"
    for r in plan:
        assert 1 <= r.count <= max_count
        members = sorted((by_name[n] for n in r.fields), key=lambda x: x.address)
        assert all(m.fc == r.fc for m in members)
        assert r.address == members[0].address
        assert r.end == members[-1].address + members[-1].size
        for a, b in zip(members, members[1:]):
            assert b.address - (a.address + a.size) <= max_gap
        # A read never spans a field it does not list.
        for x in fields:
            if x.fc == r.fc and x.name not in r.fields:
                assert x.address + x.size <= r.address or x.address >= r.end


def _brute_force(fields: list[Field], max_gap: int, max_count: int) -> tuple[int, int]:
    """Best (requests, registers) over every way to cut the sorted fields into runs."""
    total = (0, 0)
    for fc in {x.fc for x in fields}:
        g = sorted((x for x in fields if x.fc == fc), key=lambda x: x.address)
        best = None
        for cuts in itertools.product((False, True), repeat=len(g) - 1):
            runs, cur = [], [g[0]]
            for x, cut in zip(g[1:], cuts):
                if cut:
                    runs.append(cur)
                    cur = [x]
                else:
                    cur.append(x)
            runs.append(cur)
            ok = all(r[-1].address + r[-1].size - r[0].address <= max_count and all(
                b.address - (a.address + a.size) <= max_gap for a, b in zip(r, r[1:]))
                for r in runs)
            if ok:
                cost = (len(runs), sum(r[-1].address + r[-1].size - r[0].address for r in runs))
                best = cost if best is None or cost < best else best
        assert best is not None
        total = (total[0] + best[0], total[1] + best[1])
    return total


NAMES = sorted(KNOWN_QUANTITIES)


@st.composite
def layouts(draw, max_fields: int = 9):
    n = draw(st.integers(1, max_fields))
    out, addr = [], {3: draw(st.integers(0, 50)), 4: draw(st.integers(0, 50))}
    for i in range(n):
        fc = draw(st.sampled_from((3, 4)))
        ftype = draw(st.sampled_from(("float32", "int16", "uint32")))
        addr[fc] += draw(st.integers(0, 30))
        out.append(Field(NAMES[i], fc, addr[fc], ftype))
        addr[fc] += out[-1].size
    return out


@settings(max_examples=300, deadline=None)
@given(layouts(), st.integers(0, 40), st.integers(2, 125))
def test_plans_are_legal_and_optimal(fields, max_gap, max_count) -> None:
    plan = plan_reads(fields, max_gap, max_count)
    _legal(plan, fields, max_gap, max_count)
    assert (len(plan), sum(r.count for r in plan)) == _brute_force(fields, max_gap, max_count)
    assert plan == plan_reads(list(reversed(fields)), max_gap, max_count), "pure, order-free"


@pytest.mark.parametrize("name", available_profiles("modbus"))
def test_every_profile_plans_within_its_quirks(name: str) -> None:
    p = load_profile(name)
    fields = list(p.quantities.values())
    plan = plan_reads(fields, p.quirks.max_gap, p.quirks.max_registers)
    _legal(plan, fields, p.quirks.max_gap, p.quirks.max_registers)
