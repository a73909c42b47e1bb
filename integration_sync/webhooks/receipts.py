"""The receiver's own numbers: one receipt per request of a route, in the inbox's SQLite file (table
``receipts``), and `receipt_stats` over a time window (success and error rates, latency and delivery-lag
percentiles) for a flow's metadata and asset checks. No Dagster here.

A receipt costs a request one list append: `ReceiptLog` keeps them in memory and a background thread
commits them in batches (about once a second) on its own connection with ``synchronous=NORMAL`` (these
are metrics: losing the last second to a power cut is fine, an fsync per request is not), so the
inbox writer's transactions wait at most for one short batch. A failed write is logged and retried
with the next batch (at most `MAX_PENDING` kept), never raised into a request. Receipts older than
``keep_days`` are deleted a bounded chunk at a time, at most once per `PRUNE_EVERY_S`.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

from integration_sync.webhooks.inbox import Inbox

logger = logging.getLogger(__name__)

Outcome = Literal[
    "accepted",
    "skipped",  # stored, but set aside by a flow's exclusion rule (the payments route's 202)
    "duplicate",
    "ping",
    "refused_auth",
    "refused_size",
    "refused_payload",
    "unavailable",
    "error",
]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
REFUSED: tuple[Outcome, ...] = ("refused_auth", "refused_size", "refused_payload")
ERRORS: tuple[Outcome, ...] = ("unavailable", "error")  # ours, not the sender's: the error rate

MAX_PENDING = 50_000
PRUNE_EVERY_S = 3600.0
PRUNE_CHUNK = 5000
IDLE_EXIT_S = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    received_at TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    order_id TEXT,
    latency_ms REAL NOT NULL,
    delivery_lag_s REAL
);
CREATE INDEX IF NOT EXISTS receipts_by_source ON receipts (source, received_at);
CREATE INDEX IF NOT EXISTS receipts_by_time ON receipts (received_at);
"""
_INSERT = (
    "INSERT INTO receipts (source, received_at, http_status, outcome, order_id, latency_ms, delivery_lag_s)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
Receipt = tuple[str, str, int, str, str | None, float, float | None]


def _utc_text(moment: datetime) -> str:
    """The one text form of an instant in the table (fixed width, so text order is time order)."""
    if moment.tzinfo is None:
        raise ValueError("a receipt time must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def refusal_outcome(status: int) -> Outcome:
    """The outcome of an answer that is not a success, by its HTTP status."""
    if status == 401:
        return "refused_auth"
    if status == 413:
        return "refused_size"
    if status == 503:
        return "unavailable"
    if status >= 500:
        return "error"
    return "refused_payload"


class ReceiptLog:
    """Receipts of the receiver's routes, written behind the requests (see the module docstring)."""

    def __init__(
        self, inbox: Inbox, flush_interval_s: float = 1.0, keep_days: float = 30.0, batch_size: int = 2000
    ) -> None:
        self.inbox = inbox
        self.flush_interval_s = flush_interval_s
        self.keep = timedelta(days=keep_days)
        self.batch_size = batch_size
        self.dropped = 0  # receipts lost because the file stayed unwritable past MAX_PENDING
        self._pending: list[Receipt] = []
        self._lock = threading.Lock()  # guards _pending and _thread
        self._flush_lock = threading.Lock()  # one flush at a time, on _conn
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._conn: sqlite3.Connection | None = None
        self._next_prune = 0.0
        self._failing = False  # one warning per outage, not one a second

    def record(
        self,
        source: str,
        http_status: int,
        outcome: Outcome,
        *,
        received_at: datetime,
        latency_ms: float,
        order_id: str | int | None = None,
        sent_at: datetime | None = None,
    ) -> None:
        """Queue one request's receipt; the delivery lag is ``received_at - sent_at`` (None without
        `sent_at`). Never raises."""
        try:
            lag = None if sent_at is None else round((received_at - sent_at).total_seconds(), 3)
            row: Receipt = (
                source,
                _utc_text(received_at),
                int(http_status),
                outcome,
                None if order_id is None else str(order_id),
                round(float(latency_ms), 3),
                lag,
            )
            with self._lock:
                self._pending.append(row)
                if len(self._pending) > MAX_PENDING:
                    del self._pending[0]
                    self.dropped += 1
                if self._thread is None and not self._closed:
                    self._thread = threading.Thread(target=self._run, name="receipt-log", daemon=True)
                    self._thread.start()
                if len(self._pending) >= self.batch_size:
                    self._wake.set()
        except Exception as exc:  # a receipt must never fail the request it describes
            logger.warning("webhook receipt not recorded: %s", type(exc).__name__)

    def flush(self) -> int:
        """Commit every queued receipt now (the background thread does this about once a second);
        how many were written (0 when the file cannot be written: they stay queued). Never raises."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(_INSERT, batch)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError) as exc:
                if not self._failing:
                    logger.warning("webhook receipts not written (%d kept): %s", len(batch), type(exc).__name__)
                self._failing = True
                self._drop_connection()
                with self._lock:
                    self._pending[:0] = batch
                    excess = len(self._pending) - MAX_PENDING
                    if excess > 0:
                        del self._pending[:excess]
                        self.dropped += excess
                return 0
            if self._failing:
                logger.warning("webhook receipts written again (%d)", len(batch))
                self._failing = False
            self._prune_if_due(conn)
            return len(batch)

    def close(self) -> None:
        """Stop the background thread and write what is queued."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
        self.flush()
        with self._flush_lock:
            self._drop_connection()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = self.inbox.open()
            try:
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _prune_if_due(self, conn: sqlite3.Connection) -> None:
        if time.monotonic() < self._next_prune:
            return
        cutoff = _utc_text(datetime.now(UTC) - self.keep)
        try:
            deleted = conn.execute(
                "DELETE FROM receipts WHERE id IN (SELECT id FROM receipts WHERE received_at < ? LIMIT ?)",
                (cutoff, PRUNE_CHUNK),
            ).rowcount
        except sqlite3.Error as exc:
            logger.warning("webhook receipts not pruned: %s", type(exc).__name__)
            deleted = 0
        # a full chunk means more are due: the next flush takes the next chunk
        self._next_prune = 0.0 if deleted >= PRUNE_CHUNK else time.monotonic() + PRUNE_EVERY_S

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            if self.flush():
                idle_since = time.monotonic()
            with self._lock:
                quiet = not self._pending and time.monotonic() - idle_since > IDLE_EXIT_S
                if self._closed or quiet:  # record() starts a new thread when receipts come again
                    self._thread = None
                    break
        with self._flush_lock:
            self._drop_connection()


def receipt_log(app_state: Any) -> ReceiptLog:
    """The receiver's one `ReceiptLog` (``app_state.receipts``, made from ``app_state.inbox`` if absent)."""
    log = getattr(app_state, "receipts", None)
    if not isinstance(log, ReceiptLog):
        log = ReceiptLog(app_state.inbox)
        app_state.receipts = log
    return log


@dataclass(frozen=True)
class ReceiptStats:
    """A route's numbers over [since, until). Rates exclude pings; None when there is nothing to rate.
    Percentiles are nearest-rank (the smallest value with at least p% of the values at or below it)."""

    source: str
    since: datetime
    until: datetime | None
    received: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    delivery_lag_p50_s: float | None = None
    delivery_lag_p95_s: float | None = None
    delivery_lag_max_s: float | None = None

    def count(self, outcome: Outcome) -> int:
        return self.by_outcome.get(outcome, 0)

    @property
    def accepted(self) -> int:
        return self.count("accepted")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def duplicates(self) -> int:
        return self.count("duplicate")

    @property
    def pings(self) -> int:
        return self.count("ping")

    @property
    def refused(self) -> dict[str, int]:
        """Refusals of the sender's requests by outcome (every key present)."""
        return {outcome: self.count(outcome) for outcome in REFUSED}

    @property
    def errors(self) -> int:
        """Our failures (``unavailable``: 503, ``error``: an unexpected exception)."""
        return sum(self.count(outcome) for outcome in ERRORS)

    @property
    def rated(self) -> int:
        """Requests that count in the rates: all but pings."""
        return self.received - self.pings

    @property
    def success_rate(self) -> float | None:
        """(accepted + skipped + duplicates) ÷ (received − pings): stored, or already stored (a re-delivery)."""
        return (self.accepted + self.skipped + self.duplicates) / self.rated if self.rated > 0 else None

    @property
    def error_rate(self) -> float | None:
        """errors ÷ (received − pings)."""
        return self.errors / self.rated if self.rated > 0 else None

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-safe values (for metadata): counts, rates, percentiles; the window as ISO text."""
        return {
            "source": self.source,
            "since": self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "received": self.received,
            "accepted": self.accepted,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "pings": self.pings,
            **self.refused,
            "errors": self.errors,
            "success_rate": self.success_rate,
            "error_rate": self.error_rate,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            "latency_p99_ms": self.latency_p99_ms,
            "delivery_lag_p50_s": self.delivery_lag_p50_s,
            "delivery_lag_p95_s": self.delivery_lag_p95_s,
            "delivery_lag_max_s": self.delivery_lag_max_s,
        }


def _rank(count: int, percent: float) -> int:
    """The 0-based index of the nearest-rank percentile among `count` sorted values."""
    return max(0, math.ceil(percent / 100 * count) - 1)


def receipt_stats(path: str | Path, source: str, since: datetime, until: datetime | None = None) -> ReceiptStats:
    """`source`'s receipts received in [since, until) (no upper bound when `until` is None) in the inbox
    at `path`. A pure read: a missing file or table gives empty stats. Times must be timezone-aware."""
    empty = ReceiptStats(source=source, since=since, until=until)
    where = "source = ? AND received_at >= ? AND received_at < ?"
    far = datetime(9999, 12, 31, tzinfo=UTC)
    args = (source, _utc_text(since), _utc_text(until or far))
    file = Path(path)
    if not file.is_file():
        return empty
    with closing(sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'receipts'").fetchone()
        if found is None:
            return empty
        counts = dict(
            conn.execute(f"SELECT outcome, COUNT(*) FROM receipts WHERE {where} GROUP BY outcome", args).fetchall()  # noqa: S608
        )
        received = sum(counts.values())
        if received == 0:
            return empty

        def percentile(column: str, count: int, percent: float) -> float | None:
            if count == 0:
                return None
            row = conn.execute(
                f"SELECT {column} FROM receipts WHERE {where} AND {column} IS NOT NULL"  # noqa: S608
                f" ORDER BY {column} LIMIT 1 OFFSET ?",
                (*args, _rank(count, percent)),
            ).fetchone()
            return None if row is None else float(row[0])

        lags, lag_max = conn.execute(
            f"SELECT COUNT(delivery_lag_s), MAX(delivery_lag_s) FROM receipts WHERE {where}",  # noqa: S608
            args,
        ).fetchone()
        return ReceiptStats(
            source=source,
            since=since,
            until=until,
            received=received,
            by_outcome={str(k): int(v) for k, v in counts.items()},
            latency_p50_ms=percentile("latency_ms", received, 50),
            latency_p95_ms=percentile("latency_ms", received, 95),
            latency_p99_ms=percentile("latency_ms", received, 99),
            delivery_lag_p50_s=percentile("delivery_lag_s", int(lags), 50),
            delivery_lag_p95_s=percentile("delivery_lag_s", int(lags), 95),
            delivery_lag_max_s=None if lag_max is None else float(lag_max),
        )
