"""The webhook inbox: a SQLite file in WAL mode where the receiver commits events before answering.

``Inbox.add`` is one autocommitted ``INSERT ... ON CONFLICT(event_key) DO NOTHING``: atomic, and safe
from many threads and processes (each call uses its own connection; ``busy_timeout`` waits for the
write lock). SQLite serializes writers, so ids grow in commit order and a sensor can drain the inbox
with ``read_after(cursor_id, limit)`` and keep the last id as its cursor. A key delivered again is
not stored twice; its ``redeliveries`` count goes up so the event log can show it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

EventStatus = Literal["accepted", "skipped"]

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
"""

_COLUMNS = "id, source, event_key, received_at, event_date, status, reason, payload, redeliveries"


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

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
        with closing(conn):
            conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
            conn.execute("PRAGMA synchronous=FULL")
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
        if status not in ("accepted", "skipped"):
            raise ValueError(f"unknown status {status!r}")
        received_at = datetime.now(UTC).isoformat(timespec="microseconds")
        with self._connect() as conn:
            cursor = conn.execute(
                "INSERT INTO events (source, event_key, received_at, event_date, status, reason, payload)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(event_key) DO NOTHING",
                (source, event_key, received_at, event_date, status, reason, payload_json),
            )
            if cursor.rowcount == 1:
                return cursor.lastrowid
            conn.execute("UPDATE events SET redeliveries = redeliveries + 1 WHERE event_key = ?", (event_key,))
            return None

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

    def ids_after(self, cursor_id: int = 0, limit: int = 1000) -> list[tuple[int, str]]:
        """(id, event_date) of events with ``id > cursor_id`` in id order: a sensor's light read."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, event_date FROM events WHERE id > ? ORDER BY id LIMIT ?", (cursor_id, limit)
            ).fetchall()
        return [(int(row[0]), str(row[1])) for row in rows]

    def read_dates(self, first: str, last: str, *, before: str | None = None, after: str | None = None) -> list[Event]:
        """Events whose event_date is in first..last (ISO dates), plus those dated before `before` or
        after `after` when given (a partition range's edges take the out-of-range dates)."""
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE event_date BETWEEN ? AND ?"  # noqa: S608
                " OR (? IS NOT NULL AND event_date < ?) OR (? IS NOT NULL AND event_date > ?) ORDER BY id",
                (first, last, before, before, after, after),
            ).fetchall()
        return [Event(*row) for row in rows]

    def keys_until(self, last_id: int) -> list[tuple[int, str]]:
        """(id, event_key) of every event with ``id <= last_id``."""
        with self._connect() as conn:
            rows = conn.execute("SELECT id, event_key FROM events WHERE id <= ? ORDER BY id", (last_id,)).fetchall()
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
