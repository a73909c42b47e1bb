"""The reverse-ETL engine every push shares: diff, identity, in-flight settlement, sync log, dry run.

A flow hands the engine its desired state (one `Desired` per target record, keyed by a stable source
key) and a `Destination` that knows one target API. The engine:

- diffs each record's content hash against what was last pushed, so unchanged records cost nothing;
- asks the destination to match records it would create against what already exists in the target
  (external key, phone, email), so nothing is created twice;
- marks each chunk `in_flight` before the call and settles it after; a chunk left in flight by a
  crashed run, or whose answer was lost, is looked up in the target before anything is re-created;
- retries rejected records on later runs until `max_attempts` (waiting `retry_backoff_s`, doubled at
  each attempt, when one is set), then parks them until they change or an operator re-drives them;
- splits a chunk the target refuses as a whole, to isolate the bad records;
- writes a per-record `sync_log` and returns counts for Dagster metadata;
- holds the flow's push lock (`push_lock.py`) for the whole run, so two pushes of one flow to one
  target never overlap, however they were launched.

It never holds a DuckDB connection across a network call.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from integration_sync.connectors.errors import AmbiguousWriteError, ApiError, AuthError, ConfigError
from integration_sync.sync.bulk import insert_rows
from integration_sync.sync.push_lock import push_lock
from integration_sync.sync.warehouse import Warehouse

log = logging.getLogger(__name__)

Operation = Literal["create", "update"]
OutcomeStatus = Literal["succeeded", "rejected"]


def content_hash(payload: Mapping[str, Any]) -> str:
    """A stable hash of a payload: key order and whitespace do not matter."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Desired:
    """One target record as the warehouse says it should be; `invalid_reason` means do not send."""

    key: str
    payload: Mapping[str, Any]
    invalid_reason: str | None = None

    @property
    def hash(self) -> str:
        return content_hash(self.payload)


@dataclass(frozen=True)
class Change:
    """One record the engine asks a destination to write."""

    key: str
    operation: Operation
    payload: Mapping[str, Any]
    previous: Mapping[str, Any] | None
    target_ids: Mapping[str, str]
    attempts: int
    hash: str
    in_flight: bool = False
    attempt_hash: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What happened to one change: `target_ids` may be partial when a rejected write got halfway."""

    key: str
    status: OutcomeStatus
    operation: str
    target_ids: Mapping[str, str] = field(default_factory=dict)
    message: str = ""


class Destination(Protocol):
    """One target API as the engine sees it. Implementations live in the flows."""

    name: str
    primary_entity: str
    batch_size: int

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        """Find target records that already exist for these changes; key -> {entity: id}."""
        ...

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        """Write the changes; one outcome per change. Raise AmbiguousWriteError if unsure."""
        ...

    def requests_used(self) -> int:
        """API requests sent so far (for metadata)."""
        ...


@dataclass
class SyncReport:
    """Counts of one engine run, reported as Dagster metadata."""

    fetched: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    retried: int = 0
    created: int = 0
    updated: int = 0
    settled: int = 0
    rejected: int = 0
    invalid: int = 0
    parked: int = 0
    waiting: int = 0
    deferred: int = 0
    planned: int = 0
    api_requests: int = 0
    dry_run: bool = False
    rejected_samples: list[tuple[str, str]] = field(default_factory=list)
    invalid_samples: list[tuple[str, str]] = field(default_factory=list)

    @property
    def pushed(self) -> int:
        return self.created + self.updated

    def as_counts(self) -> dict[str, int]:
        return {
            "fetched": self.fetched,
            "new": self.new,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "retried": self.retried,
            "created": self.created,
            "updated": self.updated,
            "pushed": self.pushed,
            "settled": self.settled,
            "rejected": self.rejected,
            "invalid": self.invalid,
            "parked": self.parked,
            "waiting": self.waiting,
            "deferred": self.deferred,
            "planned": self.planned,
            "api_requests": self.api_requests,
        }


@dataclass(frozen=True)
class _State:
    status: str
    pushed_hash: str | None
    pushed_payload: dict[str, Any] | None
    attempt_hash: str | None
    attempt_payload: dict[str, Any] | None
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None = None


_SAMPLE_LIMIT = 20
_MAX_AMBIGUOUS_RETRIES = 3


def _refused_as_a_whole(exc: ApiError) -> bool:
    """A 4xx that is not throttling: the request was refused, so its records can be split."""
    return exc.status is not None and 400 <= exc.status < 500 and exc.status not in (401, 403, 429)


class SyncEngine:
    """Pushes the delta between desired state and what was last pushed, for one flow and entity."""

    def __init__(
        self,
        warehouse: Warehouse,
        *,
        flow: str,
        entity: str,
        run_id: str,
        dry_run: bool = False,
        max_attempts: int = 5,
        retry_backoff_s: float = 0.0,
        retry_backoff_max_s: float = 3600.0,
        lock_timeout_s: float | None = None,
    ) -> None:
        self.warehouse = warehouse
        self.flow = flow
        self.entity = entity
        self.run_id = run_id
        self.dry_run = dry_run
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.retry_backoff_max_s = retry_backoff_max_s
        self.lock_timeout_s = lock_timeout_s

    def next_attempt_at(self, attempts: int, now: datetime) -> datetime | None:
        """When a record rejected `attempts` times may be tried again (None: on the next run)."""
        if self.retry_backoff_s <= 0:
            return None
        delay = min(self.retry_backoff_max_s, self.retry_backoff_s * 2 ** max(attempts - 1, 0))
        return now + timedelta(seconds=delay)

    # ---- planning -------------------------------------------------------------------------

    def plan(
        self, desired: Iterable[Desired], report: SyncReport, limit: int | None = None
    ) -> tuple[list[Change], list[Desired]]:
        """Diff desired records against sync state. Returns the changes and the invalid records."""
        states, ids = self._load()
        now = _now()
        settle: list[Change] = []
        retries: list[Change] = []
        fresh: list[Change] = []
        invalid: list[Desired] = []
        for record in desired:
            report.fetched += 1
            if record.invalid_reason is not None:
                report.invalid += 1
                state = states.get(record.key)
                already = (
                    state is not None and state.status == "invalid" and (state.last_error == record.invalid_reason)
                )
                if not already:
                    invalid.append(record)
                if len(report.invalid_samples) < _SAMPLE_LIMIT:
                    report.invalid_samples.append((record.key, record.invalid_reason))
                continue
            digest = record.hash
            state = states.get(record.key)
            target_ids = ids.get(record.key, {})
            if state is None or state.status == "invalid":
                report.new += 1
                fresh.append(self._change(record, digest, "create", None, target_ids, 0))
            elif state.status == "in_flight":
                # Left by a crashed run: the target may or may not have it. `previous` stays what was
                # confirmed, so the destination re-checks before appending anything.
                settle.append(
                    self._change(
                        record,
                        digest,
                        "update" if state.pushed_hash else "create",
                        state.pushed_payload,
                        target_ids,
                        state.attempts,
                        in_flight=True,
                        attempt_hash=state.attempt_hash,
                    )
                )
            elif state.status == "rejected":
                if state.attempts >= self.max_attempts and state.attempt_hash == digest:
                    report.parked += 1
                    continue
                if state.next_attempt_at is not None and state.next_attempt_at > now and state.attempt_hash == digest:
                    report.waiting += 1
                    continue
                report.retried += 1
                operation: Operation = "update" if state.pushed_hash else "create"
                retries.append(
                    self._change(record, digest, operation, state.pushed_payload, target_ids, state.attempts)
                )
            elif state.pushed_hash == digest:
                report.unchanged += 1
            else:
                report.changed += 1
                fresh.append(self._change(record, digest, "update", state.pushed_payload, target_ids, state.attempts))
        work = retries + fresh
        if limit is not None and len(work) > limit:
            report.deferred = len(work) - limit
            work = work[:limit]
        return settle + work, invalid

    def _change(
        self,
        record: Desired,
        digest: str,
        operation: Operation,
        previous: Mapping[str, Any] | None,
        target_ids: Mapping[str, str],
        attempts: int,
        *,
        in_flight: bool = False,
        attempt_hash: str | None = None,
    ) -> Change:
        return Change(
            key=record.key,
            operation=operation,
            payload=record.payload,
            previous=previous,
            target_ids=dict(target_ids),
            attempts=attempts,
            hash=digest,
            in_flight=in_flight,
            attempt_hash=attempt_hash,
        )

    # ---- running --------------------------------------------------------------------------

    def exclusive(self, target: str) -> AbstractContextManager[None]:
        """The push lock of this flow to `target`: a push body may hold it around more than `run`."""
        return push_lock(
            self.warehouse.path,
            self.flow,
            target,
            run_id=self.run_id,
            timeout_s=self.lock_timeout_s,
            on_wait=log.warning,
        )

    def run(self, desired: Iterable[Desired], destination: Destination, *, limit: int | None = None) -> SyncReport:
        """Plan, then push the changes chunk by chunk, holding the flow's push lock throughout.
        Raises on errors that are not a record's fault."""
        with self.exclusive(destination.name):
            return self._run(desired, destination, limit)

    def _run(self, desired: Iterable[Desired], destination: Destination, limit: int | None) -> SyncReport:
        report = SyncReport(dry_run=self.dry_run)
        start_requests = destination.requests_used()
        changes, invalid = self.plan(desired, report, limit)
        self._record_invalid(invalid)
        if self.dry_run:
            self._record_plan(changes, report)
            return report
        try:
            changes = self._match_existing(changes, destination, report)
            for start in range(0, len(changes), max(destination.batch_size, 1)):
                self._push_chunk(changes[start : start + destination.batch_size], destination, report)
        finally:
            report.api_requests = destination.requests_used() - start_requests
        return report

    def _match_existing(self, changes: list[Change], destination: Destination, report: SyncReport) -> list[Change]:
        """Look up records about to be created in the target, so none is created twice.

        A create that the target already has (a crashed run's, or one whose answer was lost) is
        settled without a call when it carried this very payload, else turned into a full update.
        """
        to_resolve = [c for c in changes if c.operation == "create"]
        if not to_resolve:
            return changes
        found = destination.resolve(to_resolve)
        settled: list[tuple[Change, Outcome]] = []
        result: list[Change] = []
        for change in changes:
            ids = found.get(change.key) if change.operation == "create" else None
            if not ids:
                result.append(change)
                continue
            merged = {**change.target_ids, **ids}
            if destination.primary_entity not in ids:
                result.append(replace(change, target_ids=merged))
            elif change.in_flight and change.attempt_hash == change.hash:
                settled.append((change, Outcome(change.key, "succeeded", "settle", merged)))
            else:
                result.append(replace(change, operation="update", target_ids=merged, previous=None))
        if settled:
            self._settle(settled, report)
        return result

    def _push_chunk(
        self, chunk: Sequence[Change], destination: Destination, report: SyncReport, depth: int = 0
    ) -> None:
        if not chunk:
            return
        self._mark_in_flight(chunk)
        try:
            outcomes = destination.push(chunk)
        except AmbiguousWriteError as exc:
            if depth >= _MAX_AMBIGUOUS_RETRIES:
                raise  # rows stay in flight; the next run looks them up before writing
            log.warning("%s: answer lost for %d records (%s); looking them up", self.flow, len(chunk), exc)
            retry = [replace(c, in_flight=True, attempt_hash=c.hash) for c in chunk]
            remaining = self._match_existing(retry, destination, report)
            self._push_chunk(remaining, destination, report, depth + 1)
            return
        except ApiError as exc:
            # The service answered with an error, so nothing was applied.
            if isinstance(exc, AuthError) or not _refused_as_a_whole(exc):
                self._restore(chunk)
                raise
            self._split(chunk, destination, report, str(exc))
            return
        except ConfigError:
            self._restore(chunk)
            raise
        # Anything else (a crash, an interrupt) leaves the chunk in flight: the next run looks it up.
        by_key = {o.key: o for o in outcomes}
        pairs = [
            (c, by_key.get(c.key) or Outcome(c.key, "rejected", c.operation, message="no outcome returned"))
            for c in chunk
        ]
        self._settle(pairs, report)

    def _split(self, chunk: Sequence[Change], destination: Destination, report: SyncReport, message: str) -> None:
        """The target refused the request as a whole: halve it until the bad records stand alone."""
        if len(chunk) == 1:
            self._settle([(chunk[0], Outcome(chunk[0].key, "rejected", chunk[0].operation, message=message))], report)
            return
        middle = len(chunk) // 2
        self._push_chunk(chunk[:middle], destination, report)
        self._push_chunk(chunk[middle:], destination, report)

    # ---- warehouse I/O (short transactions only) ------------------------------------------

    def _load(self) -> tuple[dict[str, _State], dict[str, dict[str, str]]]:
        with self.warehouse.connect() as conn:
            rows = conn.execute(
                "SELECT source_key, status, pushed_hash, pushed_payload, attempt_hash, attempt_payload,"
                " attempts, last_error, next_attempt_at FROM sync_state WHERE flow = ? AND entity = ?",
                [self.flow, self.entity],
            ).fetchall()
            id_rows = conn.execute(
                "SELECT source_key, entity, target_id FROM id_map WHERE flow = ?", [self.flow]
            ).fetchall()
        states = {
            row[0]: _State(
                status=row[1],
                pushed_hash=row[2],
                pushed_payload=_json(row[3]),
                attempt_hash=row[4],
                attempt_payload=_json(row[5]),
                attempts=int(row[6]),
                last_error=row[7],
                next_attempt_at=row[8],
            )
            for row in rows
        }
        ids: dict[str, dict[str, str]] = {}
        for key, entity, target_id in id_rows:
            ids.setdefault(key, {})[entity] = target_id
        return states, ids

    def _mark_in_flight(self, chunk: Sequence[Change]) -> None:
        now = _now()
        with self.warehouse.transaction() as conn:
            insert_rows(
                conn,
                "sync_state",
                _STATE_COLUMNS,
                (
                    {
                        "flow": self.flow,
                        "entity": self.entity,
                        "source_key": c.key,
                        "status": "in_flight",
                        "attempt_hash": c.hash,
                        "attempt_payload": c.payload,
                        "attempt_operation": c.operation,
                        "attempts": c.attempts,
                        "last_run_id": self.run_id,
                        "updated_at": now,
                    }
                    for c in chunk
                ),
                on_conflict="ON CONFLICT (flow, entity, source_key) DO UPDATE SET status = 'in_flight',"
                " attempt_hash = excluded.attempt_hash, attempt_payload = excluded.attempt_payload,"
                " attempt_operation = excluded.attempt_operation, last_run_id = excluded.last_run_id,"
                " updated_at = excluded.updated_at",
            )

    def _restore(self, chunk: Sequence[Change]) -> None:
        """Undo in-flight marks for a chunk the target never applied (auth, outage, throttling)."""
        keys = [c.key for c in chunk if not c.in_flight]
        if not keys:
            return
        with self.warehouse.transaction() as conn:
            conn.execute(
                "DELETE FROM sync_state WHERE flow = ? AND entity = ? AND status = 'in_flight'"
                " AND pushed_hash IS NULL AND attempts = 0 AND list_contains(?, source_key)",
                [self.flow, self.entity, keys],
            )
            conn.execute(
                "UPDATE sync_state SET status = CASE WHEN attempts > 0 THEN 'rejected' ELSE 'synced' END"
                " WHERE flow = ? AND entity = ? AND status = 'in_flight' AND list_contains(?, source_key)",
                [self.flow, self.entity, keys],
            )

    def _settle(self, pairs: Sequence[tuple[Change, Outcome]], report: SyncReport) -> None:
        now = _now()
        state_rows: list[dict[str, Any]] = []
        id_rows: list[dict[str, Any]] = []
        log_rows: list[dict[str, Any]] = []
        base = {"flow": self.flow, "entity": self.entity, "last_run_id": self.run_id, "updated_at": now}
        for change, outcome in pairs:
            for entity, target_id in outcome.target_ids.items():
                if target_id:
                    id_rows.append(
                        {
                            "flow": self.flow,
                            "entity": entity,
                            "source_key": change.key,
                            "target_id": str(target_id),
                            "updated_at": now,
                        }
                    )
            if outcome.status == "succeeded":
                if outcome.operation == "create":
                    report.created += 1
                elif outcome.operation == "update":
                    report.updated += 1
                else:
                    report.settled += 1
                state_rows.append(
                    {
                        **base,
                        "source_key": change.key,
                        "status": "synced",
                        "pushed_hash": change.hash,
                        "pushed_payload": change.payload,
                        "attempts": 0,
                        "first_synced_at": now,
                    }
                )
            else:
                report.rejected += 1
                if len(report.rejected_samples) < _SAMPLE_LIMIT:
                    report.rejected_samples.append((change.key, outcome.message))
                state_rows.append(
                    {
                        **base,
                        "source_key": change.key,
                        "status": "rejected",
                        "attempts": change.attempts + 1,
                        "last_error": outcome.message,
                        "next_attempt_at": self.next_attempt_at(change.attempts + 1, now),
                    }
                )
            log_rows.append(
                {
                    "run_id": self.run_id,
                    "flow": self.flow,
                    "entity": self.entity,
                    "source_key": change.key,
                    "operation": outcome.operation,
                    "status": outcome.status,
                    "message": outcome.message or None,
                    "payload": change.payload,
                    "created_at": now,
                }
            )
        with self.warehouse.transaction() as conn:
            insert_rows(
                conn,
                "sync_state",
                _STATE_COLUMNS,
                state_rows,
                on_conflict="ON CONFLICT (flow, entity, source_key) DO UPDATE SET status = excluded.status,"
                " pushed_hash = COALESCE(excluded.pushed_hash, sync_state.pushed_hash),"
                " pushed_payload = COALESCE(excluded.pushed_payload, sync_state.pushed_payload),"
                " attempts = excluded.attempts, last_error = excluded.last_error,"
                " next_attempt_at = excluded.next_attempt_at, last_run_id = excluded.last_run_id,"
                " first_synced_at = COALESCE(sync_state.first_synced_at, excluded.first_synced_at),"
                " updated_at = excluded.updated_at",
            )
            insert_rows(
                conn,
                "id_map",
                _ID_COLUMNS,
                id_rows,
                on_conflict="ON CONFLICT (flow, entity, source_key) DO UPDATE SET target_id = excluded.target_id,"
                " updated_at = excluded.updated_at",
            )
            insert_rows(conn, "sync_log", _LOG_COLUMNS, log_rows)

    def _record_invalid(self, invalid: Sequence[Desired]) -> None:
        if not invalid:
            return
        now = _now()
        with self.warehouse.transaction() as conn:
            insert_rows(
                conn,
                "sync_state",
                _STATE_COLUMNS,
                (
                    {
                        "flow": self.flow,
                        "entity": self.entity,
                        "source_key": d.key,
                        "status": "invalid",
                        "attempts": 0,
                        "last_error": d.invalid_reason,
                        "last_run_id": self.run_id,
                        "updated_at": now,
                    }
                    for d in invalid
                ),
                on_conflict="ON CONFLICT (flow, entity, source_key) DO UPDATE SET status = 'invalid',"
                " last_error = excluded.last_error, last_run_id = excluded.last_run_id,"
                " updated_at = excluded.updated_at",
            )
            insert_rows(
                conn,
                "sync_log",
                _LOG_COLUMNS,
                (
                    {
                        "run_id": self.run_id,
                        "flow": self.flow,
                        "entity": self.entity,
                        "source_key": d.key,
                        "operation": "validate",
                        "status": "invalid",
                        "message": d.invalid_reason,
                        "payload": d.payload,
                        "created_at": now,
                    }
                    for d in invalid
                ),
            )

    def _record_plan(self, changes: Sequence[Change], report: SyncReport) -> None:
        report.planned = len(changes)
        now = _now()
        with self.warehouse.transaction() as conn:
            insert_rows(
                conn,
                "sync_log",
                _LOG_COLUMNS,
                (
                    {
                        "run_id": self.run_id,
                        "flow": self.flow,
                        "entity": self.entity,
                        "source_key": c.key,
                        "operation": c.operation,
                        "status": "planned",
                        "message": "dry run" + (": settle in-flight record" if c.in_flight else ""),
                        "payload": c.payload,
                        "created_at": now,
                    }
                    for c in changes
                ),
            )


_STATE_COLUMNS = {
    "flow": "VARCHAR",
    "entity": "VARCHAR",
    "source_key": "VARCHAR",
    "status": "VARCHAR",
    "pushed_hash": "VARCHAR",
    "pushed_payload": "JSON",
    "attempt_hash": "VARCHAR",
    "attempt_payload": "JSON",
    "attempt_operation": "VARCHAR",
    "attempts": "INTEGER",
    "last_error": "VARCHAR",
    "last_run_id": "VARCHAR",
    "first_synced_at": "TIMESTAMPTZ",
    "next_attempt_at": "TIMESTAMPTZ",
    "updated_at": "TIMESTAMPTZ",
}
_ID_COLUMNS = {
    "flow": "VARCHAR",
    "entity": "VARCHAR",
    "source_key": "VARCHAR",
    "target_id": "VARCHAR",
    "updated_at": "TIMESTAMPTZ",
}
_LOG_COLUMNS = {
    "run_id": "VARCHAR",
    "flow": "VARCHAR",
    "entity": "VARCHAR",
    "source_key": "VARCHAR",
    "operation": "VARCHAR",
    "status": "VARCHAR",
    "message": "VARCHAR",
    "payload": "JSON",
    "created_at": "TIMESTAMPTZ",
}


def _json(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    loaded = json.loads(value)
    return loaded if isinstance(loaded, dict) else None


def _now() -> datetime:
    return datetime.now(UTC)
