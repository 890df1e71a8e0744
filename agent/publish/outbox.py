"""The durable outbox: every message is on disk before anyone tries to send it.

paho-mqtt keeps unacknowledged QoS-1 messages only in memory, so a ``kill -9`` or a power
cut would lose whatever the broker had not acknowledged yet. The outbox is the agent's
buffer instead (after Telegraf's ``models/buffer.go``: the framework owns the buffer,
the output only accepts or rejects): the publisher takes a batch with ``begin()``, and
each message leaves the database only by ``ack()`` (the broker's PUBACK for QoS 1, the
socket write for QoS 0); ``nack()`` puts it back, in its place.

Durability. SQLite in WAL mode, one row per message, in one global sequence, so delivery
is in order per meter (and overall). A ``put()`` of an alert, health, status or reply
commits with ``synchronous=FULL`` (the WAL is fsync'ed before ``put()`` returns).
Telemetry and score commit with ``synchronous=NORMAL``: that is still safe against a
``kill -9`` of the agent (the WAL is in the OS page cache), and on a power cut it can only
lose a *trailing* run of telemetry, because the next FULL commit fsyncs the whole WAL
including every earlier frame. So an alert is never lost and never overtaken, and the
telemetry that a power cut may cost is what the bound would drop first anyway, for a
fsync per slot aggregate saved (the SD cards of gateways wear out on fsyncs).

Bound. ``max_bytes`` counts topic + payload + a fixed per-row overhead. When a new
message does not fit, the oldest telemetry and score rows not in flight are dropped
(oldest first) until it does; a telemetry or score message that still does not fit is
itself dropped. Alerts, health, status and replies are never dropped: they are stored
even past the bound (logged, counted as ``over_bound``). Every drop is counted by kind
in the database (so counts survive restarts) and reported in ``stats()``, which the
publisher puts in the retained ``status`` message.

After a broker crash. Acknowledged alerts, health and status rows are kept (marked) for
``keep_acked_s`` (1 s) and ``replay()`` re-queues those acknowledged just before a lost
connection: a broker killed with SIGKILL can lose a message it already acknowledged.

Corruption. A database that SQLite cannot open or that fails ``quick_check`` is moved
aside (``<path>.corrupt-<unix time>``, with its ``-wal``/``-shm``), an error is logged
loudly, and a fresh outbox is started: the gateway keeps working rather than crash-looping.
A 0-byte file with no write-ahead log is corruption too (SQLite would open it as a new,
empty database: the alerts it held would vanish without a word).

A full disk. When SQLite cannot write (``SQLITE_FULL``, an I/O error), ``put_many()``
keeps the messages in memory, in order, and says so (it returns ``HELD``); every later put,
``retry()`` and ``begin()`` first tries to write what is held, in one transaction with the
producer's latest ``state`` values. While anything is held, ``stats()["state"]`` is
``"full"`` (the status page and the retained status say "outbox full"), new messages queue
behind the held ones so order is kept, telemetry and score beyond ``held_max`` are dropped
oldest-first (counted), health is coalesced per meter (the latest state wins), and alerts
are never dropped: past ``held_max`` critical messages ``put_many()`` raises
``OutboxFull`` and stores nothing, so the producer can undo the decision and make it again
later. Nothing held is ever handed to the publisher: only what is on disk is sent.

Producer state. ``put_many(msgs, state={key: text})`` writes ``state`` in the same
transaction as the messages (table ``kv``); ``saved_state()`` reads it back. The runtime
keeps each meter's alert-policy state there, so after a crash at any instant the policy
state and the alert events on disk agree, and no event is decided twice under two ids.

Bound on disk. The write-ahead log counts against ``max_bytes``: ``max_bytes / 8`` is kept
for it (``wal_autocheckpoint`` and ``journal_size_limit`` hold it to that), the rows get
the rest. Health is coalesced on disk as in memory: a new health message of a meter
replaces its older one not yet handed out. After a backlog has drained, the file is
checkpointed and vacuumed, so the space an outage took is given back.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path

from agent.publish.codec import CRITICAL_KINDS, DROPPABLE_KINDS, Message

log = logging.getLogger("loadwatch.outbox")

ROW_OVERHEAD = 64  # bytes counted per row on top of topic and payload (ids, indexes)
# Persisted counters (only the rare events: a counter write per put would cost as much as
# the put itself).
COUNTERS = ("dropped_telemetry", "dropped_score", "rejected", "over_bound")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind    TEXT NOT NULL,
    meter   TEXT NOT NULL,
    topic   TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos     INTEGER NOT NULL,
    retain  INTEGER NOT NULL,
    msg_id  TEXT NOT NULL,
    size    INTEGER NOT NULL,
    parked  INTEGER NOT NULL DEFAULT 0,
    acked   REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_droppable ON outbox (kind, seq);
CREATE INDEX IF NOT EXISTS outbox_acked ON outbox (acked) WHERE acked > 0;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# put_many() results per message
STORED = True
DROPPED = False
HELD = "held"  # kept in memory: the disk is full; written by a later put/retry/begin
# Held messages (disk full): telemetry/score beyond this are dropped oldest-first;
# alerts/status/replies beyond it make put_many() raise OutboxFull.
HELD_MAX = 10_000
# The share of max_bytes kept for the write-ahead log.
WAL_SHARE = 8
# Re-measure how many bytes of pages a counted byte takes every this many puts (a mix of
# alerts, health and telemetry took 2.5-2.9).
MEASURE_EVERY = 8
# Vacuum after a drain when the file is this much bigger than what it holds.
VACUUM_SLACK = 1024 * 1024


class OutboxError(RuntimeError):
    pass


class OutboxFull(OutboxError):
    """The disk is full and the memory held for it too: nothing of this put was kept."""


class Entry:
    """A message taken out by ``begin()``; ``seq`` is its place in the queue."""

    __slots__ = ("message", "seq")

    def __init__(self, seq: int, message: Message):
        self.seq = seq
        self.message = message

    def __repr__(self) -> str:
        return "Entry(%d, %r)" % (self.seq, self.message)


def _size(msg: Message) -> int:
    return len(msg.topic.encode("utf-8")) + len(msg.payload) + ROW_OVERHEAD


class Outbox:
    """A bounded, durable, ordered queue of messages in one SQLite file.

    Thread-safe: the runtime ``put()``s from its event loop while the publisher thread
    runs ``begin()``/``ack()``/``nack()``.
    """

    def __init__(self, path: str | os.PathLike, max_bytes: int = 64 * 1024 * 1024,
                 keep_acked_s: float = 1.0, held_max: int = HELD_MAX):
        if max_bytes <= 0:
            raise ValueError("outbox max_bytes must be > 0")
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.wal_bytes = self.max_bytes // WAL_SHARE
        self.file_bytes = self.max_bytes - self.wal_bytes  # the database file's share
        # What the rows may count (topic + payload + ROW_OVERHEAD each): the file's share
        # divided by how many bytes of pages a counted byte really takes (B-tree pages are
        # never full, the indexes take their part), measured as the outbox fills.
        self.row_bytes = self.file_bytes
        self._measured_at = 0
        self._last_drop_log = 0.0
        self.held_max = held_max
        self._held: deque[Message] = deque()  # disk full: waiting, in order
        self._held_state: dict[str, str] = {}
        self._held_dropped = {"telemetry": 0, "score": 0}
        self._full_error = ""  # why the disk refused the last write ("" once it took it)
        self._last_vacuum = 0.0
        self._next_retry = 0.0  # monotonic time of the next write attempt when full
        # Acknowledged rows whose deletion a full disk refused: deleted by a later ack().
        self._ack_retry: dict[int, tuple[int, bool]] = {}
        self.keep_acked_s = keep_acked_s
        self._last_purge = 0.0
        self._lock = threading.RLock()
        # seq -> (size, droppable kind), for the rows handed out by begin()
        self._inflight: dict[int, tuple[int, bool]] = {}
        self._cursor = 0  # every row up to here has been handed out (or is gone)
        self.puts = 0  # messages stored by this instance: a cheap "anything new?" for readers
        self._sync = ""
        self.recovered: list[str] = []  # where corrupt databases were moved this run
        self._listeners: list = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open()

    # ----------------------------------------------------------------- opening

    def _connect(self) -> sqlite3.Connection:
        wal = Path(str(self.path) + "-wal")
        if self.path.exists() and self.path.stat().st_size == 0 and \
                (not wal.exists() or wal.stat().st_size == 0):
            raise sqlite3.DatabaseError("the file is empty (0 bytes) and has no write-ahead "
                                        "log: whatever it held is gone")
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                             timeout=30.0)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.DatabaseError("cannot switch to WAL mode (got %s)" % mode)
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError("quick_check: %s" % check)
            cols = [r[1] for r in db.execute("PRAGMA table_info(outbox)")]
            if cols and "acked" not in cols:  # an outbox from before acked rows were kept
                db.execute("ALTER TABLE outbox ADD COLUMN acked REAL NOT NULL DEFAULT 0")
            db.executescript(_SCHEMA)
            # A message parked after a broker rejection gets another chance every run:
            # the ACL may have been fixed meanwhile.
            db.execute("UPDATE outbox SET parked = 0 WHERE parked != 0")
            page = int(db.execute("PRAGMA page_size").fetchone()[0])
            db.execute("PRAGMA wal_autocheckpoint=%d" % max(1, self.wal_bytes // page // 2))
            db.execute("PRAGMA journal_size_limit=%d" % self.wal_bytes)
            if self.path.stat().st_size == 0:
                # A new file: its first pages are only in the WAL; put them in the file so
                # that a 0-byte file can only mean damage (see above).
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _open(self) -> sqlite3.Connection:
        try:
            db = self._connect()
        except sqlite3.DatabaseError as e:
            aside = self._move_aside(e)
            try:
                db = self._connect()
            except sqlite3.DatabaseError as e2:
                raise OutboxError("cannot create a fresh outbox at %s after moving the old "
                                  "one to %s: %s" % (self.path, aside, e2)) from e2
        self._set_sync("FULL", db)
        row = db.execute("SELECT COALESCE(SUM(size), 0), COALESCE(SUM(acked <= 0), 0) "
                         "FROM outbox").fetchone()
        self._bytes, self._count = int(row[0]), int(row[1])
        self._counters = {name: 0 for name in COUNTERS}
        for name, value in db.execute("SELECT name, value FROM counters"):
            if name in self._counters:
                self._counters[name] = int(value)
        return db

    def _move_aside(self, err: Exception) -> str:
        aside = "%s.corrupt-%d" % (self.path, int(time.time()))
        log.error("OUTBOX DATABASE %s IS CORRUPT OR UNREADABLE (%s): moved to %s and "
                  "starting a fresh, empty outbox; messages in the old file were NOT sent",
                  self.path, err, aside)
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                try:
                    os.replace(src, aside + suffix)
                except OSError as e:
                    log.error("could not move %s aside: %s; deleting it", src, e)
                    src.unlink(missing_ok=True)
        self.recovered.append(aside)
        return aside

    def _set_sync(self, level: str, db: sqlite3.Connection | None = None) -> None:
        if level != self._sync:
            (db or self._db).execute("PRAGMA synchronous=%s" % level)
            self._sync = level

    def _bump(self, name: str, n: int = 1) -> None:
        self._counters[name] += n
        self._db.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) "
                         "DO UPDATE SET value = value + excluded.value", (name, n))

    # ----------------------------------------------------------------- producer side

    def put(self, msg: Message) -> bool | str:
        """Store ``msg`` durably: True, False when it was a droppable message that did not
        fit, ``HELD`` when the disk is full and it waits in memory."""
        return self.put_many([msg])[0]

    def put_many(self, msgs: list[Message], state: dict[str, str] | None = None
                 ) -> list[bool | str]:
        """Store several messages, and ``state`` values, in one transaction: one fsync for
        the lot (group commit), durable together before this returns. Same order and
        bound rules as ``put()``. On a full disk everything is held in memory (``HELD``)
        and written by a later call; raises ``OutboxFull`` when even that is full."""
        if not msgs and not state:
            return []
        with self._lock:
            if self._held or self._full_error:
                return self._hold(msgs, state)
            try:
                return self._put_checked(msgs, state)
            except _DiskFull as e:
                self._full(e)
                return self._hold(msgs, state)

    def _put_checked(self, msgs: list[Message], state: dict[str, str] | None
                     ) -> list[bool]:
        try:
            return self._put_locked(msgs, state)
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and "malformed" not in str(e):
                raise _DiskFull(str(e)) from e
            # The file went bad under us: start afresh rather than fail every put.
            self._recover(e)
            return self._put_locked(msgs, state)

    def _full(self, err: Exception) -> None:
        if not self._full_error:
            log.error("OUTBOX FULL: %s cannot store messages (%s); holding them in memory "
                      "(alerts are never dropped) and retrying", self.path, err)
        self._full_error = str(err) or "disk full"

    def _hold(self, msgs: list[Message], state: dict[str, str] | None) -> list[bool | str]:
        critical = sum(1 for m in self._held if m.kind not in DROPPABLE_KINDS)
        new_critical = sum(1 for m in msgs if m.kind not in DROPPABLE_KINDS)
        if new_critical and critical + new_critical > self.held_max:
            raise OutboxFull("outbox %s: disk full (%s) and %d messages held in memory"
                             % (self.path, self._full_error, len(self._held)))
        for m in msgs:
            if m.kind == "health":  # the latest health of a meter is what matters
                for old in [h for h in self._held if h.kind == "health" and
                            h.meter == m.meter]:
                    self._held.remove(old)
            self._held.append(m)
        droppable = [m for m in self._held if m.kind in DROPPABLE_KINDS]
        for m in droppable[:max(0, len(droppable) - self.held_max)]:
            self._held.remove(m)
            self._held_dropped[m.kind] += 1
        if state:
            self._held_state.update(state)
        self._flush_held()
        return [STORED if not self._held and not self._full_error else HELD for _ in msgs]

    def _flush_held(self, force: bool = False) -> bool:
        """Write everything held (and the held state) in one transaction; True when the
        memory is empty afterwards. At most one attempt a second unless ``force``.
        Caller holds the lock."""
        if not self._held and not self._held_state and not self._full_error:
            return True
        now = time.monotonic()
        if not force and now < self._next_retry:
            return False
        self._next_retry = now + 1.0
        try:
            self._put_checked(list(self._held), dict(self._held_state))
        except _DiskFull as e:
            self._full(e)
            return False
        for kind, n in self._held_dropped.items():
            if n:
                self._bump("dropped_" + kind, n)
        log.warning("outbox %s takes messages again: %d held messages written, %d "
                    "telemetry/score dropped while the disk was full", self.path,
                    len(self._held), sum(self._held_dropped.values()))
        self._held.clear()
        self._held_state.clear()
        self._held_dropped = {"telemetry": 0, "score": 0}
        self._full_error = ""
        return True

    def retry(self) -> bool:
        """Try to write what a full disk left in memory; True when nothing is held."""
        with self._lock:
            return self._flush_held(force=True)

    def held(self) -> int:
        """Messages waiting in memory for disk space."""
        with self._lock:
            return len(self._held)

    def saved_state(self) -> dict[str, str]:
        """The ``state`` values written with the messages (see ``put_many``)."""
        with self._lock:
            return {k: v for k, v in self._db.execute("SELECT key, value FROM kv")}

    def _measure(self) -> None:
        """Re-estimate ``row_bytes`` from the pages the rows really use."""
        if self.puts - self._measured_at < MEASURE_EVERY and self._measured_at:
            return
        self._measured_at = self.puts or 1
        page = self._db.execute("PRAGMA page_size").fetchone()[0]
        used = (self._db.execute("PRAGMA page_count").fetchone()[0]
                - self._db.execute("PRAGMA freelist_count").fetchone()[0]) * page
        if self._bytes >= 16 * page:  # below that the schema's own pages dominate
            ratio = max(1.0, used / self._bytes)
            self.row_bytes = int(self.file_bytes / ratio)

    def _put_locked(self, msgs: list[Message], state: dict[str, str] | None = None
                    ) -> list[bool]:
        db = self._db
        self._measure()
        critical_batch = any(m.kind in CRITICAL_KINDS for m in msgs) or bool(state)
        self._set_sync("FULL" if critical_batch else "NORMAL")
        if len(msgs) == 1 and not state and msgs[0].kind != "health":
            msg = msgs[0]
            size = _size(msg)
            if self._bytes + size <= self.row_bytes:
                # The common case: it fits. One INSERT in autocommit mode is its own
                # transaction (same durability, a third of the statements).
                db.execute("INSERT INTO outbox (kind, meter, topic, payload, qos, retain, "
                           "msg_id, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (msg.kind, msg.meter, msg.topic, msg.payload, msg.qos,
                            1 if msg.retain else 0, msg.id, size))
                self._bytes += size
                self._count += 1
                self.puts += 1
                return [True]
        db.execute("BEGIN IMMEDIATE")
        stored: list[bool] = []
        total, count = self._bytes, self._count
        try:
            for msg in msgs:
                size = _size(msg)
                if msg.kind == "health":
                    freed, evicted = self._coalesce_health(msg.meter)
                    total -= freed
                    count -= evicted
                freed, evicted = self._make_room(total + size - self.row_bytes)
                total -= freed
                count -= evicted
                if total + size > self.row_bytes:
                    if msg.kind in DROPPABLE_KINDS:
                        self._bump("dropped_" + msg.kind)
                        stored.append(False)
                        continue
                    self._bump("over_bound")
                    log.warning("outbox over its bound (%d > %d bytes) keeping %s %s: "
                                "alerts and health are never dropped", total + size,
                                self.max_bytes, msg.kind, msg.id)
                db.execute("INSERT INTO outbox (kind, meter, topic, payload, qos, retain, "
                           "msg_id, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (msg.kind, msg.meter, msg.topic, msg.payload, msg.qos,
                            1 if msg.retain else 0, msg.id, size))
                total += size
                count += 1
                stored.append(True)
            if state:
                db.executemany("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) "
                               "DO UPDATE SET value = excluded.value", list(state.items()))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._reload_totals()
            raise
        self._bytes, self._count = total, count
        self.puts += len(msgs)
        return stored

    def _coalesce_health(self, meter: str) -> tuple[int, int]:
        """Delete the meter's older health messages not yet handed out (the new one says
        all they said); return (bytes freed, rows deleted). Inside the transaction."""
        rows = [(seq, size) for seq, size in self._db.execute(
            "SELECT seq, size FROM outbox WHERE kind = 'health' AND meter = ? AND "
            "acked <= 0 AND parked = 0", (meter,)) if seq not in self._inflight]
        self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(q,) for q, _ in rows])
        return sum(size for _, size in rows), len(rows)

    def _make_room(self, need: int) -> tuple[int, int]:
        """Delete the oldest droppable rows not in flight until ``need`` bytes are free;
        return (bytes freed, rows deleted). The caller is inside the transaction."""
        if need <= 0:
            return 0, 0
        freed = 0
        rows = self._db.execute(
            "SELECT seq, kind, size FROM outbox WHERE kind IN (%s) ORDER BY seq"
            % ",".join("?" * len(DROPPABLE_KINDS)), DROPPABLE_KINDS)
        victims = []
        for seq, kind, rsize in rows:
            if seq in self._inflight:
                continue
            victims.append((seq, kind))
            freed += rsize
            if freed >= need:
                break
        for seq, kind in victims:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._bump("dropped_" + kind)
        if victims and time.monotonic() - self._last_drop_log >= 60.0:
            self._last_drop_log = time.monotonic()
            log.warning("outbox full (%d bytes max): dropped %d oldest telemetry/score "
                        "messages", self.max_bytes, len(victims))
        return freed, len(victims)

    def _reload_totals(self) -> None:
        row = self._db.execute("SELECT COALESCE(SUM(size), 0), COALESCE(SUM(acked <= 0), 0) "
                               "FROM outbox").fetchone()
        self._bytes, self._count = int(row[0]), int(row[1])

    def _vacuum_if_drained(self) -> None:
        """Give an outage's space back once the backlog is gone (the file never shrinks by
        itself: freed pages are only reused). Caller holds the lock."""
        if self._count or self._inflight or time.monotonic() - self._last_vacuum < 60.0:
            return
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        if size <= self._bytes + VACUUM_SLACK:
            return
        self._last_vacuum = time.monotonic()
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            log.info("outbox %s drained: vacuumed from %d to %d bytes", self.path, size,
                     self.path.stat().st_size)
        except (sqlite3.Error, OSError) as e:
            log.warning("outbox %s: vacuum after the drain failed: %s", self.path, e)

    def disk_bytes(self) -> int:
        """What the outbox occupies on disk: the database and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.stat(str(self.path) + suffix).st_size
            except OSError:
                pass
        return total

    def _recover(self, err: Exception) -> None:
        try:
            self._db.close()
        except sqlite3.Error:
            pass
        self._inflight.clear()
        self._cursor = 0
        self._sync = ""
        self._move_aside(err)
        self._db = self._open()

    # ----------------------------------------------------------------- consumer side

    def begin(self, limit: int = 100) -> list[Entry]:
        """The oldest ``limit`` messages not yet in flight, marked in flight (first writing
        what a full disk left in memory, when there is room again)."""
        with self._lock:
            if limit <= 0:
                return []
            if self._held or self._full_error:
                self._flush_held()
            # Rows are handed out in order, so only those past the cursor can be new; a
            # nack() moves the cursor back.
            rows = self._db.execute(
                "SELECT seq, topic, payload, qos, retain, kind, meter, msg_id, size FROM outbox "
                "WHERE seq > ? AND parked = 0 AND acked <= 0 ORDER BY seq LIMIT ?",
                (self._cursor, limit + sum(1 for q in self._inflight if q > self._cursor)))
            rows = [r for r in rows if r[0] not in self._inflight][:limit]
            out = [Entry(seq, Message(topic, bytes(payload), qos, bool(retain), kind, meter,
                                      mid))
                   for seq, topic, payload, qos, retain, kind, meter, mid, _ in rows]
            for r in rows:
                self._inflight[r[0]] = (r[8], r[5] in DROPPABLE_KINDS)
            if rows:
                self._cursor = max(self._cursor, rows[-1][0])
            return out

    def ack(self, seqs: list[int]) -> None:
        """Delivered: delete. A lost ack (crash before this commits) only means a resend,
        which subscribers drop by ``id``, so this commit need not be fsync'ed.

        Alerts, health and status are not deleted at once but kept, marked acknowledged,
        for ``keep_acked_s``: a broker that is killed can lose a message it has already
        acknowledged (Mosquitto writes to the subscribers and PUBACKs in the same event
        loop turn, and saves its state only every ``autosave_interval``), so after a
        reconnect ``replay()`` sends those again (same ``id``: subscribers drop the copy).
        """
        if not seqs and not self._ack_retry:
            return
        with self._lock:
            self._set_sync("NORMAL")
            db = self._db
            known = [(seq, self._inflight.pop(seq)) for seq in seqs if seq in self._inflight]
            if self._ack_retry:
                known += list(self._ack_retry.items())
                self._ack_retry = {}
            now = time.time()
            db.execute("BEGIN IMMEDIATE")
            try:
                if self.keep_acked_s > 0:
                    # A replayed row (acked < 0) gets its first acknowledgement time back, so
                    # replays never extend how long a row is kept.
                    db.executemany("UPDATE outbox SET acked = CASE WHEN acked < 0 THEN -acked "
                                   "ELSE ? END WHERE seq = ? AND kind NOT IN "
                                   "('telemetry', 'score')", [(now, q) for q, _ in known])
                    db.executemany("DELETE FROM outbox WHERE seq = ? AND acked <= 0",
                                   [(q,) for q, _ in known])
                else:
                    db.executemany("DELETE FROM outbox WHERE seq = ?", [(q,) for q, _ in known])
                purged = 0
                if now - self._last_purge >= 1.0:
                    self._last_purge = now
                    row = db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox WHERE "
                                     "acked > 0 AND acked < ?",
                                     (now - self.keep_acked_s,)).fetchone()
                    purged = int(row[0])
                    db.execute("DELETE FROM outbox WHERE acked > 0 AND acked < ?",
                               (now - self.keep_acked_s,))
                db.execute("COMMIT")
            except sqlite3.OperationalError as e:
                # A full disk refuses even a DELETE (it needs WAL space): keep the
                # acknowledgements and delete at a later ack(); until then the rows only
                # stay on disk (a restart would re-send them under their same ids).
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._ack_retry.update(dict(known))
                self._full(e)
                return
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._reload_totals()
                raise
            self._count -= len(known)
            # Kept (acknowledged) rows still occupy their bytes until they are purged.
            kept = self.keep_acked_s > 0
            self._bytes -= purged + sum(size for _, (size, droppable) in known
                                        if droppable or not kept)
            self._vacuum_if_drained()

    def replay(self, lost_at: float | None) -> int:
        """Put back in the queue the alerts/health/status acknowledged in the last
        ``keep_acked_s`` before the connection was lost at ``lost_at`` (UNIX time; None,
        a fresh start: nothing). The publisher calls this after every (re)connect; returns
        how many messages go out again."""
        with self._lock:
            if self.keep_acked_s <= 0 or lost_at is None:
                return 0
            self._set_sync("NORMAL")
            cur = self._db.execute("UPDATE outbox SET acked = -acked WHERE acked >= ? AND "
                                   "parked = 0", (lost_at - self.keep_acked_s,))
            n = cur.rowcount if cur.rowcount and cur.rowcount > 0 else 0
            if n:
                self._count += n
                self._cursor = 0
            return n

    def nack(self, seqs: list[int] | None = None) -> None:
        """Not delivered: back in the queue at their original place (None: all in flight)."""
        with self._lock:
            if seqs is None:
                seqs = list(self._inflight)
            for seq in seqs:
                if self._inflight.pop(seq, None) is not None:
                    self._cursor = min(self._cursor, seq - 1)

    def reject(self, seq: int, reason: str) -> None:
        """The broker refused this message (e.g. MQTT 5 PUBACK 0x87, not authorised).

        Retrying would block everything behind it forever. A droppable message is deleted;
        an alert, health or status is parked (kept on disk, not retried until the next
        start) so that fixing the ACL and restarting delivers it. Either way it is counted.
        """
        with self._lock:
            row = self._db.execute("SELECT kind, size FROM outbox WHERE seq = ?",
                                   (seq,)).fetchone()
            self._inflight.pop(seq, None)
            if row is None:
                return
            self._set_sync("FULL")
            self._db.execute("BEGIN IMMEDIATE")
            if row[0] in DROPPABLE_KINDS:
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                self._bytes -= row[1]
                self._count -= 1
            else:
                self._db.execute("UPDATE outbox SET parked = 1 WHERE seq = ?", (seq,))
            self._bump("rejected")
            self._db.execute("COMMIT")
            log.error("broker rejected %s message #%d (%s)", row[0], seq, reason)

    # ----------------------------------------------------------------- reporting

    def pending(self) -> int:
        """Messages on disk (in flight included)."""
        with self._lock:
            return self._count

    def stats(self) -> dict:
        with self._lock:
            c = self._counters
            return {
                "pending": self._count,
                "inflight": len(self._inflight),
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "dropped": {"telemetry": c["dropped_telemetry"], "score": c["dropped_score"]},
                "rejected": c["rejected"],
                "over_bound": c["over_bound"],
                "corrupt_recovered": len(self.recovered),
                "state": "full" if self._held or self._full_error else "ok",
                "held": len(self._held),
                "disk_error": self._full_error,
            }

    def close(self) -> None:
        with self._lock:
            if self._held:
                self._flush_held(force=True)
            if self._held:
                log.error("outbox %s closed with %d messages still held in memory (disk "
                          "full); alerts among them are decided again after the restart",
                          self.path, len(self._held))
            if self._db is not None:
                try:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    pass
                self._db.close()
                self._db = None  # type: ignore[assignment]

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _DiskFull(Exception):
    """SQLite could not write (full disk, I/O error): internal, becomes HELD or OutboxFull."""
