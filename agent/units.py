"""Unit mistakes in a load export, told from the data itself.

An AMI export with milliseconds in the timestamp column, or kW in a column named ``p_w``,
parses without a single error and then scores nonsense (every slot a thousand times too
long, or a miner's 3 kW read as 3 W). Both are obvious from a sample of the values, so
``loadwatch screen`` looks before it scores and stops with a message naming the fix. The
checks are plain Python over a sample of values, so ``replay`` can use them on its first
rows as well.
"""

from __future__ import annotations

from collections.abc import Sequence

# UNIX seconds reach 1e11 in the year 5138; UNIX milliseconds passed it in 1973.
MS_THRESHOLD = 1e11
# A household meter in watts whose 95th percentile is below this many watts is empty all the
# time; in kW it is an ordinary home (0.1-3 kW). Needs at least MIN_VALUES values to judge.
KW_IN_W_P95 = 25.0
# A "kW" column whose median is above this many kW is watts (no home's median is 200 kW).
W_IN_KW_MEDIAN = 200.0
MIN_VALUES = 100


class UnitProblem:
    """One unit mistake found: ``kind`` is one of KINDS, ``message`` says what and the fix."""

    KINDS = ("ms_timestamps", "kw_in_w_column", "w_in_kw_column")
    __slots__ = ("kind", "message")

    def __init__(self, kind: str, message: str) -> None:
        if kind not in self.KINDS:
            raise ValueError("unknown unit problem %r" % kind)
        self.kind = kind
        self.message = message

    def __repr__(self) -> str:
        return "UnitProblem(%r, %r)" % (self.kind, self.message)


def _quantile(sorted_vals: Sequence[float], q: float) -> float:
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


def check_timestamps(ts: Sequence[float]) -> UnitProblem | None:
    """Milliseconds (or finer) given as seconds: the median is beyond the year 5138."""
    vals = sorted(t for t in ts if t == t)
    if not vals:
        return None
    med = _quantile(vals, 0.5)
    if med >= MS_THRESHOLD:
        return UnitProblem("ms_timestamps",
                           "timestamps look like milliseconds, not seconds (median %.6g is "
                           "after the year 5000); convert them, or say --time-unit ms" % med)
    return None


def check_power(watts: Sequence[float], column: str = "p_w", too_small_fix: str = "",
                too_large_fix: str = "") -> UnitProblem | None:
    """Powers a thousand times too small (kW read as W) or too large (W read as kW).

    ``watts`` are the values as the reader understood them, in W; ``column`` names where
    they came from and the fixes are appended to the message.
    """
    vals = sorted(p for p in watts if p == p and p >= 0.0)
    if len(vals) < MIN_VALUES:
        return None
    p95 = _quantile(vals, 0.95)
    if p95 < KW_IN_W_P95:
        return UnitProblem("kw_in_w_column",
                           "%s looks like kW, not W (95%% of the values are below %.3g W; a "
                           "home in watts is well above that)%s"
                           % (column, p95, "; " + too_small_fix if too_small_fix else ""))
    med = _quantile(vals, 0.5)
    if med > W_IN_KW_MEDIAN * 1000.0:
        return UnitProblem("w_in_kw_column",
                           "%s looks like W, not kW (median %.6g kW; no home draws that)%s"
                           % (column, med / 1000.0,
                              "; " + too_large_fix if too_large_fix else ""))
    return None
