"""Request planning: which registers to read, in as few requests as possible (pure).

After Telegraf's ``groupFieldsToRequests``: fields of one function code are sorted by
address and cut into contiguous reads. A read may span up to ``max_gap`` unwanted
registers between two wanted fields (reading 10 spare registers costs 20 bytes on the
wire; a second request costs a request frame, a response header, a CRC each way, two
3.5-character silences and the meter's turnaround) and at most ``max_count`` registers
(125 by the Modbus spec, fewer on some meters).

Because fields of one function code never overlap (profiles are validated), any read
covers a run of consecutive fields in address order, so the optimum is found by dynamic
programming over the sorted fields: fewest requests first, then fewest registers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from agent.profiles import Field

MODBUS_MAX_REGISTERS = 125


class ReadRequest:
    """One read: function code, first register, register count, and the fields it covers."""

    __slots__ = ("address", "count", "fc", "fields")

    def __init__(self, fc: int, address: int, count: int, fields: list[str]):
        self.fc = fc
        self.address = address
        self.count = count
        self.fields = fields

    @property
    def end(self) -> int:
        return self.address + self.count

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReadRequest) and (
            self.fc, self.address, self.count, self.fields) == (
            other.fc, other.address, other.count, other.fields)

    def __hash__(self) -> int:
        return hash((self.fc, self.address, self.count))

    def __repr__(self) -> str:
        return "ReadRequest(fc=%d, address=%d, count=%d, fields=%r)" % (
            self.fc, self.address, self.count, self.fields)


def plan_reads(fields: Iterable[Field], max_gap: int, max_count: int) -> list[ReadRequest]:
    """The fewest reads (then the fewest registers) covering every field.

    Requests come out ordered by function code, then address. Raises ValueError when
    one field alone does not fit ``max_count`` or when fields of one function code
    overlap (a profile would have been rejected earlier).
    """
    if max_gap < 0:
        raise ValueError("max_gap must be >= 0, got %r" % max_gap)
    if not 1 <= max_count <= MODBUS_MAX_REGISTERS:
        raise ValueError("max_count must be 1..%d, got %r" % (MODBUS_MAX_REGISTERS, max_count))
    unique: dict[str, Field] = {}
    for f in fields:
        unique.setdefault(f.name, f)
    by_fc: dict[int, list[Field]] = {}
    for f in unique.values():
        if f.size > max_count:
            raise ValueError("field %s needs %d registers but a read may have only %d"
                             % (f.name, f.size, max_count))
        by_fc.setdefault(f.fc, []).append(f)
    out: list[ReadRequest] = []
    for fc in sorted(by_fc):
        group = sorted(by_fc[fc], key=lambda f: f.address)
        for a, b in zip(group, group[1:]):
            if b.address < a.address + a.size:
                raise ValueError("fields %s and %s overlap" % (a.name, b.name))
        out.extend(_plan_one_fc(fc, group, max_gap, max_count))
    return out


def _plan_one_fc(fc: int, group: list[Field], max_gap: int,
                 max_count: int) -> list[ReadRequest]:
    n = len(group)
    inf = (n + 1, 1 << 30)
    # best[i] = (requests, registers) to cover group[:i]; prev[i] = start of the last read.
    best: list[tuple[int, int]] = [(0, 0)] + [inf] * n
    prev = [0] * (n + 1)
    for j in range(1, n + 1):
        last = group[j - 1]
        end = last.address + last.size
        # Extend the last read backwards over fields i..j-1 while it stays legal.
        for i in range(j - 1, -1, -1):
            if i < j - 1:
                gap = group[i + 1].address - (group[i].address + group[i].size)
                if gap > max_gap:
                    break
            count = end - group[i].address
            if count > max_count:
                break
            cand = (best[i][0] + 1, best[i][1] + count)
            if cand < best[j]:
                best[j] = cand
                prev[j] = i
    reads: list[ReadRequest] = []
    j = n
    while j > 0:
        i = prev[j]
        start = group[i].address
        end = group[j - 1].address + group[j - 1].size
        reads.append(ReadRequest(fc, start, end - start, [f.name for f in group[i:j]]))
        j = i
    reads.reverse()
    return reads


def rtu_request_bytes() -> int:
    """Size of a read request frame on RTU: unit, fc, address(2), count(2), CRC(2)."""
    return 8


def rtu_response_bytes(count: int) -> int:
    """Size of a read response on RTU: unit, fc, byte count, 2 per register, CRC(2)."""
    return 5 + 2 * count
