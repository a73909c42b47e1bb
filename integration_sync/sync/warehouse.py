"""DuckDB warehouse access: versioned migrations, short transactions, one writer across processes.

DuckDB lets one process at a time open a database file read-write, and every Dagster run is its own
process. So nothing here keeps a connection open: each `transaction()` takes an exclusive file lock,
opens the file, does its work, commits and closes. Callers read what they need, release the
connection, call the network, then write the results in another short transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from filelock import FileLock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """One schema change. `id` orders migrations and is recorded once applied."""

    id: str
    sql: str


class Warehouse:
    """The project's DuckDB file, shared by every flow and every Dagster run process."""

    def __init__(
        self,
        path: str | Path,
        migrations: Sequence[Migration] = (),
        *,
        lock_timeout_s: float = 300.0,
        memory_limit: str = "512MB",
    ) -> None:
        self.path = Path(path)
        # DuckDB spills big loads to disk past this, keeping a run's memory flat.
        self.config = {
            "memory_limit": memory_limit,
            "temp_directory": str(self.path) + ".tmp",
            "preserve_insertion_order": False,
        }
        self.migrations = sorted(migrations, key=lambda m: m.id)
        self._lock = FileLock(str(self.path) + ".lock", timeout=lock_timeout_s)
        self._migrated = False

    @contextmanager
    def _open(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            conn = connect_with_retry(self.path, self.config)
            try:
                yield conn
            finally:
                conn.close()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for reads or autocommit statements; hold it for milliseconds, not API calls."""
        self.migrate()
        with self._open() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One short transaction: committed when the block ends, rolled back if it raises."""
        self.migrate()
        with self._open() as conn:
            conn.execute("BEGIN TRANSACTION")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def migrate(self) -> list[str]:
        """Apply the migrations this database has not seen yet; returns the ids applied."""
        if self._migrated:
            return []
        applied: list[str] = []
        with self._open() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " id VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT id FROM schema_migrations").fetchall()}
            for migration in self.migrations:
                if migration.id in done:
                    continue
                conn.execute("BEGIN TRANSACTION")
                try:
                    conn.execute(migration.sql)
                    conn.execute("INSERT INTO schema_migrations (id) VALUES (?)", [migration.id])
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                applied.append(migration.id)
                log.info("applied warehouse migration %s", migration.id)
        self._migrated = True
        return applied


def connect_with_retry(
    path: Path, config: dict[str, Any] | None = None, attempts: int = 20, *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """Open the file, waiting out a process that does not take our lock (e.g. a DuckDB CLI)."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            return duckdb.connect(str(path), read_only=read_only, config=config or {})
        except duckdb.IOException:
            if attempt == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")
