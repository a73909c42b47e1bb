"""ABCP tables: partition loads are idempotent, page duplicates collapse, the newest version wins."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from integration_sync.defs.abcp_bitrix24.checks import (
    rejected_share_below_threshold,
    synced_users_have_contact_and_deal,
)
from integration_sync.defs.abcp_bitrix24.resources import UsersPipelineResource
from integration_sync.defs.abcp_bitrix24.tables import latest_users, partition_count, store_users
from integration_sync.defs.resources import WarehouseResource
from integration_sync.sync.warehouse import Warehouse

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
    pipeline = UsersPipelineResource(
        category_id=5, stage_id="C5:NEW", uf_user_id="U", uf_inn="I", uf_saldo="S", max_rejected_share=0.2
    )
    ids = synced_users_have_contact_and_deal(warehouse=resource)
    assert isinstance(ids, dg.AssetCheckResult)
    assert not ids.passed and ids.metadata["missing_ids"].value == 1
    share = rejected_share_below_threshold(warehouse=resource, users_pipeline=pipeline)
    assert isinstance(share, dg.AssetCheckResult)
    assert not share.passed
