"""The reverse-ETL engine every push shares: diff, identity, in-flight settlement, sync log, dry run, modes.

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
  target never overlap, however they were launched;
- runs in a mode: `upsert` (default), `create_only` (never update a synced record) or `update_only`
  (never create); records the mode leaves out are logged as `skip`;
- on a dry run, reports the planned changes field by field (`SyncReport.plan`, first 50);
- for two-way flows, remembers what it last wrote (`last_written`, for `two_way.strip_echoes`), when
  a field's value was first seen (`observe`), and logs settled conflicts (`record_conflicts`).

It never holds a DuckDB connection across a network call. The data types live in `changes.py`, the
planning in `plan.py`, the warehouse I/O in `ledger.py` and the two-way rules in `two_way.py`; the
names flows import stay importable from here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from integration_sync.connectors.errors import AmbiguousWriteError, ApiError, AuthError, ConfigError
from integration_sync.sync.changes import (
    MODES,
    Change,
    Desired,
    Destination,
    FieldDiff,
    Mode,
    Operation,
    Outcome,
    OutcomeStatus,
    PlannedChange,
    SyncReport,
    content_hash,
)
from integration_sync.sync.ledger import Ledger
from integration_sync.sync.plan import SAMPLE_LIMIT, Plan, make_plan, planned
from integration_sync.sync.push_lock import push_lock
from integration_sync.sync.two_way import Resolution
from integration_sync.sync.warehouse import Warehouse

__all__ = [
    "MODES",
    "Change",
    "Desired",
    "Destination",
    "FieldDiff",
    "Mode",
    "Operation",
    "Outcome",
    "OutcomeStatus",
    "PlannedChange",
    "SyncEngine",
    "SyncReport",
    "content_hash",
]

log = logging.getLogger(__name__)

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
        mode: str | None = None,
        max_attempts: int = 5,
        retry_backoff_s: float = 0.0,
        retry_backoff_max_s: float = 3600.0,
        lock_timeout_s: float | None = None,
    ) -> None:
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.warehouse = warehouse
        self.flow = flow
        self.entity = entity
        self.run_id = run_id
        self.dry_run = dry_run
        self.mode: Mode = MODES[MODES.index(mode)] if mode is not None else "upsert"
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.retry_backoff_max_s = retry_backoff_max_s
        self.lock_timeout_s = lock_timeout_s
        self.ledger = Ledger(warehouse, flow, entity, run_id)
        # while a push runs: the thread writing its ledger rows, and the writes not yet waited for
        self._writer: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []

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
        result = self._plan(list(desired), report, limit)
        return result.changes, result.invalid

    def _plan(self, desired: Sequence[Desired], report: SyncReport, limit: int | None) -> Plan:
        states, ids = self.ledger.load([d.key for d in desired])
        return make_plan(
            desired, states, ids, report, max_attempts=self.max_attempts, now=_now(), mode=self.mode, limit=limit
        )

    # ---- two-way --------------------------------------------------------------------------

    def last_written(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """What this push last wrote to its target, per record and dotted field path: read back from
        that target, an equal value is our own echo (`two_way.strip_echoes`)."""
        return self.ledger.last_written(keys)

    def observe(self, observed: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, datetime]]:
        """When each record's field value was first seen (for sources without change times)."""
        return self.ledger.observe(observed)

    def record_conflicts(self, conflicts: Mapping[str, Sequence[Resolution]]) -> int:
        """Write every conflict among `conflicts` (record key → its fields' resolutions) to sync_log:
        operation `conflict`, status `resolved`, both values and the winner. Returns how many."""
        rows = [
            (
                key,
                "conflict",
                "resolved",
                f"{r.field}: {r.winner} wins ({r.reason})",
                {"field": r.field, "ours": r.ours, "theirs": r.theirs, "winner": r.winner, "value": r.value},
            )
            for key, resolutions in conflicts.items()
            for r in resolutions
            if r.conflict
        ]
        if rows and not self.dry_run:
            self.ledger.log(rows)
        return len(rows)

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
            return self._run(list(desired), destination, limit)

    def _run(self, desired: Sequence[Desired], destination: Destination, limit: int | None) -> SyncReport:
        report = SyncReport(dry_run=self.dry_run, mode=self.mode)
        start_requests = destination.requests_used()
        plan = self._plan(desired, report, limit)
        changes = plan.changes
        self.ledger.record_invalid(plan.invalid)
        if plan.skipped:
            prefix = "dry run: " if self.dry_run else ""
            self.ledger.log((c.key, "skip", "skipped", prefix + reason, c.payload) for c, reason in plan.skipped)
        if self.dry_run:
            report.planned = len(changes)
            report.plan = planned(changes)
            note = {True: "dry run: settle in-flight record", False: "dry run"}
            self.ledger.log((c.key, c.operation, "planned", note[c.in_flight], c.payload) for c in changes)
            return report
        try:
            changes = self._match_existing(changes, destination, report)
            size = max(destination.batch_size, 1)
            chunks = [changes[start : start + size] for start in range(0, len(changes), size)]
            self._push_all(chunks, destination, report)
        finally:
            report.api_requests = destination.requests_used() - start_requests
        return report

    def _push_all(self, chunks: Sequence[Sequence[Change]], destination: Destination, report: SyncReport) -> None:
        """Push the chunks in order. The warehouse writes run in one background thread, one at a time:
        the next chunk is marked in flight while this one is sent, and this one is settled while the
        next is sent, so the rate budget is not left idle during warehouse work. A chunk is sent only
        once its in-flight mark is committed."""
        if not chunks:
            return
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ledger-{self.flow}")
        try:
            mark = self._write(self.ledger.mark_in_flight, chunks[0])
            for i, chunk in enumerate(chunks):
                mark.result()
                for done in [f for f in self._pending if f.done()]:
                    done.result()  # a failed settle stops the push here, not at the end
                following = chunks[i + 1] if i + 1 < len(chunks) else None
                if following is not None:
                    mark = self._write(self.ledger.mark_in_flight, following)
                try:
                    self._push_chunk(chunk, destination, report, marked=True)
                except BaseException:
                    if following is not None:
                        self._drain()
                        self.ledger.restore(following)  # marked, never sent
                    raise
            self._drain()
        finally:
            writer, self._writer = self._writer, None
            writer.shutdown(wait=True)
            self._pending = []

    def _write(self, fn: Callable[..., None], *args: Any) -> Future[None]:
        if self._writer is None:
            fn(*args)
            done: Future[None] = Future()
            done.set_result(None)
            return done
        future = self._writer.submit(fn, *args)
        self._pending.append(future)
        return future

    def _drain(self) -> None:
        """Wait for every queued warehouse write; raise the first failure."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def _match_existing(self, changes: list[Change], destination: Destination, report: SyncReport) -> list[Change]:
        """Look up records about to be created in the target, so none is created twice.

        A create that the target already has (a crashed run's, or one whose answer was lost) is
        settled without a call when it carried this very payload, else turned into a full update
        (in `create_only` mode: linked to it, not written).
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
            elif self.mode == "create_only":
                message = "exists in target; create_only never updates"
                settled.append((change, Outcome(change.key, "succeeded", "link", merged, message)))
            else:
                result.append(replace(change, operation="update", target_ids=merged, previous=None))
        if settled:
            self._settle(settled, report)
        return result

    def _push_chunk(
        self,
        chunk: Sequence[Change],
        destination: Destination,
        report: SyncReport,
        depth: int = 0,
        *,
        marked: bool = False,
    ) -> None:
        if not chunk:
            return
        if not marked:
            self._drain()
            self.ledger.mark_in_flight(chunk)
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
                self._drain()
                self.ledger.restore(chunk)
                raise
            self._split(chunk, destination, report, str(exc))
            return
        except ConfigError:
            self._drain()
            self.ledger.restore(chunk)
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

    def _settle(self, pairs: Sequence[tuple[Change, Outcome]], report: SyncReport) -> None:
        for _change, outcome in pairs:
            if outcome.status != "succeeded":
                report.rejected += 1
                if len(report.rejected_samples) < SAMPLE_LIMIT:
                    report.rejected_samples.append((outcome.key, outcome.message))
            elif outcome.operation == "create":
                report.created += 1
            elif outcome.operation == "update":
                report.updated += 1
            elif outcome.operation == "link":
                report.skipped += 1
            else:
                report.settled += 1
        self._write(self.ledger.settle, pairs, self.next_attempt_at)


def _now() -> datetime:
    return datetime.now(UTC)
