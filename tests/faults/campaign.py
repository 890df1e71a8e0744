"""The fault campaigns' one table: every campaign in tests/faults/ reports a row here.

A campaign is a test that hurts the real agent (or one of its real parts) on purpose, many
times, and counts what a utility or a technician would see go wrong. The guarantees are the
same for every campaign (issue 11), so the columns are fixed and a row only fills the ones
its campaign can measure ("-" for the rest):

    runs           how many times the fault was injected (kills, steps, payloads, ...)
    alerts         alert events (raised/updated/cleared) the campaign decided or expected
    lost           of those, how many never reached a subscriber           (must be 0)
    second_id      events that reached a subscriber under two or more ids (must be 0)
    fake_scored    readings from bad data that the detector learned         (must be 0)
    crash_loops    starts that ended in an exit/traceback instead of running (must be 0)
    note           one short free-text remark (what was injected)

API (import it from a test in tests/faults/, the directory is on ``sys.path``)::

    from campaign import record
    record("agent SIGKILL at random", runs=40, alerts=12, lost=0, second_id=0,
           crash_loops=0, note="kill -9 every 0.2-2 s")

``record()`` prints the row at once (seen with ``-s``) and keeps it;
``tests/faults/conftest.py`` prints every row of the session as one table at the end
(``make faults``). ``table(rows)`` formats rows as that table, ``rows()`` returns a copy
of what was recorded so far. Record the row *before* asserting the zeros, so a failing
campaign still shows its figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COLUMNS = ("runs", "alerts", "lost", "second_id", "fake_scored", "crash_loops")
# The columns that are a guarantee: anything but 0 there is a defect.
MUST_BE_ZERO = ("lost", "second_id", "fake_scored", "crash_loops")


@dataclass
class Row:
    """One campaign's figures; None means "not measured by this campaign"."""

    name: str
    figures: dict[str, int | None] = field(default_factory=dict)
    note: str = ""

    @property
    def ok(self) -> bool:
        return all(not self.figures.get(c) for c in MUST_BE_ZERO)


_ROWS: list[Row] = []


def record(name: str, *, note: str = "", **figures: int | None) -> Row:
    """Add one campaign's row (unknown column names are a programming error) and print it."""
    unknown = set(figures) - set(COLUMNS)
    if unknown:
        raise ValueError("unknown campaign columns %s (known: %s)"
                         % (sorted(unknown), ", ".join(COLUMNS)))
    row = Row(name, {c: figures.get(c) for c in COLUMNS}, note)
    _ROWS.append(row)
    print("\nCAMPAIGN " + _line(row, _widths([row])), flush=True)
    return row


def rows() -> list[Row]:
    return list(_ROWS)


def as_json() -> list[list]:
    """The rows as plain lists, for a pytest-xdist worker to hand to the controller."""
    return [[r.name, r.figures, r.note] for r in _ROWS]


def adopt(plain: list[list]) -> None:
    """Keep rows another process recorded (``as_json()``), without printing them again."""
    _ROWS.extend(Row(name, dict(figures), note) for name, figures, note in plain)


def _cell(v: int | None) -> str:
    return "-" if v is None else str(v)


def _widths(rs: list[Row]) -> list[int]:
    name_w = max([len("campaign")] + [len(r.name) for r in rs])
    return [name_w] + [max([len(c)] + [len(_cell(r.figures.get(c))) for r in rs])
                       for c in COLUMNS]


def _line(row: Row, w: list[int]) -> str:
    cells = [row.name.ljust(w[0])] + [_cell(row.figures.get(c)).rjust(w[i + 1])
                                      for i, c in enumerate(COLUMNS)]
    status = "ok" if row.ok else "FAIL"
    return "  ".join(cells + [status.ljust(4), row.note]).rstrip()


def table(rs: list[Row]) -> str:
    """The rows as a fixed-width table with a header, an ok/FAIL column and a total line."""
    if not rs:
        return "no fault campaign ran"
    w = _widths(rs)
    head = "  ".join(["campaign".ljust(w[0])] + [c.rjust(w[i + 1]) for i, c in
                                                 enumerate(COLUMNS)] + ["    ", "note"])
    lines = [head, "-" * len(head)]
    lines += [_line(r, w) for r in rs]
    bad = [r.name for r in rs if not r.ok]
    lines.append("%d campaign(s), %s" % (len(rs), "all guarantees held" if not bad
                                          else "FAILED: " + ", ".join(bad)))
    return "\n".join(lines)
