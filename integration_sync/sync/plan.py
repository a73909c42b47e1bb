"""Planning, pure: the changes a push makes, given desired records, their sync state and the push mode."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from integration_sync.sync.changes import Change, Desired, Mode, Operation, PlannedChange, SyncReport, field_diff
from integration_sync.sync.ledger import State

SAMPLE_LIMIT = 20
PLAN_LIMIT = 50


@dataclass
class Plan:
    """Changes to push (in-flight settlements first), invalid records, and records the mode skips."""

    changes: list[Change] = field(default_factory=list)
    invalid: list[Desired] = field(default_factory=list)
    skipped: list[tuple[Change, str]] = field(default_factory=list)


def _skip_reason(change: Change, mode: Mode) -> str | None:
    if mode == "create_only" and change.operation == "update" and not change.in_flight:
        return "already synced; create_only never updates"
    if mode == "update_only" and change.operation == "create":
        return "no target id; update_only never creates"
    return None


def make_plan(
    desired: Sequence[Desired],
    states: Mapping[str, State],
    ids: Mapping[str, Mapping[str, str]],
    report: SyncReport,
    *,
    max_attempts: int,
    now: datetime,
    mode: Mode = "upsert",
    limit: int | None = None,
) -> Plan:
    """Diff desired records against sync state, counting into `report`."""
    plan = Plan()
    settle: list[Change] = []
    retries: list[Change] = []
    fresh: list[Change] = []
    for record in desired:
        report.fetched += 1
        if record.invalid_reason is not None:
            report.invalid += 1
            state = states.get(record.key)
            already = state is not None and state.status == "invalid" and (state.last_error == record.invalid_reason)
            if not already:
                plan.invalid.append(record)
            if len(report.invalid_samples) < SAMPLE_LIMIT:
                report.invalid_samples.append((record.key, record.invalid_reason))
            continue
        digest = record.hash
        state = states.get(record.key)
        target_ids = ids.get(record.key, {})
        if state is None or state.status == "invalid":
            report.new += 1
            fresh.append(_change(record, digest, "create", None, target_ids, 0))
        elif state.status == "in_flight":
            # Left by a crashed run: the target may or may not have it. `previous` stays what was
            # confirmed, so the destination re-checks before appending anything.
            settle.append(
                _change(
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
            if state.attempts >= max_attempts and state.attempt_hash == digest:
                report.parked += 1
                continue
            if state.next_attempt_at is not None and state.next_attempt_at > now and state.attempt_hash == digest:
                report.waiting += 1
                continue
            report.retried += 1
            operation: Operation = "update" if state.pushed_hash else "create"
            retries.append(_change(record, digest, operation, state.pushed_payload, target_ids, state.attempts))
        elif state.pushed_hash == digest:
            report.unchanged += 1
        else:
            report.changed += 1
            fresh.append(_change(record, digest, "update", state.pushed_payload, target_ids, state.attempts))
    work: list[Change] = []
    for change in settle + retries + fresh:
        reason = _skip_reason(change, mode)
        if reason is None:
            work.append(change)
        else:
            plan.skipped.append((change, reason))
    report.skipped += len(plan.skipped)
    settling = [c for c in work if c.in_flight]
    rest = [c for c in work if not c.in_flight]
    if limit is not None and len(rest) > limit:
        report.deferred = len(rest) - limit
        rest = rest[:limit]
    plan.changes = settling + rest
    return plan


def planned(changes: Sequence[Change], limit: int = PLAN_LIMIT) -> list[PlannedChange]:
    """The first `limit` changes with their field-level diff against what was last pushed."""
    return [PlannedChange(c.key, c.operation, field_diff(c.previous, c.payload)) for c in changes[:limit]]


def _change(
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
