"""Payment tables: a load's counts per partition day, and the share of inbox events turned away."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from integration_sync.defs.payments_amocrm.tables import ingest_events, turned_away
from integration_sync.defs.resources import WarehouseResource
from integration_sync.sync.warehouse import Warehouse
from integration_sync.webhooks.inbox import Event

DAY = date(2025, 1, 20)
SECOND = DAY + timedelta(days=1)
IDLE = DAY + timedelta(days=2)
ZEROS = {"fetched": 0, "new": 0, "skipped_by_receiver": 0, "unreadable": 0}


def event(n: int, payment_id: str, day: date, status: str = "accepted", payload: str | None = None) -> Event:
    item = {"cost": 100, "number_lessons": 1, "course": {"name": "Курс", "subject": {"name": "Русский"}}}
    order = {
        "status": "CONFIRMED" if status == "accepted" else "PENDING",
        "created_at": f"{day} 12:00:00",
        "updated_at": f"{day} 12:00:00",
        "payment_id": payment_id,
        "invoice_id": f"inv-{payment_id}",
        "currency": "RUB",
        "course_order_items": [item],
        "user": {"first_name": "Иван", "phone": "89991234567", "telegram_id": "1"},
    }
    return Event(
        id=n,
        source="platform_payment",
        event_key=f"payment:{payment_id}" + (":skipped:PENDING" if status == "skipped" else ""),
        received_at=f"{day}T12:00:01+00:00",
        event_date=day.isoformat(),
        status=status,
        reason="status PENDING" if status == "skipped" else None,
        payload=payload if payload is not None else json.dumps({"course_order": order}),
    )


def two_days() -> list[Event]:
    """10 events on the first day (one skipped by the receiver, one unreadable), 7 on the second."""
    first = [event(n, f"a{n}", DAY) for n in range(8)]
    first += [event(8, "a8", DAY, "skipped"), event(9, "bad", DAY, payload="{not json")]
    return first + [event(10 + n, f"b{n}", SECOND) for n in range(7)]


@pytest.fixture()
def store(tmp_path: Path) -> Warehouse:
    return WarehouseResource(database=str(tmp_path / "w.duckdb")).warehouse()


def test_each_day_of_a_range_gets_its_own_counts(store: Warehouse) -> None:
    """Issue 10: a two-day load reported the range's total on each day (fetched=17 on both)."""
    events = two_days()
    partition_of = {e.id: date.fromisoformat(e.event_date) for e in events}
    report = ingest_events(store, events, partition_of, "r1", days=(DAY, IDLE))
    assert (report.fetched, report.new, report.skipped, report.unreadable) == (17, 16, 1, 1)
    assert report.per_day == {
        DAY: {"fetched": 10, "new": 9, "skipped_by_receiver": 1, "unreadable": 1},
        SECOND: {**ZEROS, "fetched": 7, "new": 7},
        IDLE: ZEROS,
    }
    # a reload adds nothing; the unreadable event is read (and counted) again but quarantined once
    again = ingest_events(store, events, partition_of, "r2", days=(DAY, IDLE))
    assert again.per_day == {
        DAY: {**ZEROS, "fetched": 10, "unreadable": 1},
        SECOND: {**ZEROS, "fetched": 7},
        IDLE: ZEROS,
    }
    with store.connect() as conn:
        assert conn.execute("SELECT record_key, partition_key FROM ingest_rejects").fetchall() == [
            ("payment:bad", DAY.isoformat())
        ]
    # without the run's days, the days of its events
    assert ingest_events(store, events[-1:], partition_of, "r3").per_day == {SECOND: {**ZEROS, "fetched": 1}}


def test_turned_away_counts_each_event_once(store: Warehouse) -> None:
    today = datetime.now(UTC).date()
    events = two_days()
    partition_of = {e.id: date.fromisoformat(e.event_date) for e in events}
    for run in ("r1", "r2"):
        ingest_events(store, events, partition_of, run, days=(DAY, SECOND))
    assert turned_away(store, today) == (1, 17)
    assert turned_away(store, today + timedelta(days=1)) == (0, 0)
