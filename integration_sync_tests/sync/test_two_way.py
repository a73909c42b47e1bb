"""Two-way rules: echoes of our own writes cost nothing; conflicts are settled by ownership, then recency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from integration_sync.sync.engine import Desired
from integration_sync.sync.state import ENGINE_MIGRATIONS
from integration_sync.sync.two_way import Resolution, resolve_field, strip_echoes
from integration_sync.sync.warehouse import Warehouse
from integration_sync_tests.sync.test_engine import MemoryTarget, engine


@pytest.fixture()
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "w.duckdb", ENGINE_MIGRATIONS)


T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
OWNERS = {"order_no": "sheet", "status": "sheet", "contact": "crm"}
SIDES = ("crm", "sheet")

# field, base, crm, sheet, crm_at, sheet_at -> value, winner, conflict, reason
CASES: list[tuple[str, Any, Any, Any, datetime | None, datetime | None, Any, str | None, bool, str]] = [
    ("amount", 10, 10, 10, T0, T1, 10, None, False, "unchanged"),
    ("amount", 10, 12, 12, T0, T1, 12, None, False, "agreed"),
    ("amount", 10, 10, 15, T1, T0, 15, "sheet", False, "one_side"),
    ("amount", 10, 12, 10, T0, T1, 12, "crm", False, "one_side"),
    ("status", "new", "won", "paid", T1, T0, "paid", "sheet", True, "owner"),  # the owner wins, however old
    ("contact", "A", "B", "C", T0, T1, "B", "crm", True, "owner"),
    ("amount", 10, 12, 15, T0, T1, 15, "sheet", True, "newer"),
    ("amount", 10, 12, 15, T1, T0, 12, "crm", True, "newer"),
    ("amount", 10, 12, 15, T0, None, 12, "crm", True, "newer"),  # a side with no time loses to one with
    ("amount", 10, 12, 15, None, T0, 15, "sheet", True, "newer"),
    ("amount", 10, 12, 15, T0, T0, 12, "crm", True, "newer"),  # a tie goes to "ours"
    ("amount", 10, 12, 15, None, None, 12, "crm", True, "newer"),
    ("amount", None, None, 15, T0, T1, 15, "sheet", False, "one_side"),  # a field new on one side
]


@pytest.mark.parametrize(
    ("field", "base", "crm", "sheet", "crm_at", "sheet_at", "value", "winner", "conflict", "reason"), CASES
)
def test_resolve_field(
    field: str,
    base: Any,
    crm: Any,
    sheet: Any,
    crm_at: datetime | None,
    sheet_at: datetime | None,
    value: Any,
    winner: str | None,
    conflict: bool,
    reason: str,
) -> None:
    result = resolve_field(field, base, crm, sheet, crm_at, sheet_at, OWNERS, sides=SIDES)
    assert result == Resolution(field, value, winner, conflict, reason, crm, sheet)  # type: ignore[arg-type]


def test_an_owner_that_is_not_a_side_is_refused() -> None:
    with pytest.raises(ValueError, match="not one of"):
        resolve_field("status", 1, 2, 3, T0, T1, {"status": "crm"}, sides=("ours", "theirs"))


def test_strip_echoes_keeps_only_what_we_did_not_write() -> None:
    written = {"name": "Ann", "contact": {"phone": "+77010000001"}}
    assert strip_echoes({"name": "Ann", "contact": {"phone": "+77010000001"}}, written) == {}
    assert strip_echoes({"name": "Anna", "contact": {"phone": "+77010000001"}, "note": "x"}, written) == {
        "name": "Anna",
        "note": "x",
    }


def test_values_read_back_from_our_target_are_echoes_and_cost_nothing(warehouse: Warehouse) -> None:
    sheet = MemoryTarget()  # crm → sheet push
    rows = [Desired(key=str(i), payload={"name": f"n{i}", "deal": {"status": "new"}}) for i in range(3)]
    to_sheet = engine(warehouse)
    to_sheet.run(rows, sheet)
    sheet.records["2"]["deal"] = {"status": "paid"}  # a person edits one cell of row "1"
    read_back = {rec["key"]: {k: v for k, v in rec.items() if k != "key"} for rec in sheet.records.values()}
    written = to_sheet.last_written(list(read_back))
    changes = {key: strip_echoes(row, written.get(key, {})) for key, row in read_back.items()}
    assert {k: v for k, v in changes.items() if v} == {"1": {"deal.status": "paid"}}


def test_observe_keeps_the_first_time_a_value_was_seen(warehouse: Warehouse) -> None:
    sync = engine(warehouse)
    first = sync.observe({"1": {"status": "new", "qty": 1}})
    again = engine(warehouse, "r2").observe({"1": {"status": "new", "qty": 2}})
    assert again["1"]["status"] == first["1"]["status"]
    assert again["1"]["qty"] > first["1"]["qty"]


def test_conflicts_are_logged_with_both_values_and_the_winner(warehouse: Warehouse) -> None:
    resolutions = [
        resolve_field(f, b, o, t, T0, T1, OWNERS, sides=SIDES)
        for f, b, o, t in [("status", "new", "won", "paid"), ("amount", 10, 12, 10), ("note", "", "a", "b")]
    ]
    assert engine(warehouse, dry_run=True).record_conflicts({"1": resolutions}) == 2
    assert engine(warehouse).record_conflicts({"1": resolutions}) == 2
    with warehouse.connect() as conn:
        rows = conn.execute(
            "SELECT run_id, source_key, status, message, payload->>'ours', payload->>'theirs', payload->>'winner'"
            " FROM sync_log WHERE operation = 'conflict' ORDER BY message"
        ).fetchall()
    assert rows == [
        ("r1", "1", "resolved", "note: sheet wins (newer)", "a", "b", "sheet"),
        ("r1", "1", "resolved", "status: sheet wins (owner)", "won", "paid", "sheet"),
    ]


def test_two_way_round_settles_conflicts_and_leaves_no_echo(warehouse: Warehouse) -> None:
    sheet = MemoryTarget()  # the crm → sheet push; the sheet is read back as a source
    to_sheet = engine(warehouse)
    to_sheet.run([Desired(key="1", payload={"status": "new", "amount": 10, "contact": "A"})], sheet)
    (row_id,) = sheet.by_key("1")
    sheet.records[row_id].update(status="paid", amount=15)  # edited in the sheet (cells carry no times)
    crm = {"status": "won", "amount": 12, "contact": "B"}  # changed in the CRM meanwhile
    base = to_sheet.last_written(["1"])["1"]
    row = {k: v for k, v in sheet.records[row_id].items() if k != "key"}
    theirs = strip_echoes(row, base)
    assert theirs == {"status": "paid", "amount": 15}
    seen = to_sheet.observe({"1": theirs})["1"]
    crm_at = seen["amount"] - timedelta(minutes=1)  # the CRM's own change time: before we saw the sheet's
    resolved = [
        resolve_field(f, base.get(f), crm[f], row.get(f), crm_at, seen.get(f), OWNERS, sides=SIDES) for f in crm
    ]
    assert engine(warehouse, "r2").record_conflicts({"1": resolved}) == 2
    report = engine(warehouse, "r3").run([Desired(key="1", payload={r.field: r.value for r in resolved})], sheet)
    assert report.updated == 1
    assert sheet.records[row_id] == {"key": "1", "status": "paid", "amount": 15, "contact": "B"}
    row = {k: v for k, v in sheet.records[row_id].items() if k != "key"}
    assert strip_echoes(row, to_sheet.last_written(["1"])["1"]) == {}  # our write read back: an echo
    with warehouse.connect() as conn:
        logged = conn.execute("SELECT message FROM sync_log WHERE operation = 'conflict' ORDER BY message").fetchall()
    assert logged == [("amount: sheet wins (newer)",), ("status: sheet wins (owner)",)]
