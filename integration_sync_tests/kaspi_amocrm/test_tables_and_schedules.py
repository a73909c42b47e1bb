"""Kaspi tables (idempotent loads, status history, counts) and the schedules' windows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from integration_sync.defs.kaspi_amocrm.assets import kazakhstan_days
from integration_sync.defs.kaspi_amocrm.schedules import WINDOW_DAYS, _first_day, kaspi_reconciliation
from integration_sync.defs.kaspi_amocrm.tables import (
    OrderRow,
    known_entries,
    orders_to_sync,
    partition_mismatches,
    store_orders,
    turned_away,
)
from integration_sync.defs.resources import WarehouseResource
from integration_sync.sync.normalize import KAZAKHSTAN, KAZAKHSTAN_ZONE
from integration_sync.sync.warehouse import Warehouse

DAY = date(2026, 11, 20)


def row(code: str, status: str = "APPROVED_BY_BANK", day: date = DAY) -> OrderRow:
    attributes: dict[str, Any] = {
        "code": code,
        "status": status,
        "state": "NEW",
        "totalPrice": 100,
        "creationDate": 1_795_199_400_000,
        "customer": {"id": "c", "cellPhone": "7011234567"},
    }
    entries = [
        {
            "id": f"{code}-1",
            "entry_number": 1,
            "code": "SKU",
            "name": "Товар",
            "quantity": 1,
            "base_price": 100,
            "total_price": 100,
            "raw": {},
        }
    ]
    return OrderRow(code=code, order_id=f"id-{code}", day=day, attributes=attributes, entries=entries)


@pytest.fixture()
def store(tmp_path: Path) -> Warehouse:
    return WarehouseResource(database=str(tmp_path / "w.duckdb")).warehouse()


def test_reloading_a_day_replaces_it_and_keeps_lines_once(store: Warehouse) -> None:
    for _ in range(2):
        report = store_orders(store, [row("1"), row("2")], first_day=DAY, last_day=DAY, api_totals={DAY: 2}, run_id="r")
    assert (report.fetched, report.stored, report.new) == (2, 2, 0)
    assert {k: len(v) for k, v in known_entries(store).items()} == {"1": 1, "2": 1}
    assert partition_mismatches(store) == []


def test_status_moves_are_recorded(store: Warehouse) -> None:
    store_orders(store, [row("1")], first_day=DAY, last_day=DAY, api_totals={DAY: 1}, run_id="r1")
    report = store_orders(store, [row("1", "COMPLETED")], first_day=DAY, last_day=DAY, api_totals={DAY: 1}, run_id="r2")
    assert report.status_changes == 1
    with store.connect() as conn:
        moves = conn.execute("SELECT order_code, old_status, new_status FROM kaspi_order_status_changes").fetchall()
    assert moves == [("1", "APPROVED_BY_BANK", "COMPLETED")]


def test_a_count_below_kaspis_total_is_reported(store: Warehouse) -> None:
    store_orders(store, [row("1")], first_day=DAY, last_day=DAY, api_totals={DAY: 3}, run_id="r")
    assert partition_mismatches(store) == [(DAY, 3, 1)]


def test_old_unsynced_orders_stay_in_the_desired_state(store: Warehouse) -> None:
    old = DAY - timedelta(days=60)
    store_orders(store, [row("old", day=old)], first_day=old, last_day=old, api_totals={}, run_id="r")
    store_orders(store, [row("new")], first_day=DAY, last_day=DAY, api_totals={}, run_id="r")
    codes = [attrs["code"] for attrs, _ in orders_to_sync(store, since=DAY - timedelta(days=1))]
    assert sorted(codes) == ["new", "old"]


def test_kazakhstan_is_utc_plus_5_whatever_the_system_tzdata() -> None:
    # All of Kazakhstan moved to UTC+5 on 2024-03-01; a tzdata older than 2024a still says +6 for
    # Asia/Almaty and would split days wrongly, so partitions, schedules and mapping use one fixed zone.
    for moment in (datetime(2026, 1, 15, 12), datetime(2026, 6, 1, 12)):
        assert moment.replace(tzinfo=KAZAKHSTAN).utcoffset() == timedelta(hours=5)
    assert kazakhstan_days.timezone == KAZAKHSTAN_ZONE
    assert kaspi_reconciliation.execution_timezone == KAZAKHSTAN_ZONE


def test_minute_window_is_yesterday_and_today_then_catches_up_after_an_outage() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=KAZAKHSTAN)
    assert _first_day(now, (now - timedelta(minutes=1)).timestamp()).date() == date(2026, 11, 22)
    down = now - timedelta(days=3, hours=5)
    assert _first_day(now, down.timestamp()).date() == date(2026, 11, 20)
    ancient = now - timedelta(days=60)
    assert _first_day(now, ancient.timestamp()).date() == (now - timedelta(days=WINDOW_DAYS - 1)).date()


def test_each_day_of_a_range_gets_its_own_counts(store: Warehouse) -> None:
    """Issue 10: a two-day load reported the range's total on each day (fetched=17 on both)."""
    second, idle = DAY + timedelta(days=1), DAY + timedelta(days=2)
    bad = row("b6", day=second)
    bad.attributes["kaspiDelivery"] = {"waybillNumber": 2**70}  # cannot be stored: quarantined
    orders = [row(f"a{n}") for n in range(10)] + [row("a0")] + [row(f"b{n}", day=second) for n in range(6)] + [bad]
    report = store_orders(store, orders, first_day=DAY, last_day=idle, api_totals={DAY: 10, second: 7}, run_id="r1")
    zeros = dict.fromkeys(("fetched", "new", "stored", "status_changes", "quarantined"), 0)
    assert report.per_day == {
        DAY: {**zeros, "fetched": 11, "new": 10, "stored": 10, "kaspi_total": 10},
        second: {**zeros, "fetched": 7, "new": 7, "stored": 6, "quarantined": 1, "kaspi_total": 7},
        idle: zeros,
    }
    assert (report.fetched, report.new, report.stored, report.quarantined) == (18, 17, 16, 1)
    # the minute run: no totalCount asked, one order moved on the first day, one new on the second,
    # one dated the day before the range (counted on its first day)
    moved = store_orders(
        store,
        [row("a1", "COMPLETED"), row("b7", day=second), row("c0", day=DAY - timedelta(days=1))],
        first_day=DAY,
        last_day=second,
        api_totals={},
        run_id="r2",
        replace=False,
    )
    assert moved.per_day == {
        DAY: {**zeros, "fetched": 2, "new": 1, "stored": 2, "status_changes": 1},
        second: {**zeros, "fetched": 1, "new": 1, "stored": 1},
    }


def test_turned_away_counts_orders_still_in_quarantine(store: Warehouse) -> None:
    today = datetime.now(UTC).date()
    bad = row("2")
    bad.attributes["kaspiDelivery"] = {"waybillNumber": 2**70}
    for _ in range(2):  # a reload quarantines the order once
        store_orders(store, [row("1"), bad, row("3")], first_day=DAY, last_day=DAY, api_totals={}, run_id="r")
    assert turned_away(store, today) == (1, 3)
    assert turned_away(store, today + timedelta(days=1)) == (0, 0)
    store_orders(store, [row("2")], first_day=DAY, last_day=DAY, api_totals={}, run_id="r", replace=False)
    assert turned_away(store, today) == (0, 3)  # stored now: out of quarantine
