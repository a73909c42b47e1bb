"""Push modes, the dry-run diff and the scoped state read, against the engine's in-memory target."""

from pathlib import Path

import dagster as dg
import pytest

from integration_sync.defs.metadata import PushConfig, sync_metadata
from integration_sync.sync.changes import FieldDiff, field_diff, flatten
from integration_sync.sync.engine import Desired, SyncEngine
from integration_sync.sync.ledger import Ledger
from integration_sync.sync.state import ENGINE_MIGRATIONS, write_lookup
from integration_sync.sync.warehouse import Warehouse
from integration_sync_tests.sync.test_engine import MemoryTarget, desired, engine, statuses


@pytest.fixture()
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "w.duckdb", ENGINE_MIGRATIONS)


def log_rows(warehouse: Warehouse, operation: str) -> list[tuple[str, str, str]]:
    with warehouse.connect() as conn:
        rows = conn.execute(
            "SELECT source_key, status, message FROM sync_log WHERE operation = ? ORDER BY source_key", [operation]
        ).fetchall()
    return [(str(k), str(s), str(m)) for k, s, m in rows]


def test_create_only_never_updates_a_synced_record(warehouse: Warehouse) -> None:
    target = MemoryTarget()
    engine(warehouse).run(desired(2), target)
    report = engine(warehouse, "r2", mode="create_only").run(desired(3, **{"1": {"name": "renamed"}}), target)
    assert (report.created, report.updated, report.skipped, report.mode) == (1, 0, 1, "create_only")
    assert target.records["2"]["name"] == "user 1"
    assert log_rows(warehouse, "skip") == [("1", "skipped", "already synced; create_only never updates")]
    # the default mode picks the change up later
    assert engine(warehouse, "r3").run(desired(3, **{"1": {"name": "renamed"}}), target).updated == 1


def test_create_only_links_a_record_the_target_already_has_without_writing_it(warehouse: Warehouse) -> None:
    target = MemoryTarget()
    target.records["99"] = {"key": "1", "name": "made by hand"}
    report = engine(warehouse, mode="create_only").run(desired(2), target)
    assert (report.created, report.updated, report.skipped) == (1, 0, 1)
    assert target.records["99"]["name"] == "made by hand"
    assert statuses(warehouse) == {"0": "synced", "1": "synced"}
    assert engine(warehouse).last_written(["1"]) == {}  # linked, not written: nothing of ours to echo
    again = engine(warehouse, "r2", mode="create_only").run(desired(2), target)
    assert (again.unchanged, target.requests) == (2, 2)


def test_update_only_never_creates_and_logs_the_skipped_records(warehouse: Warehouse) -> None:
    target = MemoryTarget()
    engine(warehouse).run(desired(2), target)
    report = engine(warehouse, "r2", mode="update_only").run(desired(4, **{"1": {"name": "renamed"}}), target)
    assert (report.updated, report.created, report.skipped) == (1, 0, 2)
    assert target.by_key("2") == [] and target.records["2"]["name"] == "renamed"
    assert [row[:2] for row in log_rows(warehouse, "skip")] == [("2", "skipped"), ("3", "skipped")]
    assert "2" not in statuses(warehouse)  # no state kept: a later upsert creates it
    assert engine(warehouse, "r3").run(desired(4, **{"1": {"name": "renamed"}}), target).created == 2


def test_mode_is_checked_and_reported() -> None:
    with pytest.raises(ValueError, match="mode"):
        SyncEngine(Warehouse.__new__(Warehouse), flow="f", entity="e", run_id="r", mode="merge")


_MODES_SEEN: list[str] = []


@dg.asset
def _push(config: PushConfig) -> None:  # at module level: Dagster resolves the config annotation here
    _MODES_SEEN.append(
        SyncEngine(Warehouse.__new__(Warehouse), flow="f", entity="e", run_id="r", mode=config.mode).mode
    )


def test_mode_comes_from_run_config() -> None:
    _MODES_SEEN.clear()
    assert dg.materialize([_push], run_config={"ops": {"_push": {"config": {"mode": "create_only"}}}}).success
    assert dg.materialize([_push]).success
    assert _MODES_SEEN == ["create_only", "upsert"] and all(type(m) is str for m in _MODES_SEEN)


def test_dry_run_reports_the_plan_field_by_field(warehouse: Warehouse) -> None:
    target = MemoryTarget()
    first = [Desired(key="1", payload={"name": "Ann", "contact": {"phone": "+77010000001", "email": None}})]
    engine(warehouse).run(first, target)
    changed = [
        Desired(key="1", payload={"name": "Ann", "contact": {"phone": "+77010000002", "email": "a@x.kz"}}),
        Desired(key="2", payload={"name": "Bob"}),
    ]
    before = target.requests
    report = engine(warehouse, "r2", dry_run=True).run(changed, target)
    assert report.planned == 2 and target.requests == before
    by_key = {p.key: p for p in report.plan}
    assert by_key["1"].operation == "update"
    assert by_key["1"].fields == (
        FieldDiff("contact.email", None, "a@x.kz"),
        FieldDiff("contact.phone", "+77010000001", "+77010000002"),
    )
    assert (by_key["2"].operation, by_key["2"].fields) == ("create", (FieldDiff("name", None, "Bob"),))
    table = sync_metadata(report)["plan_diff"].value
    assert "| 1 | update | contact.phone | +77010000001 | +77010000002 |" in table
    assert "| 2 | create | name |  | Bob |" in table
    assert sync_metadata(report)["mode"] == "upsert"


def test_dry_run_plan_is_capped_at_50(warehouse: Warehouse) -> None:
    report = engine(warehouse, dry_run=True).run(desired(60), MemoryTarget())
    assert (report.planned, len(report.plan)) == (60, 50)


def test_flatten_and_diff_use_dotted_paths() -> None:
    assert flatten({"a": {"b": {"c": 1}, "d": []}, "e": {}}) == {"a.b.c": 1, "a.d": [], "e": {}}
    assert field_diff({"a": 1, "b": None}, {"a": 1}) == (FieldDiff("b", None, None),)


def test_state_read_is_scoped_to_the_desired_keys(warehouse: Warehouse) -> None:
    target = MemoryTarget(reject_keys={"3"})
    engine(warehouse).run(desired(5), target)
    write_lookup(warehouse, "test", "contact_by_phone", {"+77010000001": "555"})
    states, ids = Ledger(warehouse, "test", "user", "r2").load(["1", "3"])
    assert set(states) == {"1", "3"} and states["3"].status == "rejected"
    assert ids == {"1": {"record": "2"}}  # neither other records' ids nor the flow's lookup indexes
