"""What was wrong with the input, counted per kind; summary.json reports every count.

A utility's export is never clean. Each kind of trouble has a field here (not a string
key repeated in five places) and a sentence that says what screen did about it.
"""

from __future__ import annotations

# field name -> what screen did, for the one-line messages at the end of a run
KINDS: dict[str, str] = {
    "bad_rows": "rows that could not be read (a field missing or not a number/time): skipped",
    "bad_points": "curve points that were empty or not numbers: skipped",
    "unsorted_rows": "rows earlier than a previous row of the same meter: sorted into place",
    "unsorted_meters": "meters whose rows were not in time order: sorted",
    "duplicate_rows": "rows repeating a meter's timestamp: the first kept, the rest dropped",
    "negative_values": "negative power values (export or wiring): dropped",
    "absurd_values": "power values above 1 MW (a garbage register, not a home): dropped",
    "bad_pf": "power factors outside 0..1: ignored (the power kept)",
    "dst_days": "daily curves with 92/100 points (46/50, 23/25): a clock change, read as "
                "contiguous points from local midnight",
    "missing_days": "whole days without any data inside meters' histories (not an error: "
                    "the detector waits for coverage)",
    "short_meters": "meters with a single row: nothing to score",
    "failed_meters": "meters whose scoring failed: reported in meters.parquet, run went on",
}


class Problems:
    """Counts of each input problem (see KINDS); adds up across meters and partitions."""

    __slots__ = tuple(KINDS)

    def __init__(self) -> None:
        for k in KINDS:
            setattr(self, k, 0)

    def add(self, other: Problems) -> None:
        for k in KINDS:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def as_dict(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in KINDS}

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> Problems:
        p = cls()
        for k in KINDS:
            setattr(p, k, int(d.get(k, 0)))
        return p

    def nonzero(self) -> list[tuple[str, int]]:
        return [(k, int(getattr(self, k))) for k in KINDS if getattr(self, k)]

    def brief(self) -> str:
        """``unsorted_rows=3;duplicate_rows=2`` (meters.parquet's problems column)."""
        return ";".join("%s=%d" % kv for kv in self.nonzero())

    def messages(self) -> list[str]:
        return ["%d %s" % (n, KINDS[k]) for k, n in self.nonzero()]
