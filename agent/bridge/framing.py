"""Frames of the serial link between a gateway MCU and the agent (both runtimes).

Why it is shaped so: a UART between two boards loses and garbles bytes, and either end
may reboot at any moment. Each frame is self-delimiting and checked, so a receiver can
resynchronise after garbage by searching for the next start marker and checking the CRC:

    0x7E 0x4C | type (1) | seq (2, big endian) | length (2, BE) | payload | CRC-32 (4, BE)

The CRC-32 (``binascii.crc32``, the zlib polynomial; present on CPython and on every
MicroPython port) covers type, seq, length and payload. Types:

* ``D`` data: a JSON payload (a reading, an event, a health record); acknowledged;
* ``H`` hello: sent once at boot with sequence 0, resets the receiver's duplicate filter
  (a rebooted MCU starts its numbering again); acknowledged;
* ``A`` ack: ``seq`` is the sequence acknowledged (no payload);
* ``N`` nak: a frame arrived corrupt; the sender retransmits its outstanding frame now
  instead of waiting for its ack timeout.

The sender keeps one frame outstanding (stop-and-wait): at meter poll rates the link is
idle most of the time, and it makes duplicates trivial to spot (same seq as the last one
delivered). No ``typing``, no ``__future__``, no ``assert``: MicroPython imports this file.
"""

import binascii
import struct

SYNC = b"\x7eL"
HEADER = 7  # sync (2) + type (1) + seq (2) + length (2)
TRAILER = 4
MAX_PAYLOAD = 4096
T_DATA = 0x44  # "D"
T_HELLO = 0x48  # "H"
T_ACK = 0x41  # "A"
T_NAK = 0x4E  # "N"
TYPES = (T_DATA, T_HELLO, T_ACK, T_NAK)


def crc32(data):
    return binascii.crc32(data) & 0xFFFFFFFF


def encode(ftype, seq, payload=b""):
    """One frame as bytes; ``payload`` is bytes (JSON text for data frames)."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("frame payload of %d bytes exceeds %d" % (len(payload), MAX_PAYLOAD))
    body = struct.pack(">BHH", ftype, seq & 0xFFFF, len(payload)) + payload
    return SYNC + body + struct.pack(">I", crc32(body))


class FrameReader:
    """Incremental decoder: ``feed(bytes)`` returns the complete, valid frames found.

    Garbage between frames is skipped; a frame whose CRC fails (or whose header is
    impossible) counts in ``corrupt`` and the search resumes one byte after its start
    marker, so a corrupt length field cannot swallow the frames behind it.
    ``corrupt_seen`` is set when a corrupt frame was found since the caller last
    cleared it: the receiver answers with a NAK.
    """

    def __init__(self):
        self.buf = bytearray()
        self.frames = 0
        self.corrupt = 0
        self.skipped = 0
        self.corrupt_seen = False

    def feed(self, data):
        if data:
            self.buf.extend(data)
        out = []
        buf = self.buf
        while True:
            i = bytes(buf).find(SYNC) if len(buf) >= 2 else -1
            if i < 0:
                # Keep a trailing first marker byte: the second may be in the next read.
                keep = 1 if len(buf) > 0 and buf[-1] == SYNC[0] else 0
                self.skipped += len(buf) - keep
                self.buf = buf = buf[len(buf) - keep:]
                return out
            if i > 0:
                self.skipped += i
                buf = buf[i:]
                self.buf = buf
            if len(buf) < HEADER:
                return out
            ftype, seq, n = struct.unpack(">BHH", bytes(buf[2:HEADER]))
            if ftype not in TYPES or n > MAX_PAYLOAD:
                self._bad()
                buf = buf[2:]
                self.buf = buf
                continue
            end = HEADER + n + TRAILER
            if len(buf) < end:
                return out
            body = bytes(buf[2:HEADER + n])
            (crc,) = struct.unpack(">I", bytes(buf[HEADER + n:end]))
            if crc != crc32(body):
                self._bad()
                buf = buf[2:]
                self.buf = buf
                continue
            self.frames += 1
            out.append((ftype, seq, bytes(buf[HEADER:HEADER + n])))
            buf = buf[end:]
            self.buf = buf

    def _bad(self):
        self.corrupt += 1
        self.corrupt_seen = True


class Receiver:
    """The accepting end's rules: ack every valid data/hello frame, deliver each once.

    ``accept(ftype, seq)`` returns (deliver, reply_frame): ``deliver`` is False for a
    duplicate (the sender missed our ack and retransmitted), which is acked again.
    """

    def __init__(self):
        self.last_seq = -1
        self.duplicates = 0
        self.hellos = 0

    def accept(self, ftype, seq):
        if ftype == T_HELLO:
            self.hellos += 1
            self.last_seq = seq
            return True, encode(T_ACK, seq)
        if ftype != T_DATA:
            return False, b""
        if seq == self.last_seq:
            self.duplicates += 1
            return False, encode(T_ACK, seq)
        self.last_seq = seq
        return True, encode(T_ACK, seq)


def next_seq(seq):
    """Data sequence numbers run 1..65535 and wrap to 1 (0 belongs to hello)."""
    seq += 1
    return 1 if seq > 0xFFFF else seq
