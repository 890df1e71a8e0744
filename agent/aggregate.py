"""Slot aggregates for the telemetry topic.

The utility does not want every 10-s sample (the whole point of scoring on the gateway),
but it does want a compact record per meter and slot: mean, min and max power, energy
used, power factor and how many samples were good or bad. Pure: time comes in as ``t``.
"""

from __future__ import annotations

import math

from agent.model import Reading, quality_names


class SlotAggregate:
    """Accumulates readings of one meter and closes a slot every ``slot_s`` seconds
    (aligned to UNIX time, so all meters' slots line up)."""

    def __init__(self, slot_s: float):
        if slot_s <= 0:
            raise ValueError("slot_s must be > 0")
        self.slot_s = slot_s
        self.slot_start: float | None = None
        self._reset()

    def _reset(self) -> None:
        self.n_good = 0
        self.n_bad = 0
        self.p_sum = 0.0
        self.p_min = math.inf
        self.p_max = -math.inf
        self.pf_sum = 0.0
        self.n_pf = 0
        self.e_first: float | None = None
        self.e_last: float | None = None
        self.flags = 0

    def add(self, reading: Reading) -> dict | None:
        """Add one reading; return the closed slot's aggregate when it rolls over."""
        start = math.floor(reading.t / self.slot_s) * self.slot_s
        closed = None
        if self.slot_start is None:
            self.slot_start = start
        elif start > self.slot_start:
            closed = self.close()
            self.slot_start = start
        elif start < self.slot_start:
            # Clock went backwards: count it as bad data in the current slot, learn nothing.
            self.n_bad += 1
            return None
        if reading.scorable and "p_w" in reading.values:
            p = reading.values["p_w"]
            self.n_good += 1
            self.p_sum += p
            self.p_min = min(self.p_min, p)
            self.p_max = max(self.p_max, p)
            pf = reading.values.get("pf")
            if pf is not None:
                self.pf_sum += abs(pf)
                self.n_pf += 1
            e = reading.values.get("e_import_kwh")
            if e is not None:
                if self.e_first is None:
                    self.e_first = e
                self.e_last = e
        else:
            self.n_bad += 1
        self.flags |= reading.quality
        return closed

    def state(self) -> dict:
        """The open slot as JSON-able finite numbers, checkpointed with the detector so a
        crash does not lose a partly filled slot (an hourly slot is rarely completed by a
        gateway that restarts every few minutes)."""
        good = self.n_good > 0
        return {"slot_s": self.slot_s, "slot_start": self.slot_start, "n_good": self.n_good,
                "n_bad": self.n_bad, "p_sum": self.p_sum,
                "p_min": self.p_min if good else None, "p_max": self.p_max if good else None,
                "pf_sum": self.pf_sum, "n_pf": self.n_pf, "e_first": self.e_first,
                "e_last": self.e_last, "flags": self.flags}

    @classmethod
    def from_state(cls, slot_s: float, state: dict) -> SlotAggregate:
        """The aggregate continuing ``state``; ValueError/KeyError/TypeError when it does
        not fit (another slot length: the slot is then simply started afresh)."""
        a = cls(slot_s)
        if float(state["slot_s"]) != float(slot_s):
            raise ValueError("telemetry slot was %r s, settings say %r s"
                             % (state["slot_s"], slot_s))
        start = state["slot_start"]
        a.slot_start = None if start is None else float(start)
        a.n_good = int(state["n_good"])
        a.n_bad = int(state["n_bad"])
        a.p_sum = float(state["p_sum"])
        if a.n_good > 0:
            a.p_min = float(state["p_min"])
            a.p_max = float(state["p_max"])
        a.pf_sum = float(state["pf_sum"])
        a.n_pf = int(state["n_pf"])
        a.e_first = None if state["e_first"] is None else float(state["e_first"])
        a.e_last = None if state["e_last"] is None else float(state["e_last"])
        a.flags = int(state["flags"])
        return a

    def close(self) -> dict | None:
        """The aggregate of the current slot (None when it saw nothing), then reset."""
        if self.slot_start is None or (self.n_good + self.n_bad) == 0:
            self._reset()
            return None
        out = {
            "slot_start": self.slot_start,
            "slot_s": self.slot_s,
            "samples": self.n_good,
            "bad_samples": self.n_bad,
            "p_mean_w": self.p_sum / self.n_good if self.n_good else None,
            "p_min_w": self.p_min if self.n_good else None,
            "p_max_w": self.p_max if self.n_good else None,
            "pf_mean": self.pf_sum / self.n_pf if self.n_pf else None,
            "energy_kwh": (self.e_last - self.e_first)
            if self.e_first is not None and self.e_last is not None else None,
            # The meter's absolute import counter at the slot's last good reading: what a
            # total_increasing energy sensor (Home Assistant) needs; None without one.
            "e_import_kwh": self.e_last,
            "quality": quality_names(self.flags),
        }
        self._reset()
        return out
