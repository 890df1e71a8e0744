"""The agent's learned state on disk (``state_dir/state.json``): read it whole, check it
whole, write it atomically.

Why so strict: this file is read once at every start, and under systemd a start that
fails is retried for ever, so anything a bad file can do must end in a *running* agent
that says loudly what it threw away. A file that is not the agent's JSON (torn, wrong
version, ``"meters": null``) is moved aside as ``state.json.corrupt-<unix time>`` and every
meter starts afresh; one meter's entry that is malformed or holds a non-finite number
(NaN/Infinity: Python's json module reads and writes those literals by default, and a NaN
in a detector's sums makes its score NaN for good) starts *that* meter afresh, with the
file copied aside for the post-mortem. Each case is one ``ERROR`` line naming the file.

Writing refuses non-finite numbers too (``allow_nan=False``): a meter whose state is not
finite keeps its last good entry on disk and is reported to the caller, which rebuilds
that meter's detector from it, so a NaN can neither reach the file nor blind detection.

Layout (version 1)::

    {"version": 1, "t": <clock time of the save>,
     "meters": {"<meter id>": {"detector": {...}, "policy": {...},
                               "slot": {...}, "clock": {...}}}}

Every per-meter key is optional (an older file lacks ``slot`` and ``clock``); ``clock`` is
the meter's agent/clockguard.py state (the latest time it trusted).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

log = logging.getLogger("loadwatch.state")

STATE_FILE = "state.json"
STATE_VERSION = 1
_DICT_KEYS = ("detector", "policy", "slot", "clock")


class _NonFinite:
    """What a NaN/Infinity literal parses to: found by the whole-file check, never used."""


_NON_FINITE = _NonFinite()


def _parse_constant(name: str) -> _NonFinite:
    return _NON_FINITE


def non_finite_path(value: object, where: str = "") -> str | None:
    """The path of the first non-finite number in a JSON-able value (None: all finite)."""
    if value is _NON_FINITE or (isinstance(value, float) and not math.isfinite(value)):
        return where or "(top)"
    if isinstance(value, dict):
        for k, v in value.items():
            found = non_finite_path(v, "%s.%s" % (where, k) if where else str(k))
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = non_finite_path(v, "%s[%d]" % (where, i))
            if found:
                return found
    return None


def _meter_problem(entry: object) -> str | None:
    if not isinstance(entry, dict):
        return "is %s, not an object" % type(entry).__name__
    for k in _DICT_KEYS:
        if k in entry and not isinstance(entry[k], dict):
            return "%s is %s, not an object" % (k, type(entry[k]).__name__)
    bad = non_finite_path(entry)
    if bad:
        return "%s is not a finite number" % bad
    return None


class Saved:
    """What a start-up found on disk: per-meter entries (checked) and the saved time."""

    def __init__(self, meters: dict[str, dict] | None = None, t: float | None = None):
        self.meters = meters if meters is not None else {}
        self.t = t


class StateFile:
    """``state.json`` of one agent: ``load()`` once at start, ``save()`` at checkpoints."""

    def __init__(self, state_dir: str | os.PathLike):
        self.path = Path(state_dir) / STATE_FILE
        # The last entry written or read per meter that was finite: what a meter with a
        # non-finite state keeps on disk (and is rebuilt from).
        self.last_good: dict[str, dict] = {}

    # ----------------------------------------------------------------- reading

    def load(self) -> Saved:
        """The saved state, every part checked; never raises for anything in the file."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return Saved()
        except (OSError, UnicodeDecodeError) as e:
            return self._reject("unreadable (%s)" % e)
        try:
            data = json.loads(text, parse_constant=_parse_constant)
        except ValueError as e:
            return self._reject("not JSON (%s)" % e)
        if not isinstance(data, dict):
            return self._reject("holds %s, not an object" % type(data).__name__)
        if data.get("version") != STATE_VERSION:
            return self._reject("has version %r, this agent reads %d"
                                % (data.get("version"), STATE_VERSION))
        meters = data.get("meters")
        if not isinstance(meters, dict):
            return self._reject("has \"meters\": %s, not an object"
                                % json.dumps(meters if not isinstance(meters, _NonFinite)
                                             else "NaN")[:40])
        t = data.get("t")
        if t is _NON_FINITE or isinstance(t, bool) or not isinstance(t, (int, float)):
            t = None
        good: dict[str, dict] = {}
        copied = False
        for mid, entry in meters.items():
            problem = _meter_problem(entry)
            if problem is None:
                good[mid] = entry
                continue
            if not copied:
                copied = True
                aside = self._aside_name()
                try:
                    shutil.copyfile(self.path, aside)
                except OSError:
                    aside = "(could not copy it aside)"
            log.error("state error: %s: meters.%s.%s; meter %s starts afresh (file copied "
                      "to %s)", self.path, mid, problem, mid, aside)
        self.last_good = dict(good)
        return Saved(good, float(t) if t is not None else None)

    def keep_aside(self, why: str) -> None:
        """Copy the file aside for the post-mortem (a part of it could not be used)."""
        aside = self._aside_name()
        try:
            shutil.copyfile(self.path, aside)
        except OSError as e:
            log.error("could not copy %s aside (%s): %s", self.path, why, e)

    def _aside_name(self) -> str:
        return "%s.corrupt-%d" % (self.path, int(time.time()))

    def _reject(self, why: str) -> Saved:
        aside = self._aside_name()
        try:
            os.replace(self.path, aside)
            where = "moved to %s" % aside
        except OSError as e:
            where = "could not move it aside (%s)" % e
        log.error("state error: %s %s; %s, every meter starts afresh", self.path,
                  why if why.startswith(("has ", "holds ")) else "is " + why, where)
        return Saved()

    # ----------------------------------------------------------------- writing

    def save(self, meters: dict[str, dict], t: float) -> list[str]:
        """Write every meter's entry atomically (tmp file, fsync, rename, fsync dir).

        Returns the meters whose entry was refused for a non-finite number; for those the
        last good entry (if any) is written instead. Raises OSError when the disk fails."""
        refused: list[str] = []
        out: dict[str, dict] = {}
        for mid, entry in meters.items():
            bad = non_finite_path(entry)
            if bad is None:
                out[mid] = entry
                continue
            refused.append(mid)
            log.error("state error: meter %s: %s is not a finite number; not saved (its "
                      "last good state is kept)", mid, bad)
            if mid in self.last_good:
                out[mid] = self.last_good[mid]
        text = json.dumps({"version": STATE_VERSION, "t": t, "meters": out},
                          separators=(",", ":"), allow_nan=False)
        self._write(text)
        self.last_good.update({mid: e for mid, e in out.items() if mid not in refused})
        return refused

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk must not keep a half file around
            raise
        try:
            dfd = os.open(str(self.path.parent), os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
