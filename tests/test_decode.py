"""decode.py: registers -> values (every type and word order) and the quality flags."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import load_text
from agent.decode import Decoder, decode_field, encode_field
from agent.model import (
    BAD_DATA,
    Q_BACKWARDS,
    Q_CRC,
    Q_EXCEPTION,
    Q_FROZEN,
    Q_INF,
    Q_MISSING,
    Q_NAN,
    Q_NEGATIVE,
    Q_RANGE,
    Q_RESET,
    Q_TIMEOUT,
    RawBlock,
    RawPoll,
)
from agent.profiles import Field


def test_decode_each_type_and_word_order() -> None:
    assert decode_field(Field("p_w", 4, 0, "float32"), [0x4366, 0x0000]) == 230.0
    assert decode_field(Field("p_w", 4, 0, "float32", "CDAB"), [0x0000, 0x4366]) == 230.0
    assert decode_field(Field("p_w", 4, 0, "int32", "CDAB", 0.1), [0xFFFF, 0xFFFF]) == -0.1
    assert decode_field(Field("p_w", 4, 0, "int32", "ABCD"), [0x0001, 0x0002]) == 65538.0
    assert decode_field(Field("p_w", 4, 0, "uint32", "CDAB"), [0x0002, 0x0001]) == 65538.0
    assert decode_field(Field("pf", 4, 0, "int16", scale=0.001), [0xFC18]) == -1.0
    assert decode_field(Field("f_hz", 4, 0, "uint16", scale=0.1), [500]) == 50.0
    # A quirk's word order overrides the map's.
    assert decode_field(Field("p_w", 4, 0, "float32"), [0x0000, 0x4366], "CDAB") == 230.0


@given(st.sampled_from(["float32", "int32", "uint32", "int16", "uint16"]),
       st.sampled_from(["ABCD", "CDAB"]), st.sampled_from([1.0, 0.1, 0.001, 1000.0]),
       st.floats(-30000, 30000, allow_nan=False))
def test_encode_is_the_inverse_of_decode(ftype, order, scale, value) -> None:
    f = Field("p_w", 4, 0, ftype, order, scale)
    if ftype.startswith("uint"):
        value = abs(value)
    regs = encode_field(f, value)
    assert len(regs) == f.size and all(0 <= r <= 0xFFFF for r in regs)
    got = decode_field(f, regs)
    if ftype == "float32":
        assert got == pytest.approx(value, rel=1e-6, abs=1e-6 * scale)
    elif ftype.endswith("16") and abs(value / scale) > 32767:
        assert abs(got) <= 65535 * scale  # clamped to the type
    else:
        assert abs(got - value) <= scale / 2 + 1e-9


def plan(quantities: str = '"all"', frozen: str = ""):
    cfg = ('site = "s"\ngateway = "g"\n[broker]\nhost = "127.0.0.1"\n[[buses]]\n'
           'name = "b"\nkind = "tcp"\nhost = "127.0.0.1"\n[[meters]]\nid = "m"\nbus = "b"\n'
           'profile = "generic"\nquantities = %s\n' % quantities)
    return load_text(cfg, "t.toml").meters[0]


def regs_for(values: dict[str, float]) -> list[int]:
    """generic map: p_w 0, pf 2, v_v 4, i_a 6, f_hz 8, e_import_kwh 10, q_var 12."""
    order = ["p_w", "pf", "v_v", "i_a", "f_hz", "e_import_kwh", "q_var"]
    out: list[int] = []
    for name in order:
        out += list(struct.unpack(">HH", struct.pack(">f", values.get(name, 0.0))))
    return out


GOOD = {"p_w": 1500.0, "pf": 0.95, "v_v": 231.0, "i_a": 6.8, "f_hz": 50.0,
        "e_import_kwh": 1234.5, "q_var": 400.0}


def poll(values: dict[str, float], t: float = 0.0) -> RawPoll:
    return RawPoll("m", t, [RawBlock(3, 0, regs_for(values))])


def test_good_reading_is_scorable() -> None:
    r = Decoder(plan()).decode(poll(GOOD))
    assert r.quality == 0 and r.scorable
    assert r.values["p_w"] == 1500.0 and r.values["v_v"] == 231.0


@pytest.mark.parametrize("name,value,flag", [
    ("p_w", float("nan"), Q_NAN), ("v_v", float("inf"), Q_INF), ("f_hz", 5.0, Q_RANGE),
    ("p_w", 5e6, Q_RANGE), ("pf", 3.0, Q_RANGE), ("v_v", -2.0, Q_RANGE)])
def test_bad_values_are_dropped_and_flagged(name: str, value: float, flag: int) -> None:
    r = Decoder(plan()).decode(poll(dict(GOOD, **{name: value})))
    assert r.quality & flag and not r.scorable
    assert name not in r.values
    if name == "p_w":
        assert r.quality & Q_MISSING
    assert all(math.isfinite(v) for v in r.values.values())


def test_negative_power_is_informational() -> None:
    r = Decoder(plan()).decode(poll(dict(GOOD, p_w=-300.0)))
    assert r.quality == Q_NEGATIVE and r.scorable


@pytest.mark.parametrize("kind,flag", [("timeout", Q_TIMEOUT), ("exception", Q_EXCEPTION),
                                       ("crc", Q_CRC), ("io", Q_TIMEOUT)])
def test_failed_polls_carry_their_flag(kind: str, flag: int) -> None:
    r = Decoder(plan()).decode(RawPoll("m", 5.0, [], "boom", kind, 2))
    assert r.quality & flag and r.quality & BAD_DATA and not r.scorable
    assert r.values == {} and r.t == 5.0


def test_frozen_after_the_profiles_limit() -> None:
    d = Decoder(plan())
    assert d.frozen_s == 900.0
    assert d.decode(poll(GOOD, 0.0)).quality == 0
    assert d.decode(poll(GOOD, 600.0)).quality == 0
    assert d.decode(poll(GOOD, 900.0)).quality & Q_FROZEN
    assert d.decode(poll(GOOD, 1800.0)).quality & Q_FROZEN
    moving = dict(GOOD, v_v=231.1)
    assert d.decode(poll(moving, 1810.0)).quality == 0


def test_power_alone_repeating_is_a_steady_load_not_a_frozen_meter() -> None:
    """A slow line read for p_w only (DL/T 645 at 2400 baud): without a voltage or the
    frequency nothing says the meter is stuck, so identical readings stay scorable."""
    d = Decoder(plan('["p_w", "pf"]'))
    for t in (0.0, 900.0, 3600.0, 7200.0):
        r = d.decode(poll(GOOD, t))
        assert r.quality == 0 and r.scorable, t
    with_f = Decoder(plan('["p_w", "f_hz"]'))
    with_f.decode(poll(GOOD, 0.0))
    assert with_f.decode(poll(GOOD, 900.0)).quality & Q_FROZEN


def test_energy_backwards_reset_and_rebase() -> None:
    d = Decoder(plan())
    assert d.decode(poll(GOOD, 0)).quality == 0
    e = GOOD["e_import_kwh"]
    assert d.decode(poll(dict(GOOD, e_import_kwh=e + 1, v_v=230.0), 10)).quality == 0
    back = d.decode(poll(dict(GOOD, e_import_kwh=e - 5, v_v=230.1), 20))
    assert back.quality & Q_BACKWARDS and back.scorable  # informational, not load
    # A small float jitter is not "backwards".
    assert d.decode(poll(dict(GOOD, e_import_kwh=e + 0.995, v_v=230.2), 30)).quality == 0
    reset = d.decode(poll(dict(GOOD, e_import_kwh=0.2, v_v=230.3), 40))
    assert reset.quality & Q_RESET
    assert d.decode(poll(dict(GOOD, e_import_kwh=0.3, v_v=230.4), 50)).quality == 0
    # Persistently lower: believed after three readings.
    d2 = Decoder(plan())
    d2.decode(poll(dict(GOOD, e_import_kwh=500.0), 0))
    flags = [d2.decode(poll(dict(GOOD, e_import_kwh=400.0, v_v=230 + k), k)).quality
             for k in range(1, 5)]
    assert [bool(q & Q_BACKWARDS) for q in flags] == [True, True, True, False]


def test_only_planned_quantities_are_decoded() -> None:
    r = Decoder(plan('["p_w", "pf"]')).decode(poll(GOOD))
    assert set(r.values) == {"p_w", "pf"}
