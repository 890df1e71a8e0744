"""Campaign: the outbox file damaged between two runs (torn write, bad SD card, a
technician's mistake). The gateway must start, and alerts may only be lost *loudly*: the
damaged file is moved aside with an error naming where it went, never silently replaced.
"""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path

import pytest
from campaign import record

from agent.model import Event
from agent.publish.codec import Codec
from agent.publish.outbox import Outbox

# Fault campaigns (tests/faults): `make test` and `make faults` only.
pytestmark = pytest.mark.slow

ALERTS = 20


def _fill(path: Path) -> list[str]:
    c = Codec("lw/v1/s1/g1", "s1", "g1")
    ids = []
    with Outbox(path, 1_000_000) as ob:
        for i in range(ALERTS):
            ev = Event("raised", "m%d" % (i % 3), time.time(), "m:raised:%d" % i, score=90.0,
                       alert_id="m:%d" % i, evidence={"summary": "campaign"})
            ob.put(c.event(ev))
            ids.append(ev.id)
    return ids


def _garbage(path: Path, rng: random.Random) -> None:
    path.write_bytes(bytes(rng.randrange(256) for _ in range(path.stat().st_size)))


def _half(path: Path, rng: random.Random) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _header(path: Path, rng: random.Random) -> None:
    with open(path, "r+b") as f:
        f.write(b"not a database file at all")


def _pages(path: Path, rng: random.Random) -> None:
    """Random bytes over a few pages past the header (a bad SD card sector)."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        for _ in range(4):
            f.seek(rng.randrange(4096, max(4097, size - 512)))
            f.write(bytes(rng.randrange(256) for _ in range(512)))


def _zero(path: Path, rng: random.Random) -> None:
    """Truncated to 0 bytes (a file system repaired after a power cut): SQLite would open
    it as a new empty database, and its alerts would vanish without a word."""
    os.truncate(path, 0)


DAMAGE = {"garbage": _garbage, "truncated-half": _half, "header": _header, "pages": _pages,
          "zero-bytes": _zero}


def test_damaged_outbox_never_loses_alerts_silently(tmp_path, caplog):
    rng = random.Random(11)
    runs = silent = lost_loudly = 0
    for name, damage in DAMAGE.items():
        for trial in range(3):
            path = tmp_path / ("%s-%d" % (name, trial)) / "outbox.sqlite"
            ids = _fill(path)
            damage(path, rng)
            runs += 1
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="loadwatch.outbox"):
                try:
                    ob = Outbox(path, 1_000_000)
                except Exception as e:  # a crash here is a crash loop under systemd
                    raise AssertionError("%s: the outbox did not open: %r" % (name, e)) from e
            with ob:
                kept = {e.message.id for e in ob.begin(1000)}
                recovered = list(ob.recovered)
            missing = [i for i in ids if i not in kept]
            loud = bool(recovered) and any("CORRUPT" in r.getMessage() for r in caplog.records)
            if missing and not loud:
                silent += len(missing)
            elif missing:
                lost_loudly += len(missing)
            if recovered:
                assert Path(recovered[0]).exists(), "the damaged file must be kept aside"
    record("corrupt outbox file", runs=runs, alerts=runs * ALERTS, lost=silent,
           crash_loops=0, note="%d lost loudly (moved aside, logged); kinds: %s"
           % (lost_loudly, ", ".join(DAMAGE)))
    assert silent == 0
