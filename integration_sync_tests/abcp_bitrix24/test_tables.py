"""ABCP tables: partition loads are idempotent, page duplicates collapse, the newest version wins."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from integration_sync.defs.abcp_bitrix24.definitions import FLOW
from integration_sync.defs.abcp_bitrix24.tables import latest_users, partition_count, store_users, turned_away
from integration_sync.defs.resources import WarehouseResource
from integration_sync.sync.warehouse import Warehouse
from integration_sync_tests.dagster_support import environment

DAY = date(2026, 11, 20)


def user(
    user_id: str, registered: str = "2026-11-20 10:00:00", updated: str | None = None, **extra: str
) -> dict[str, str]:
    return {"userId": user_id, "registrationDate": registered, "updateTime": updated or registered, **extra}


@pytest.fixture()
def resource(tmp_path: Path) -> WarehouseResource:
    return WarehouseResource(database=str(tmp_path / "w.duckdb"))


@pytest.fixture()
def store(resource: WarehouseResource) -> Warehouse:
    return resource.warehouse()


def test_reloading_a_partition_replaces_it(store: Warehouse) -> None:
    for _ in range(3):
        report = store_users(store, [user("1"), user("2")], first_day=DAY, last_day=DAY, run_id="r")
        assert (report.fetched, report.stored, report.rejected) == (2, 2, 0)
    assert partition_count(store, DAY, DAY) == 2
    store_users(store, [user("2")], first_day=DAY, last_day=DAY, run_id="r")
    assert partition_count(store, DAY, DAY) == 1


def test_a_user_returned_twice_keeps_its_newest_version(store: Warehouse) -> None:
    older = user("7", updated="2026-11-20 11:00:00", saldo="1")
    newer = user("7", updated="2026-11-20 12:00:00", saldo="2")
    report = store_users(store, [newer, older], first_day=DAY, last_day=DAY, run_id="r")
    assert report.stored == 1
    assert [u["saldo"] for u in latest_users(store)] == ["2"]


def test_a_user_whose_registration_day_moved_is_not_kept_twice(store: Warehouse) -> None:
    store_users(store, [user("5")], first_day=DAY, last_day=DAY, run_id="r")
    moved = user("5", registered="2026-11-21 09:00:00")
    store_users(store, [moved], first_day=date(2026, 11, 21), last_day=date(2026, 11, 21), run_id="r")
    assert [u["registrationDate"] for u in latest_users(store)] == ["2026-11-21 09:00:00"]


def test_a_later_change_wins_over_the_registration_snapshot(store: Warehouse) -> None:
    store_users(store, [user("9", saldo="10")], first_day=DAY, last_day=DAY, run_id="r")
    change = user("9", updated="2026-11-22 08:00:00", saldo="-5")
    report = store_users(
        store, [change], first_day=date(2026, 11, 22), last_day=date(2026, 11, 22), run_id="r", by_update=True
    )
    assert report.stored == 1
    assert [u["saldo"] for u in latest_users(store)] == ["-5"]


def test_every_unusable_record_is_kept_with_its_reason(store: Warehouse) -> None:
    bad = [{"name": "x"}, "text", 42, None, [1], {"userId": "1a"}, user("3", registered="yesterday")]
    report = store_users(store, [*bad, user("4")], first_day=DAY, last_day=DAY, run_id="r")
    assert (report.fetched, report.stored, report.rejected) == (8, 1, 7)
    with store.connect() as conn:
        reasons = sorted(r[0] for r in conn.execute("SELECT reason FROM ingest_rejects").fetchall())
    assert reasons == sorted(
        [
            "no userId",
            "not an object: string",
            "not an object: number",
            "not an object: null",
            "not an object: array",
            "userId is not numeric: 1a",
            "no valid registrationDate",
        ]
    )


def _state(store: Warehouse, rows: list[tuple[str, str]], ids: list[tuple[str, str, str]]) -> None:
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO sync_state (flow, entity, source_key, status, attempts, updated_at)"
            " VALUES ('abcp_bitrix24', 'user', ?, ?, 0, now())",
            rows,
        )
        conn.executemany(
            "INSERT INTO id_map (flow, entity, source_key, target_id, updated_at)"
            " VALUES ('abcp_bitrix24', ?, ?, ?, now())",
            ids,
        )


def test_checks_fail_when_a_synced_user_lacks_ids_or_too_many_are_rejected(
    resource: WarehouseResource, store: Warehouse
) -> None:
    _state(
        store,
        [("1", "synced"), ("2", "synced"), ("3", "rejected")],
        [("contact", "1", "10"), ("deal", "1", "20"), ("contact", "2", "11")],
    )
    checks = {next(iter(c.check_keys)).name: c for c in FLOW.generic_checks}
    ids = checks["target_ids_present"](warehouse=resource)
    assert isinstance(ids, dg.AssetCheckResult)
    assert not ids.passed and ids.metadata["missing_ids"].value == 1
    with environment({"ABCP_MAX_REJECTED_SHARE": "0.2"}):
        share = checks["rejected_share_below_threshold"](warehouse=resource)
    assert isinstance(share, dg.AssetCheckResult)
    assert not share.passed and share.metadata["threshold"].value == 0.2


def test_each_day_of_a_range_gets_its_own_counts(store: Warehouse) -> None:
    """Issue 10: a two-day load reported the range's total on each day (fetched=17 on both)."""
    first, second, empty = DAY, date(2026, 11, 21), date(2026, 11, 22)
    day_one = [user(str(n)) for n in range(1, 10)] + [user("1", updated="2026-11-20 11:00:00")]  # 1 twice
    day_two = [user(str(n), registered="2026-11-21 08:00:00") for n in range(20, 26)] + [{"name": "no id"}]
    day_two[-1]["registrationDate"] = "2026-11-21 09:00:00"  # turned away, but its day is known
    undated = user("30", registered="yesterday")  # turned away before its day is known: the first day
    unstorable = {"userId": "31", "registrationDate": "2026-11-21 10:00:00", "big": 2**70}
    report = store_users(store, [*day_one, *day_two, undated, unstorable], first_day=first, last_day=empty, run_id="r")
    assert (report.fetched, report.stored, report.rejected) == (19, 15, 3)
    assert report.per_day == {
        first: {"fetched": 12, "stored": 9, "invalid": 2},
        second: {"fetched": 7, "stored": 6, "invalid": 1},
        empty: {"fetched": 0, "stored": 0, "invalid": 0},
    }
    # a change dated past the range (the API's window and its date disagree) counts on the last day
    late = [user("5", updated="2026-11-22 07:00:00"), user("6", updated="2026-11-23 00:00:01")]
    changes = store_users(store, late, first_day=second, last_day=empty, run_id="r", by_update=True)
    assert changes.per_day == {
        second: {"fetched": 0, "stored": 0, "invalid": 0},
        empty: {"fetched": 2, "stored": 2, "invalid": 0},
    }


def test_turned_away_counts_recent_loads_and_a_record_once(store: Warehouse) -> None:
    today = datetime.now(UTC).date()
    store_users(store, [user("1"), user("2"), {"name": "x"}], first_day=DAY, last_day=DAY, run_id="r")
    # the same day again inside a longer range: its reject is under a second label, still one record
    store_users(store, [user("1"), user("2"), {"name": "x"}], first_day=DAY, last_day=DAY + timedelta(1), run_id="r")
    changes = [user("3", updated="2026-11-20 12:00:00"), {"userId": "4"}]
    store_users(store, changes, first_day=DAY, last_day=DAY, run_id="r", by_update=True)
    assert turned_away(store, today) == (2, 5)
    assert turned_away(store, today + timedelta(days=1)) == (0, 0)
