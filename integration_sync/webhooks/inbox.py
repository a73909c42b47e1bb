"""The webhook inbox: a SQLite file in WAL mode where the receiver commits events before answering.

``Inbox.add`` is one autocommitted ``INSERT ... ON CONFLICT(event_key) DO NOTHING``: atomic, and safe
from many threads and processes (each call uses its own connection; ``busy_timeout`` waits for the
write lock). SQLite serializes writers, so ids grow in commit order and a sensor can drain the inbox
with ``read_after(cursor_id, limit)`` and keep the last id as its cursor.
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
    payload TEXT NOT NULL
)
"""

_COLUMNS = "id, source, event_key, received_at, event_date, status, reason, payload"


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


class Inbox:
    """The inbox at ``path`` (created with its parent directory on first use)."""

    def __init__(self, path: str | Path, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = int(busy_timeout_ms)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(SCHEMA)

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
            return cursor.lastrowid if cursor.rowcount == 1 else None

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
