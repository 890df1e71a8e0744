"""The DL/T 645 codec: hand-worked byte checks on CPython and MicroPython, and
Hypothesis round trips (CPython)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dual_runtime import check_names, load_checks, passed_on_micropython
from hypothesis import given
from hypothesis import strategies as st

from agent.dlt645 import codec

HERE = Path(__file__).resolve().parent
CHECKS = load_checks(HERE / "codec_checks.py", "dlt645_codec_checks")
NAMES = check_names(CHECKS)


@pytest.mark.parametrize("name", NAMES)
def test_check_on_cpython(name: str) -> None:
    getattr(CHECKS, name)()


def test_checks_on_micropython(micropython_bin: str) -> None:
    passed = passed_on_micropython(micropython_bin, HERE / "codec_checks.py", timeout_s=60)
    assert passed == len(NAMES) >= 14


addresses = st.text(alphabet="0123456789", min_size=12, max_size=12)
payload = st.binary(max_size=codec.MAX_DATA)
controls = st.sampled_from([0x11, 0x12, 0x13, 0x91, 0xB1, 0xD1, 0x92, 0xB2, 0x93])


@given(addresses, controls, payload, st.booleans())
def test_frame_round_trip(address: str, control: int, data: bytes, preamble: bool) -> None:
    f = codec.decode(codec.encode(address, control, data, preamble=preamble))
    assert (f.address, f.control, f.data) == (address, control, data)


@given(addresses)
def test_address_round_trip(address: str) -> None:
    wire = codec.address_bytes(address)
    assert wire[0] == int(address[10:12], 16)  # low byte (last two digits) first
    assert codec.address_text(wire) == address


@given(st.integers(1, 6), st.data(), st.booleans())
def test_bcd_round_trip(nbytes: int, data: st.DataObject, signed: bool) -> None:
    decimals = data.draw(st.integers(0, 2 * nbytes))
    top = (8 if signed else 10) * 10 ** (2 * nbytes - 1) - 1
    raw = data.draw(st.integers(-top if signed else 0, top))
    value = raw / 10 ** decimals
    enc = codec.bcd_encode(value, nbytes, decimals, signed)
    assert len(enc) == nbytes
    assert codec.bcd_decode(enc, decimals, signed) == pytest.approx(value, abs=1e-12)


@given(st.binary(max_size=60), addresses, payload, st.binary(max_size=60))
def test_scan_finds_a_frame_after_any_garbage_without_0x68(before: bytes, address: str,
                                                           data: bytes, after: bytes) -> None:
    garbage = bytes(b for b in before if b != codec.START)
    good = codec.encode(address, 0x91, data)
    frame, used = codec.scan(garbage + good + after)
    assert frame is not None and frame.data == data
    assert used == len(garbage) + len(good)


@given(addresses, payload, st.integers(0, 255), st.data())
def test_any_single_byte_corruption_is_never_a_silent_wrong_frame(
        address: str, data: bytes, flip: int, pick: st.DataObject) -> None:
    good = codec.encode(address, 0x91, data, preamble=False)
    i = pick.draw(st.integers(0, len(good) - 1))
    if flip == 0:
        flip = 1
    bad = bytearray(good)
    bad[i] ^= flip
    try:
        f = codec.decode(bytes(bad))
    except codec.FrameError:
        return
    # The checksum is a plain sum: a single corrupted byte always changes it, so a frame
    # that still decodes must be the original (impossible) -- fail loudly if it happens.
    assert (f.address, f.control, f.data) == (address, 0x91, data)


@given(st.integers(0, 255))
def test_every_error_byte_is_named(err: int) -> None:
    names = codec.error_names(err)
    assert all(n in codec.ERROR_TEXT or n == "none" for n in names)
    assert len(names) == max(1, bin(err).count("1"))
    assert codec.describe_error(err).startswith("error 0x%02X: " % err)
