"""The sync engine against an in-memory target that keeps records and can fail like a real API."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from integration_sync.connectors.errors import AmbiguousWriteError, ApiError, AuthError
from integration_sync.sync.engine import Change, Desired, Outcome, SyncEngine
from integration_sync.sync.state import ENGINE_MIGRATIONS, redrive
from integration_sync.sync.warehouse import Warehouse


@dataclass
class MemoryTarget:
    """A target system: records by id, an external-key index, request counting, scripted failures."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: int = 0
    reject_keys: set[str] = field(default_factory=set)
    drop_after_commit: int = 0  # next N pushes commit, then raise AmbiguousWriteError
    crash_after_commit: bool = False  # the process dies right after the target committed
    drop_before_commit: int = 0  # next N pushes are lost on the way: nothing written, client unsure
    refuse_whole_if: set[str] = field(default_factory=set)  # a 400 for any request containing these keys
    auth_broken: bool = False
    next_id: int = 1

    name = "memory"
    primary_entity = "record"
    batch_size = 4

    def requests_used(self) -> int:
        return self.requests

    def by_key(self, key: str) -> list[str]:
        return [rid for rid, rec in self.records.items() if rec["key"] == key]

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        self.requests += 1
        found: dict[str, dict[str, str]] = {}
        for change in changes:
            ids = self.by_key(change.key)
            if ids:
                found[change.key] = {"record": ids[0]}
        return found

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        self.requests += 1
        if self.auth_broken:
            raise AuthError("memory", "bad token", status=401)
        if self.drop_before_commit:
            self.drop_before_commit -= 1
            raise AmbiguousWriteError("memory", "read timeout")
        if self.refuse_whole_if & {c.key for c in changes}:
            raise ApiError("memory", "Request validation failed", status=400)
        outcomes = []
        for change in changes:
            if change.key in self.reject_keys:
                outcomes.append(Outcome(change.key, "rejected", change.operation, message="field X is invalid"))
                continue
            if change.operation == "create":
                rid = str(self.next_id)
                self.next_id += 1
                self.records[rid] = {"key": change.key, **change.payload}
            else:
                rid = change.target_ids["record"]
                self.records[rid].update(change.payload)
            outcomes.append(Outcome(change.key, "succeeded", change.operation, {"record": rid}))
        if self.crash_after_commit:
            raise KeyboardInterrupt("killed mid-push")
        if self.drop_after_commit:
            self.drop_after_commit -= 1
            raise AmbiguousWriteError("memory", "connection dropped after sending")
        return outcomes


@pytest.fixture()
def warehouse(tmp_path) -> Warehouse:
    return Warehouse(tmp_path / "w.duckdb", ENGINE_MIGRATIONS)


def desired(n: int, **overrides: Any) -> list[Desired]:
    return [Desired(key=str(i), payload={"name": f"user {i}", **overrides.get(str(i), {})}) for i in range(n)]


def engine(warehouse: Warehouse, run: str = "r1", **kwargs: Any) -> SyncEngine:
    return SyncEngine(warehouse, flow="test", entity="user", run_id=run, **kwargs)


def statuses(warehouse: Warehouse) -> dict[str, str]:
    with warehouse.connect() as conn:
        return dict(conn.execute("SELECT source_key, status FROM sync_state").fetchall())


def test_first_run_creates_second_run_costs_nothing(warehouse: Warehouse) -> None:
    target = MemoryTarget()
    report = engine(warehouse).run(desired(10), target)
    assert (report.new, report.created, report.rejected) == (10, 10, 0)
    assert len(target.records) == 10
    before = target.requests
    again = engine(warehouse, "r2").run(desired(10), target)
    assert (again.unchanged, again.created, again.updated) == (10, 0, 0)
    assert target.requests == before
    assert again.api_requests == 0


def test_changed_record_is_updated_with_previous_payload(warehouse: Warehouse) -> None:
    target = MemoryTarget()
    engine(warehouse).run(desired(3), target)
    seen: list[Change] = []
    original_push = target.push

    def spy(changes: Sequence[Change]) -> list[Outcome]:
        seen.extend(changes)
        return original_push(changes)

    target.push = spy  # type: ignore[method-assign]
    report = engine(warehouse, "r2").run(desired(3, **{"1": {"name": "renamed"}}), target)
    assert (report.changed, report.updated, report.unchanged) == (1, 1, 2)
    assert [c.key for c in seen] == ["1"]
    assert seen[0].previous == {"name": "user 1"}
    assert seen[0].target_ids == {"record": "2"}
    assert target.records["2"]["name"] == "renamed"


def test_rejected_records_are_retried_then_parked(warehouse: Warehouse) -> None:
    target = MemoryTarget(reject_keys={"2"})
    report = engine(warehouse, max_attempts=2).run(desired(4), target)
    assert (report.created, report.rejected) == (3, 1)
    assert report.rejected_samples == [("2", "field X is invalid")]
    second = engine(warehouse, "r2", max_attempts=2).run(desired(4), target)
    assert (second.retried, second.rejected) == (1, 1)
    third = engine(warehouse, "r3", max_attempts=2).run(desired(4), target)
    assert (third.parked, third.retried) == (1, 0)
    # a changed record leaves the dead-letter parking and is tried again
    target.reject_keys.clear()
    fourth = engine(warehouse, "r4", max_attempts=2).run(desired(4, **{"2": {"name": "fixed"}}), target)
    assert (fourth.retried, fourth.created) == (1, 1)
    assert statuses(warehouse)["2"] == "synced"
    assert len(target.by_key("2")) == 1


def test_rejected_records_wait_a_growing_delay_between_attempts(warehouse: Warehouse) -> None:
    target = MemoryTarget(reject_keys={"1"})
    first = engine(warehouse, retry_backoff_s=600).run(desired(2), target)
    assert (first.created, first.rejected) == (1, 1)
    with warehouse.connect() as conn:
        row = conn.execute("SELECT next_attempt_at - updated_at FROM sync_state WHERE source_key = '1'").fetchone()
        assert row is not None
        (wait,) = row
    assert wait.total_seconds() == pytest.approx(600, abs=1)
    before = target.requests
    second = engine(warehouse, "r2", retry_backoff_s=600).run(desired(2), target)
    assert (second.waiting, second.retried, target.requests - before) == (1, 0, 0)
    with warehouse.connect() as conn:  # the delay has passed
        conn.execute("UPDATE sync_state SET next_attempt_at = now() - INTERVAL 1 SECOND")
    third = engine(warehouse, "r3", retry_backoff_s=600).run(desired(2), target)
    assert (third.retried, third.rejected, third.waiting) == (1, 1, 0)
    with warehouse.connect() as conn:
        row = conn.execute("SELECT next_attempt_at - updated_at FROM sync_state WHERE source_key = '1'").fetchone()
        assert row is not None
        (wait,) = row
    assert wait.total_seconds() == pytest.approx(1200, abs=1)  # doubled after the second failure
    assert engine(warehouse, retry_backoff_s=600, retry_backoff_max_s=900).next_attempt_at(5, datetime.now(UTC)) == (
        pytest.approx(datetime.now(UTC) + timedelta(seconds=900), abs=timedelta(seconds=1))
    )


def test_re_drive_gives_parked_records_a_fresh_budget(warehouse: Warehouse) -> None:
    target = MemoryTarget(reject_keys={"0", "1"})
    for run in ("r1", "r2", "r3"):
        report = engine(warehouse, run, max_attempts=2).run(desired(3), target)
    assert report.parked == 2
    target.reject_keys.clear()
    assert redrive(warehouse, "test", "user", ["1", "2"]) == ["1"]  # "2" is synced: left alone
    report = engine(warehouse, "r4", max_attempts=2).run(desired(3), target)
    assert (report.retried, report.created, report.parked) == (1, 1, 1)
    assert redrive(warehouse, "test", "user") == ["0"]
    assert engine(warehouse, "r5", max_attempts=2).run(desired(3), target).created == 1
    assert set(statuses(warehouse).values()) == {"synced"}


def test_lost_answer_is_looked_up_not_created_twice(warehouse: Warehouse) -> None:
    target = MemoryTarget(drop_after_commit=1)
    report = engine(warehouse).run(desired(6), target)
    assert all(len(target.by_key(str(i))) == 1 for i in range(6))
    assert report.rejected == 0
    assert set(statuses(warehouse).values()) == {"synced"}


def test_crashed_run_leaves_in_flight_rows_that_the_next_run_settles(warehouse: Warehouse) -> None:
    target = MemoryTarget(crash_after_commit=True)
    with pytest.raises(KeyboardInterrupt):
        engine(warehouse).run(desired(3), target)
    assert set(statuses(warehouse).values()) == {"in_flight"}
    target.crash_after_commit = False
    report = engine(warehouse, "r2").run(desired(3), target)
    assert set(statuses(warehouse).values()) == {"synced"}
    assert all(len(target.by_key(str(i))) == 1 for i in range(3))
    assert report.settled + report.created == 3


def test_answer_lost_every_time_gives_up_and_leaves_rows_in_flight(warehouse: Warehouse) -> None:
    target = MemoryTarget(drop_before_commit=100)
    with pytest.raises(AmbiguousWriteError):
        engine(warehouse).run(desired(2), target)
    assert set(statuses(warehouse).values()) == {"in_flight"}
    assert target.records == {}
    target.drop_before_commit = 0
    report = engine(warehouse, "r2").run(desired(2), target)
    assert report.created == 2 and all(len(target.by_key(str(i))) == 1 for i in range(2))


def test_answer_lost_before_commit_is_resent_once_lookup_finds_nothing(warehouse: Warehouse) -> None:
    target = MemoryTarget(drop_before_commit=1)
    report = engine(warehouse).run(desired(3), target)
    assert report.created == 3
    assert all(len(target.by_key(str(i))) == 1 for i in range(3))


def test_batch_refused_as_a_whole_is_split_to_isolate_the_bad_record(warehouse: Warehouse) -> None:
    target = MemoryTarget(refuse_whole_if={"2"})
    report = engine(warehouse).run(desired(4), target)
    assert (report.created, report.rejected) == (3, 1)
    assert statuses(warehouse)["2"] == "rejected"


def test_auth_error_fails_the_run_and_counts_no_attempt(warehouse: Warehouse) -> None:
    target = MemoryTarget(auth_broken=True)
    with pytest.raises(AuthError):
        engine(warehouse).run(desired(2), target)
    assert statuses(warehouse) == {}
    target.auth_broken = False
    report = engine(warehouse, "r2").run(desired(2), target)
    assert report.created == 2


def test_invalid_records_are_logged_once_and_never_sent(warehouse: Warehouse) -> None:
    target = MemoryTarget()
    records = [*desired(2), Desired(key="bad", payload={}, invalid_reason="no phone and no email")]
    report = engine(warehouse).run(records, target)
    assert (report.invalid, report.created) == (1, 2)
    assert target.by_key("bad") == []
    engine(warehouse, "r2").run(records, target)
    with warehouse.connect() as conn:
        rows = conn.execute("SELECT run_id, message FROM sync_log WHERE status = 'invalid'").fetchall()
    assert rows == [("r1", "no phone and no email")]


def test_dry_run_plans_without_calling(warehouse: Warehouse) -> None:
    target = MemoryTarget()
    report = engine(warehouse, dry_run=True).run(desired(5), target)
    assert (report.planned, target.requests, len(target.records)) == (5, 0, 0)
    with warehouse.connect() as conn:
        planned = conn.execute("SELECT count(*) FROM sync_log WHERE status = 'planned'").fetchone()
    assert planned == (5,)
    assert statuses(warehouse) == {}


def test_limit_defers_the_rest(warehouse: Warehouse) -> None:
    target = MemoryTarget()
    report = engine(warehouse).run(desired(10), target, limit=3)
    assert (report.created, report.deferred) == (3, 7)
    report = engine(warehouse, "r2").run(desired(10), target)
    assert (report.created, report.unchanged) == (7, 3)


def test_existing_target_record_is_matched_not_duplicated(warehouse: Warehouse) -> None:
    target = MemoryTarget()
    target.records["99"] = {"key": "1", "name": "made by hand"}
    report = engine(warehouse).run(desired(2), target)
    assert (report.created, report.updated) == (1, 1)
    assert target.by_key("1") == ["99"]
    assert target.records["99"]["name"] == "user 1"
