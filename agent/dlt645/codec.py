"""DL/T 645-2007 frames, addresses and BCD values: pure, and MicroPython-safe.

This module is the only place that knows the DL/T 645-2007 byte layout. The agent's
transport, the simulated meters in hil/, ``loadwatch read/scan`` and the MCU app
(firmware_bridge/device) all use it, so like agent/signature it imports nothing (no typing,
dataclasses, enum; no ``assert`` for protocol data) and is tested on CPython and on the
MicroPython unix port by the same check file (tests/dlt/codec_checks.py).

A frame (DL/T 645-2007 section 7.1)::

    FE FE FE FE   68  A0 A1 A2 A3 A4 A5  68  C  L  DATA(L bytes)  CS  16
    wake-up       start  address        start       each +0x33   sum  end

* The four FE bytes wake the receiver up; they are not part of the frame, and a reader
  skips any number of them (and any other garbage) before the first 0x68.
* The address is 12 BCD digits sent **low byte first**: meter ``000012345678`` is
  ``78 56 34 12 00 00`` on the wire. ``AAAAAAAAAAAA`` is the broadcast address of the
  0x13 read-address request (one meter on the line only); 999999999999 is the broadcast
  of time sync, never used here.
* C, the control code: bit 7 direction (1: reply from the meter), bit 6 abnormal reply,
  bit 5 follow-up frame exists, bits 4..0 the function (0x11 read data, 0x12 read
  follow-up data, 0x13 read address).  So a read is answered 0x91 (normal), 0xB1 (normal,
  more follows: ask again with 0x12), or 0xD1 (error, one error byte follows).
* Every DATA byte goes on the wire plus 0x33 (mod 256), the receiver subtracts it.
* CS is the sum mod 256 of every byte from the first 0x68 to the last DATA byte.
* Data identifiers (DI) are 4 bytes DI3 DI2 DI1 DI0, written here as 8 hex digits
  high byte first (``"02030000"`` total active power) and sent low byte first (DI0 first).
* Values are BCD, low byte first; where the standard allows a sign it is the top bit of
  the highest byte (section 7.2 and appendix A: e.g. power XX.XXXX kW, 3 bytes, signed).
"""

PREAMBLE = b"\xfe\xfe\xfe\xfe"
START = 0x68
END = 0x16
OFFSET = 0x33
BROADCAST = "AAAAAAAAAAAA"

C_READ = 0x11
C_READ_FOLLOW = 0x12
C_READ_ADDRESS = 0x13
C_REPLY = 0x80  # direction bit: the meter answers
C_ABNORMAL = 0x40
C_FOLLOWS = 0x20
FUNCTION_MASK = 0x1F

# The error information byte of an abnormal reply (0xD1, 0xD2), section 7.3 / table 4:
# bit 0 other error, bit 1 no requested data, bit 2 password error / not authorised,
# bit 3 baud rate cannot be changed, bit 4 too many year time zones, bit 5 too many day
# periods, bit 6 too many tariffs, bit 7 reserved.
ERROR_BITS = (
    (0x01, "other_error"),
    (0x02, "no_data"),
    (0x04, "unauthorised"),
    (0x08, "baud_unchangeable"),
    (0x10, "too_many_year_zones"),
    (0x20, "too_many_day_periods"),
    (0x40, "too_many_tariffs"),
    (0x80, "reserved"),
)
ERROR_TEXT = {
    "other_error": "other error",
    "no_data": "no such data (DI not supported)",
    "unauthorised": "password wrong or not authorised",
    "baud_unchangeable": "baud rate cannot be changed",
    "too_many_year_zones": "too many year time zones",
    "too_many_day_periods": "too many day time periods",
    "too_many_tariffs": "too many tariffs",
    "reserved": "reserved error bit 7",
}

# A frame carries at most 200 data bytes for a read reply (section 7.1, L <= 200).
MAX_DATA = 200
FRAME_OVERHEAD = 12  # 68 + 6 address + 68 + C + L + CS + 16


# A meter that answers "more follows" more often than this is broken, not long-winded:
# the biggest block a profile plans fits one frame (agent/profiles checks MAX_DATA).
MAX_FOLLOW_UPS = 8


class FrameError(ValueError):
    """Bytes that are not a good answer. ``kind`` says which way (for quality flags):
    "checksum", "truncated", "malformed", "bcd", or "error" for an abnormal reply, whose
    error byte is ``code``."""

    def __init__(self, kind, message, code=0):
        super().__init__(message)
        self.kind = kind
        self.code = code


def error_names(err):
    """The names of the bits set in an error byte, lowest bit first ("none" for 0)."""
    names = [name for bit, name in ERROR_BITS if err & bit]
    return names if names else ["none"]


def describe_error(err):
    """One line for a technician: ``error 0x02: no such data (DI not supported)``."""
    return "error 0x%02X: %s" % (err, ", ".join(ERROR_TEXT.get(n, n) for n in error_names(err)))


# ----------------------------------------------------------------- addresses


def _is_digits(s):
    if len(s) == 0:
        return False
    for ch in s:
        if ch < "0" or ch > "9":
            return False
    return True


def check_address(text):
    """Return ``text`` if it is a 12-digit meter address, else raise ValueError saying why.

    Printed labels sometimes drop leading zeros; those are not guessed here, because the
    wrong guess reads another meter: the technician must write all 12 digits.
    """
    if not isinstance(text, str):
        raise ValueError("%r must be a string of 12 digits" % (text,))
    if len(text) != 12 or not _is_digits(text):
        raise ValueError("%r is not a 12-digit DL/T 645 address (e.g. \"000012345678\")"
                         % (text,))
    return text


def address_bytes(text):
    """The 6 wire bytes (low byte first) of a 12-digit address or of ``BROADCAST``."""
    if text == BROADCAST or text == BROADCAST.lower():
        return b"\xaa" * 6
    check_address(text)
    out = bytearray(6)
    for i in range(6):
        hi = ord(text[2 * i]) - 48
        lo = ord(text[2 * i + 1]) - 48
        out[5 - i] = (hi << 4) | lo
    return bytes(out)


def address_text(wire):
    """The 12-digit address of 6 wire bytes (low byte first); AA bytes read as 'AA'."""
    if len(wire) != 6:
        raise FrameError("malformed", "an address is 6 bytes, got %d" % len(wire))
    parts = []
    for i in range(5, -1, -1):
        b = wire[i]
        if b == 0xAA:
            parts.append("AA")
            continue
        if (b >> 4) > 9 or (b & 0x0F) > 9:
            raise FrameError("bcd", "address byte 0x%02X is not BCD" % b)
        parts.append("%d%d" % (b >> 4, b & 0x0F))
    return "".join(parts)


# ----------------------------------------------------------------- data identifiers


def di_bytes(di):
    """``"02030000"`` (DI3..DI0) -> the 4 data bytes as sent, DI0 first (before +0x33)."""
    if isinstance(di, int):
        v = di
    else:
        if len(di) != 8:
            raise ValueError("a data identifier is 8 hex digits, got %r" % (di,))
        v = int(di, 16)
    if v < 0 or v > 0xFFFFFFFF:
        raise ValueError("data identifier out of range: %r" % (di,))
    return bytes((v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF, (v >> 24) & 0xFF))


def di_int(di):
    """A DI as an integer (DI3 in the top byte), from text or int."""
    b = di_bytes(di)
    return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)


def di_text(value):
    """An integer DI as 8 upper-case hex digits, DI3 first."""
    return "%08X" % value


def di_from_data(data):
    """The DI at the start of a (plain, -0x33 already) reply's data."""
    if len(data) < 4:
        raise FrameError("truncated", "reply data of %d bytes has no data identifier"
                         % len(data))
    return data[0] | (data[1] << 8) | (data[2] << 16) | (data[3] << 24)


# ----------------------------------------------------------------- BCD values


def parse_format(fmt):
    """``"XX.XXXX"`` -> (digits 6, decimals 4, bytes 3): the standard's own notation."""
    if not fmt:
        raise ValueError("empty format")
    digits = 0
    decimals = 0
    seen_point = False
    for ch in fmt:
        if ch == "X":
            digits += 1
            if seen_point:
                decimals += 1
        elif ch == "." and not seen_point:
            seen_point = True
        else:
            raise ValueError("format %r: only X digits and one '.' (e.g. \"XX.XXXX\")"
                             % (fmt,))
    if digits == 0 or digits % 2:
        raise ValueError("format %r: the digits must fill whole bytes (an even count)"
                         % (fmt,))
    return digits, decimals, digits // 2


def bcd_decode(data, decimals, signed):
    """BCD bytes (low byte first) -> number; raises FrameError("bcd") on a non-BCD
    nibble. With ``signed`` the top bit of the last (highest) byte is the sign."""
    n = len(data)
    if n == 0:
        raise FrameError("truncated", "no bytes for a value")
    v = 0
    negative = False
    for i in range(n - 1, -1, -1):
        b = data[i]
        if i == n - 1 and signed:
            negative = (b & 0x80) != 0
            b &= 0x7F
        hi = b >> 4
        lo = b & 0x0F
        if hi > 9 or lo > 9:
            raise FrameError("bcd", "byte 0x%02X is not BCD" % data[i])
        v = v * 100 + hi * 10 + lo
    x = v / (10 ** decimals) if decimals else float(v)
    return -x if negative else x


def bcd_encode(value, nbytes, decimals, signed):
    """A number -> BCD bytes (low byte first), rounded to ``decimals`` and clamped to
    what the width can hold (the top digit has 3 bits left when signed)."""
    negative = value < 0
    if negative and not signed:
        value = 0.0
        negative = False
    scaled = int(abs(value) * (10 ** decimals) + 0.5)
    top = 10 ** (2 * nbytes) - 1
    if signed:
        top = 7 * 10 ** (2 * nbytes - 1) + (10 ** (2 * nbytes - 1) - 1)
    if scaled > top:
        scaled = top
    out = bytearray(nbytes)
    for i in range(nbytes):
        two = scaled % 100
        scaled //= 100
        out[i] = ((two // 10) << 4) | (two % 10)
    if negative and any(out):
        out[nbytes - 1] |= 0x80
    return bytes(out)


# ----------------------------------------------------------------- frames


def checksum(body):
    """Sum mod 256 of every byte from the first 0x68 to the last data byte."""
    s = 0
    for b in body:
        s += b
    return s & 0xFF


def encode(address, control, data=b"", preamble=True):
    """One frame. ``address`` is 12 digits (or BROADCAST), ``data`` the plain bytes
    (the +0x33 is added here)."""
    if len(data) > 255:
        raise ValueError("DL/T 645 data is at most 255 bytes, got %d" % len(data))
    body = bytearray()
    body.append(START)
    body.extend(address_bytes(address))
    body.append(START)
    body.append(control & 0xFF)
    body.append(len(data))
    for b in data:
        body.append((b + OFFSET) & 0xFF)
    body.append(checksum(body))
    body.append(END)
    return (PREAMBLE + bytes(body)) if preamble else bytes(body)


def read_request(address, di):
    """0x11: read the data item ``di`` (``"02030000"`` or an int) of meter ``address``."""
    return encode(address, C_READ, di_bytes(di))


def follow_request(address, di, seq):
    """0x12: the follow-up frame number ``seq`` (1, 2, ...) of an 0xB1 reply."""
    return encode(address, C_READ_FOLLOW, di_bytes(di) + bytes((seq & 0xFF,)))


def read_address_request():
    """0x13 to AAAAAAAAAAAA: the only meter on the line answers with its address."""
    return encode(BROADCAST, C_READ_ADDRESS)


class Frame:
    """A decoded frame: ``address`` (12 digits), ``control``, ``data`` (plain bytes)."""

    __slots__ = ("address", "control", "data")

    def __init__(self, address, control, data):
        self.address = address
        self.control = control
        self.data = data

    @property
    def is_reply(self):
        return (self.control & C_REPLY) != 0

    @property
    def abnormal(self):
        return (self.control & C_ABNORMAL) != 0

    @property
    def follows(self):
        return (self.control & C_FOLLOWS) != 0

    @property
    def function(self):
        return self.control & FUNCTION_MASK

    @property
    def error(self):
        """The error byte of an abnormal reply (0 when there is none)."""
        if self.abnormal and len(self.data) >= 1:
            return self.data[0]
        return 0

    def __repr__(self):
        return "Frame(%s, C=0x%02X, %d bytes)" % (self.address, self.control, len(self.data))


def decode(frame):
    """Exactly one frame (preamble FE bytes allowed) -> Frame; raises FrameError."""
    i = 0
    n = len(frame)
    while i < n and frame[i] == 0xFE:
        i += 1
    got, used = scan(frame[i:])
    if got is None:
        raise FrameError("truncated", "incomplete frame (%d bytes)" % (n - i))
    if i + used != n:
        raise FrameError("malformed", "%d bytes after the frame's end" % (n - i - used))
    return got


def scan(buf):
    """Find the first frame in a byte stream. Returns ``(frame, consumed)``:

    * ``(Frame, k)``: a good frame ends at ``buf[k - 1]``; anything before it (FE
      preamble, garbage, a broken frame) was skipped;
    * ``(None, k)``: no complete frame yet; ``buf[:k]`` can be thrown away (it cannot
      start one), the rest may still become a frame when more bytes arrive.

    A frame with a bad checksum or a bad end byte raises FrameError after the garbage
    before it: the caller knows bytes arrived but they were wrong (a "crc" failure).
    """
    n = len(buf)
    i = 0
    while True:
        while i < n and buf[i] != START:
            i += 1
        if i >= n:
            return None, n
        if n - i < 10:
            return None, i
        if buf[i + 7] != START:
            i += 1  # a stray 0x68 in garbage: look for the next one
            continue
        length = buf[i + 9]
        total = FRAME_OVERHEAD + length
        if n - i < total:
            return None, i
        body = buf[i:i + 10 + length]
        cs = buf[i + 10 + length]
        if buf[i + total - 1] != END:
            raise FrameError("malformed", "frame does not end in 0x16 (got 0x%02X)"
                             % buf[i + total - 1])
        if checksum(body) != cs:
            raise FrameError("checksum", "bad checksum: got 0x%02X, computed 0x%02X"
                             % (cs, checksum(body)))
        wire = buf[i + 1:i + 7]
        address = address_text(bytes(wire))
        data = bytearray(length)
        for k in range(length):
            data[k] = (buf[i + 10 + k] - OFFSET) & 0xFF
        return Frame(address, buf[i + 8], bytes(data)), i + total


def frame_length(buf):
    """Bytes of the frame that starts at ``buf``'s first 0x68 (wake-up and garbage
    before it counted), or -1 when not yet known. For links that must find frame ends."""
    i = 0
    n = len(buf)
    while i < n and buf[i] != START:
        i += 1
    if n - i < 10:
        return -1
    return i + FRAME_OVERHEAD + buf[i + 9]


def item_data(frame, di, function):
    """The value bytes a reply carries for a read of ``di`` (0x11) or its follow-up
    (0x12, whose last byte, the frame number, is dropped). Raises FrameError: "error"
    for an abnormal reply (``code`` = its error byte), "malformed" for an answer to
    another function or another DI. Shared by the agent's transport and the MCU master
    so both judge a reply the same way."""
    if frame.function != function:
        raise FrameError("malformed", "answered function 0x%02X to 0x%02X"
                         % (frame.function, function))
    if frame.abnormal:
        raise FrameError("error", "DI %s: %s" % (di_text(di), describe_error(frame.error)),
                         frame.error)
    got = di_from_data(frame.data)
    if got != di:
        raise FrameError("malformed", "answered DI %s to a read of %s"
                         % (di_text(got), di_text(di)))
    if function == C_READ_FOLLOW:
        return frame.data[4:-1]
    return frame.data[4:]


# ----------------------------------------------------------------- replies (meter side)


def reply(address, request_function, data, follows=False):
    """A normal reply (0x91 / 0xB1 to a read, 0x92 / 0xB2 to a follow-up, 0x93)."""
    c = C_REPLY | (request_function & FUNCTION_MASK)
    if follows:
        c |= C_FOLLOWS
    return encode(address, c, data)


def error_reply(address, request_function, err):
    """An abnormal reply (0xD1 / 0xD2) carrying the error byte ``err``."""
    return encode(address, C_REPLY | C_ABNORMAL | (request_function & FUNCTION_MASK),
                  bytes((err & 0xFF,)))
