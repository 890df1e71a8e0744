"""Is this reply the answer to that request? A pure check of the raw bytes.

pymodbus matches a reply to its request by transaction id (TCP) and unit, but it decodes
whatever function code the reply carries and reads as many registers as the reply's byte
count says: a function 3 reply to a function 4 request, or 8 registers for 6 asked, come
back as a success (issue 11: 66,666 W from the wrong register bank scored for 140
samples). So the transport keeps the raw frames it sent and received and asks
``wrong_reply()`` before it believes the registers.

Frames, after the Modbus Application Protocol V1.1b3 (6.3, 6.4: function 3/4 replies carry
a byte count of 2 x N registers) and Modbus over Serial Line V1.02 (2.5.1 RTU framing,
6.2.2 CRC): a Modbus TCP reply is MBAP (transaction, protocol, length, unit) + PDU; an RTU
reply is unit + PDU + CRC-16, possibly after line noise.
"""

from __future__ import annotations

import struct

SOCKET = "socket"
RTU = "rtu"


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """Modbus RTU CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF), one table lookup
    per byte: the frame search below may try a few hundred candidate frames in noise."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc


def _rtu_frame(received: bytes) -> tuple[int, bytes] | None:
    """(unit, PDU) of the first CRC-valid RTU frame in ``received``; None if there is none.
    A function 3/4 reply's length follows from its byte count; an exception reply is 5
    bytes. Scanning every start skips noise before the frame, as the line would."""
    n = len(received)
    for p in range(max(0, n - 4)):
        fc = received[p + 1]
        size = 5 if fc & 0x80 else received[p + 2] + 5
        if p + size > n:
            continue
        frame = received[p:p + size]
        if struct.unpack("<H", frame[-2:])[0] == crc16(frame[:-2]):
            return frame[0], frame[1:-2]
    return None


def _socket_frame(sent: bytes, received: bytes) -> tuple[int, bytes, str] | None:
    """(unit, PDU, problem) of the MBAP frame at the start of ``received``."""
    if len(received) < 9:
        return None
    tid, _pid, length, unit = struct.unpack(">HHHB", received[:7])
    problem = ""
    if len(sent) >= 2 and tid != struct.unpack(">H", sent[:2])[0]:
        problem = ("the answer to another request (transaction %d, this one was %d)"
                   % (tid, struct.unpack(">H", sent[:2])[0]))
    return unit, received[7:6 + length], problem


def wrong_reply(framer: str, sent: bytes, received: bytes, unit: int, fc: int,
                count: int) -> str:
    """What is wrong with ``received`` as the reply to a read of ``count`` registers with
    function ``fc`` from ``unit``; "" when it is right or holds no complete frame to judge
    (then it is noise or nothing, which the caller reports as such)."""
    if framer == SOCKET:
        found = _socket_frame(sent, received)
        if found is None:
            return ""
        r_unit, pdu, problem = found
        if problem:
            return problem
    else:
        rtu = _rtu_frame(received)
        if rtu is None:
            return ""
        r_unit, pdu = rtu
    if r_unit != unit:
        return "unit %d answered a request to unit %d" % (r_unit, unit)
    if not pdu:
        return "an empty reply"
    r_fc = pdu[0]
    if r_fc & 0x7F != fc:
        return "a function %d reply to a function %d request" % (r_fc & 0x7F, fc)
    if r_fc & 0x80:
        return ""  # an exception reply to this request: reported as the exception
    if len(pdu) < 2:
        return "a reply without a byte count"
    byte_count = pdu[1]
    if byte_count != 2 * count:
        return "byte count %d for %d registers (expected %d)" % (byte_count, count, 2 * count)
    if len(pdu) - 2 != byte_count:
        return "byte count %d but %d data bytes" % (byte_count, len(pdu) - 2)
    return ""
