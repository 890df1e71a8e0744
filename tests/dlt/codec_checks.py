"""DL/T 645-2007 codec checks: one file, run under pytest AND the MicroPython unix port.

Like tests/signature/checks.py: every ``check_*`` raises CheckFailed on failure; only
``agent.dlt645.codec`` is imported, so the file runs unchanged on both runtimes:

    MICROPYPATH=<root>:<root>/tests .venv/bin/micropython tests/dlt/codec_checks.py
    .venv/bin/pytest -q tests/dlt        (runs each check, and the line above)

The byte strings are worked out by hand from DL/T 645-2007 section 7 (frame layout,
+0x33, checksum) so a codec that is merely self-consistent still fails them.
"""

from checkkit import CheckFailed, expect, run

from agent.dlt645 import codec


def hx(s):
    return bytes(int(p, 16) for p in s.split())


def raises(kind, fn, *args):
    try:
        fn(*args)
    except codec.FrameError as e:
        expect(e.kind == kind, "expected FrameError %s, got %s (%s)" % (kind, e.kind, e))
        return
    raise CheckFailed("expected FrameError %s from %r" % (kind, args))


def check_address_low_byte_first():
    expect(codec.address_bytes("000012345678") == hx("78 56 34 12 00 00"),
           "address must go low byte first")
    expect(codec.address_text(hx("78 56 34 12 00 00")) == "000012345678", "address back")
    expect(codec.address_bytes(codec.BROADCAST) == b"\xaa" * 6, "broadcast AA*6")


def check_address_validation():
    for bad in ("12345678", "00001234567X", "0000123456789", ""):
        try:
            codec.check_address(bad)
        except ValueError:
            continue
        raise CheckFailed("%r accepted as an address" % bad)
    expect(codec.check_address("000000000001") == "000000000001", "12 digits accepted")


def check_read_request_bytes():
    # Read total active power 02 03 00 00 from 000012345678. DI sent DI0 first, +0x33:
    # 00 00 03 02 -> 33 33 36 35. Checksum: 68+78+56+34+12+68+11+04+33+33+36+35 = 0x2CA.
    frame = codec.read_request("000012345678", "02030000")
    body = hx("68 78 56 34 12 00 00 68 11 04 33 33 36 35")
    cs = sum(body) & 0xFF
    expect(frame == b"\xfe\xfe\xfe\xfe" + body + bytes((cs, 0x16)),
           "read request bytes: %r" % (frame,))
    expect(cs == 0xCA, "hand checksum 0xCA, got 0x%02X" % cs)


def check_read_address_request_bytes():
    frame = codec.read_address_request()
    body = hx("68 AA AA AA AA AA AA 68 13 00")
    expect(frame == b"\xfe\xfe\xfe\xfe" + body + bytes(((sum(body) & 0xFF), 0x16)),
           "0x13 request bytes")
    expect(frame[-2] == 0xDF, "0x13 checksum is 0xDF, got 0x%02X" % frame[-2])


def check_reply_decodes():
    # A meter's 0x91 answer: DI 02030000 and 1.2345 kW (3 bytes BCD 45 23 01) each +0x33.
    body = hx("68 78 56 34 12 00 00 68 91 07 33 33 36 35 78 56 34")
    wire = b"\xfe\xfe" + body + bytes((sum(body) & 0xFF, 0x16))
    f = codec.decode(wire)
    expect(f.address == "000012345678", "address %r" % f.address)
    expect(f.control == 0x91 and f.is_reply and not f.abnormal and not f.follows, "0x91")
    expect(codec.di_from_data(f.data) == 0x02030000, "DI")
    v = codec.bcd_decode(f.data[4:7], 4, True)
    expect(abs(v - 1.2345) < 1e-9, "value %r" % v)


def check_bcd_sign_bit():
    expect(codec.bcd_encode(-1.2345, 3, 4, True) == hx("45 23 81"), "sign in top bit")
    expect(codec.bcd_decode(hx("45 23 81"), 4, True) == -1.2345, "negative back")
    expect(codec.bcd_decode(hx("45 23 81"), 4, False) == 81.2345, "unsigned ignores sign")
    expect(codec.bcd_encode(-0.00001, 3, 4, True) == hx("00 00 00"), "no negative zero")
    expect(codec.bcd_encode(1e9, 2, 1, True) == hx("99 79"), "clamped to 799.9")


def check_bcd_rejects_garbage():
    raises("bcd", codec.bcd_decode, hx("4A 23"), 1, False)
    raises("bcd", codec.bcd_decode, hx("FF FF"), 1, False)


def check_formats():
    expect(codec.parse_format("XX.XXXX") == (6, 4, 3), "XX.XXXX")
    expect(codec.parse_format("XXX.X") == (4, 1, 2), "XXX.X")
    expect(codec.parse_format("XXXXXX.XX") == (8, 2, 4), "energy")
    for bad in ("XX.X", "X..X", "9X", ""):
        try:
            codec.parse_format(bad)
        except ValueError:
            continue
        raise CheckFailed("format %r accepted" % bad)


def check_every_error_bit_named():
    seen = []
    for bit in range(8):
        names = codec.error_names(1 << bit)
        expect(len(names) == 1, "bit %d -> %r" % (bit, names))
        expect(names[0] in codec.ERROR_TEXT, "bit %d has no text" % bit)
        seen.append(names[0])
    expect(len(set(seen)) == 8, "error names not distinct: %r" % seen)
    expect(codec.error_names(0x02) == ["no_data"], "0x02 is no requested data")
    expect(codec.error_names(0x06) == ["no_data", "unauthorised"], "two bits")
    expect("DI not supported" in codec.describe_error(0x02), codec.describe_error(0x02))


def check_error_reply():
    f = codec.decode(codec.error_reply("000012345678", codec.C_READ, 0x02))
    expect(f.control == 0xD1 and f.abnormal and f.error == 0x02, "0xD1 with error 0x02")


def check_follow_up():
    req = codec.decode(codec.follow_request("000012345678", "0001FF00", 1))
    expect(req.control == 0x12 and req.data == hx("00 FF 01 00 01"), "0x12 data DI+SEQ")
    r = codec.decode(codec.reply("000012345678", codec.C_READ, b"\x00\xff\x01\x00",
                                 follows=True))
    expect(r.control == 0xB1 and r.follows, "0xB1")
    r2 = codec.decode(codec.reply("000012345678", codec.C_READ_FOLLOW, b"\x00"))
    expect(r2.control == 0x92 and not r2.follows, "0x92")


def check_bad_checksum():
    good = codec.read_request("000012345678", "02030000")
    bad = good[:-2] + bytes(((good[-2] + 1) & 0xFF,)) + good[-1:]
    raises("checksum", codec.decode, bad)


def check_truncated_and_bad_end():
    good = codec.read_request("000012345678", "02030000")
    raises("truncated", codec.decode, good[:-3])
    raises("malformed", codec.decode, good[:-1] + b"\x00")


def check_scan_skips_garbage():
    good = codec.reply("000012345678", codec.C_READ, hx("00 00 03 02 45 23 01"))
    frame, used = codec.scan(b"\x00\x12\x68\x99" + good + b"\x55")
    expect(frame is not None and frame.address == "000012345678", "frame found")
    expect(used == 4 + len(good), "consumed up to the frame's end: %d" % used)
    frame, used = codec.scan(good[:9])
    expect(frame is None, "incomplete stays None")
    expect(codec.frame_length(good) == len(good), "frame_length")


def check_item_data():
    a = "000012345678"
    r = codec.decode(codec.reply(a, codec.C_READ, hx("00 00 03 02 45 23 01")))
    expect(codec.item_data(r, 0x02030000, codec.C_READ) == hx("45 23 01"), "value bytes")
    raises("malformed", codec.item_data, r, 0x02040000, codec.C_READ)
    raises("malformed", codec.item_data, r, 0x02030000, codec.C_READ_FOLLOW)
    e = codec.decode(codec.error_reply(a, codec.C_READ, 0x02))
    try:
        codec.item_data(e, 0x02030000, codec.C_READ)
        raise CheckFailed("an error reply gave data")
    except codec.FrameError as err:
        expect(err.kind == "error" and err.code == 0x02, "error kind and code")
    f = codec.decode(codec.reply(a, codec.C_READ_FOLLOW, hx("00 00 03 02 11 22 01")))
    expect(codec.item_data(f, 0x02030000, codec.C_READ_FOLLOW) == hx("11 22"),
           "follow-up drops its frame number")


def check_di_order():
    expect(codec.di_bytes("02030000") == hx("00 00 03 02"), "DI0 first")
    expect(codec.di_int("0201FF00") == 0x0201FF00, "di_int")
    expect(codec.di_text(0x00010000) == "00010000", "di_text")


if __name__ == "__main__":
    raise SystemExit(run(globals()))
