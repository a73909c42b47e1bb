"""The webhook inbox: a SQLite file in WAL mode where the receiver commits events before answering.

``Inbox.add`` is one autocommitted ``INSERT ... ON CONFLICT(event_key) DO NOTHING``: atomic, and safe
from many threads and processes (each call uses its own connection; ``busy_timeout`` waits for the
write lock). SQLite serializes writers, so ids grow in commit order and a sensor can drain the inbox
with ``read_after(cursor_id, limit)`` and keep the last id as its cursor. A key delivered again is
not stored twice; its ``redeliveries`` count goes up so the event log can show it.

The receiver writes through `InboxWriter` (one thread, one connection, batched commits); readers and
tools use `Inbox` directly.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

EventStatus = Literal["accepted", "skipped"]
PAYMENT_SOURCE = "platform_payment"  # the payments route's events (other flows' routes have their own)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    event_key TEXT NOT NULL UNIQUE,
    received_at TEXT NOT NULL,
    event_date TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('accepted', 'skipped')),
    reason TEXT,
    payload TEXT NOT NULL,
    redeliveries INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_by_date ON events (event_date, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = "id, source, event_key, received_at, event_date, status, reason, payload, redeliveries"
# One statement: a new key is inserted; a known one only gets its redelivery counted (and stays as it was).
_UPSERT = (
    "INSERT INTO events (source, event_key, received_at, event_date, status, reason, payload)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(event_key) DO UPDATE SET redeliveries = redeliveries + 1"
    " RETURNING id, redeliveries"
)
Row = tuple[str, str, str, str, str, str | None, str]


def _of(sources: Sequence[str] | None) -> str:
    """A filter on the event's source, with one placeholder per source (never values in the SQL)."""
    return f" AND source IN ({', '.join('?' for _ in sources)})" if sources else ""


def _key_part(text: str) -> str:
    return text.replace("%", "%25").replace(":", "%3A")


def payment_key(payment_id: str, skipped_status: str | None = None) -> str:
    """A payment's inbox key: ``payment:{id}``, or ``payment:{id}:skipped:{STATUS}`` for a skipped
    webhook (so a later CONFIRMED still gets in). ``%`` and ``:`` inside the parts are escaped, so no
    payment id (``X:skipped:PENDING``) can take another payment's key; ids without them read as is."""
    key = f"payment:{_key_part(payment_id)}"
    return key if skipped_status is None else f"{key}:skipped:{_key_part(skipped_status)}"


def payment_of_key(event_key: str) -> str:
    """The payment id of a `payment_key`."""
    return event_key.removeprefix("payment:").split(":", 1)[0].replace("%3A", ":").replace("%25", "%")


def _row(source: str, event_key: str, event_date: str, payload: str, status: str, reason: str | None) -> Row:
    if status not in ("accepted", "skipped"):
        raise ValueError(f"unknown status {status!r}")
    received_at = datetime.now(UTC).isoformat(timespec="microseconds")
    return (source, event_key, received_at, event_date, status, reason, payload)


def _insert(conn: sqlite3.Connection, row: Row) -> int | None:
    """The new event's id, or None when its key was already there (its redelivery is counted)."""
    event_id, redeliveries = conn.execute(_UPSERT, row).fetchone()
    return int(event_id) if redeliveries == 0 else None


@dataclass(frozen=True)
class Event:
    """One committed inbox event; ``payload`` is the raw request body."""

    id: int
    source: str
    event_key: str
    received_at: str
    event_date: str
    status: str
    reason: str | None
    payload: str
    redeliveries: int = 0


class Inbox:
    """The inbox at ``path`` (created with its parent directory on first use)."""

    def __init__(self, path: str | Path, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = int(busy_timeout_ms)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
            if columns and "redeliveries" not in columns:  # an inbox from before the counter
                conn.execute("ALTER TABLE events ADD COLUMN redeliveries INTEGER NOT NULL DEFAULT 0")
            conn.executescript(SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('inbox_id', ?)", (uuid.uuid4().hex,))

    def open(self) -> sqlite3.Connection:
        """A new autocommit connection that waits for the write lock and syncs every commit."""
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
            conn.execute("PRAGMA synchronous=FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(self.open()) as conn:
            yield conn

    def insert(
        self,
        source: str,
        event_key: str,
        event_date: str,
        payload_json: str,
        status: EventStatus = "accepted",
        reason: str | None = None,
    ) -> int | None:
        """Commit an event; its id, or None when ``event_key`` is already in the inbox."""
        row = _row(source, event_key, event_date, payload_json, status, reason)
        with self._connect() as conn:
            return _insert(conn, row)

    def add(
        self,
        source: str,
        event_key: str,
        event_date: str,
        payload_json: str,
        status: EventStatus = "accepted",
        reason: str | None = None,
    ) -> bool:
        """Commit an event; False when ``event_key`` is already in the inbox."""
        return self.insert(source, event_key, event_date, payload_json, status, reason) is not None

    def read_after(self, cursor_id: int = 0, limit: int = 100) -> list[Event]:
        """Events with ``id > cursor_id`` in id order, at most ``limit``."""
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
                (cursor_id, limit),
            ).fetchall()
        return [Event(*row) for row in rows]

    def identity(self) -> str:
        """A random id made with the file: a new inbox (ids from 1 again) has another one, so a
        reader's cursor from an old inbox is not applied to it."""
        with self._connect() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'inbox_id'").fetchone()
        return str(row[0])

    def ids_after(
        self, cursor_id: int = 0, limit: int = 1000, *, sources: Sequence[str] | None = None
    ) -> list[tuple[int, str]]:
        """(id, event_date) of events with ``id > cursor_id`` in id order (of `sources` when given: the
        inbox is shared by every flow's routes): a sensor's light read."""
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT id, event_date FROM events WHERE id > ?{_of(sources)} ORDER BY id LIMIT ?",  # noqa: S608
                (cursor_id, *(sources or ()), limit),
            ).fetchall()
        return [(int(row[0]), str(row[1])) for row in rows]

    def read_dates(
        self,
        first: str,
        last: str,
        *,
        before: str | None = None,
        after: str | None = None,
        sources: Sequence[str] | None = None,
    ) -> list[Event]:
        """Events whose event_date is in first..last (ISO dates), plus those dated before `before` or
        after `after` when given (a partition range's edges take the out-of-range dates); of `sources`
        when given."""
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE (event_date BETWEEN ? AND ?"  # noqa: S608
                f" OR (? IS NOT NULL AND event_date < ?) OR (? IS NOT NULL AND event_date > ?)){_of(sources)}"
                " ORDER BY id",
                (first, last, before, before, after, after, *(sources or ())),
            ).fetchall()
        return [Event(*row) for row in rows]

    def keys_until(self, last_id: int, *, sources: Sequence[str] | None = None) -> list[tuple[int, str]]:
        """(id, event_key) of every event with ``id <= last_id`` (of `sources` when given)."""
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT id, event_key FROM events WHERE id <= ?{_of(sources)} ORDER BY id",  # noqa: S608
                (last_id, *(sources or ())),
            ).fetchall()
        return [(int(row[0]), str(row[1])) for row in rows]

    def get(self, event_key: str) -> Event | None:
        """The event with this key, if any."""
        with self._connect() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM events WHERE event_key = ?", (event_key,)).fetchone()  # noqa: S608
        return None if row is None else Event(*row)

    def count(self, status: EventStatus | None = None) -> int:
        """How many events the inbox holds (of one status if given)."""
        with self._connect() as conn:
            if status is None:
                row = conn.execute("SELECT COUNT(*) FROM events").fetchone()
            else:
                row = conn.execute("SELECT COUNT(*) FROM events WHERE status = ?", (status,)).fetchone()
        return int(row[0])


class _Write:
    __slots__ = ("future", "row")

    def __init__(self, row: Row) -> None:
        self.row = row
        self.future: Future[int | None] = Future()


class InboxWriter:
    """The receiver's one writer: a thread with one long-lived connection that commits queued events
    in batches (one transaction, one fsync for all of them) and only then resolves each caller's
    future. Many request threads fighting over SQLite's write lock, each opening its own connection,
    made the tail latency; one writer keeps "committed before the answer" at a fraction of the cost."""

    def __init__(self, inbox: Inbox, max_batch: int = 500) -> None:
        self.inbox = inbox
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(
        self,
        source: str,
        event_key: str,
        event_date: str,
        payload_json: str,
        status: EventStatus = "accepted",
        reason: str | None = None,
    ) -> Future[int | None]:
        """Queue an event; the future gives its id, or None for a key already in the inbox."""
        write = _Write(_row(source, event_key, event_date, payload_json, status, reason))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
                self._thread.start()
            self._queue.put(write)
        return write.future

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < self.max_batch:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._queue.put(None)  # stop after this batch
                        break
                    batch.append(more)
                try:
                    conn = conn or self.inbox.open()
                    self._commit(conn, batch)
                except (sqlite3.Error, OSError) as exc:  # e.g. the file cannot be opened: fail this batch
                    for write in batch:
                        if not write.future.done():
                            write.future.set_exception(exc)
                    if conn is not None:
                        conn.close()
                    conn = None  # and try a fresh connection for the next one
        finally:
            if conn is not None:
                conn.close()
            self._fail_queued()

    def _fail_queued(self) -> None:
        """Nobody waits forever on a writer that stopped."""
        while True:
            try:
                write = self._queue.get_nowait()
            except queue.Empty:
                return
            if write is not None and not write.future.done():
                write.future.set_exception(sqlite3.OperationalError("the inbox writer stopped"))

    @staticmethod
    def _commit(conn: sqlite3.Connection, batch: list[_Write]) -> None:
        results: list[tuple[_Write, int | None, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for write in batch:
                try:
                    results.append((write, _insert(conn, write.row), None))
                except sqlite3.Error as exc:  # this event only; the others still commit
                    results.append((write, None, exc))
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        for write, value, error in results:
            if error is None:
                write.future.set_result(value)
            else:
                write.future.set_exception(error)
