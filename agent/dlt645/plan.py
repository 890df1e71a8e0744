"""Which DL/T 645 data identifiers to read for a meter: pure request planning.

The Modbus side coalesces registers (agent/modbus/blocks.py); here the unit of a request
is a data identifier, and the only saving is a *block* DI (``0203FF00``: total and phase
active power in one reply) where the profile says the meter class answers it. A block is
read when two or more of its members are wanted (one member alone is cheaper read on its
own: same round trip, fewer bytes on a 2400-baud line).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from agent.profiles import DiField, Profile


class ItemRequest:
    """One 0x11 read: the DI and the quantities its reply carries, back to back."""

    __slots__ = ("di", "fields")

    def __init__(self, di: int, fields: tuple[DiField, ...]):
        self.di = di
        self.fields = fields

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def reply_bytes(self) -> int:
        """Data bytes of the reply: the DI echoed plus every value."""
        return 4 + sum(f.size for f in self.fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ItemRequest) and (self.di, self.names) == (other.di,
                                                                             other.names)

    def __hash__(self) -> int:
        return hash(self.di)

    def __repr__(self) -> str:
        return "ItemRequest(%08X, %s)" % (self.di, ", ".join(self.names))


def plan_items(profile: Profile, names: tuple[str, ...] | list[str]) -> list[ItemRequest]:
    """The reads that fetch every quantity in ``names``, in profile order."""
    wanted = [n for n in profile.quantities if n in set(names)]
    out: list[ItemRequest] = []
    done: set[str] = set()
    for block in profile.blocks:
        hits = [m for m in block.members if m in wanted]
        if len(hits) >= 2:
            out.append(ItemRequest(block.di, tuple(profile.quantities[m]
                                                   for m in block.members)))
            done.update(block.members)
    for n in wanted:
        if n not in done:
            out.append(ItemRequest(profile.quantities[n].di, (profile.quantities[n],)))
    return out
