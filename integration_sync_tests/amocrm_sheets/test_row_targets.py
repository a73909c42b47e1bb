"""A lead's sheet row as the rows push records it: its own target (tab and lead id), so the generic
`one_target_per_record` check passes on a fresh sync, and rows recorded by their tab alone are migrated."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import httpx

from integration_sync.defs.amocrm_sheets.definitions import FLOW as SYNC_FLOW
from integration_sync.defs.amocrm_sheets.definitions import lead_rows
from integration_sync.defs.amocrm_sheets.sheet_destination import ROW
from integration_sync.defs.amocrm_sheets.tables import SHEETS_MIGRATIONS
from integration_sync.defs.migrations import MIGRATIONS
from integration_sync.sync.warehouse import Warehouse
from integration_sync_tests.amocrm_sheets.flow import AMO_TO_SHEET, cells, flow_env, move, run, sent_status
from integration_sync_tests.dagster_support import asset_metadata

FLOW = "amocrm_sheets"


def test_every_lead_row_is_its_own_target_so_one_target_per_record_passes(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow_env(sandbox_env, data_dir)
    checks = [
        c
        for c in SYNC_FLOW.generic_checks
        if any(k.asset_key == lead_rows.key and k.name == "one_target_per_record" for k in c.check_keys)
    ]
    first = run(env, [*AMO_TO_SHEET, *checks])  # every row appended
    leads = [r[0] for r in cells(control)[1:]]
    assert len(leads) >= 2, "the seed must give the tab two rows at least"
    _assert_own_targets(first, env["WAREHOUSE_PATH"], leads)
    for lead_id in leads[:2]:  # amoCRM moves two leads: their rows are updated in place
        move(control, int(lead_id), sent_status(control, int(lead_id)))
    second = run(env, [*AMO_TO_SHEET, *checks])
    assert asset_metadata(second, "google_sheets__lead_rows")["updated"] == 2
    _assert_own_targets(second, env["WAREHOUSE_PATH"], leads)


def _assert_own_targets(result: dg.ExecuteInProcessResult, warehouse: str, leads: list[str]) -> None:
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "one_target_per_record"
    assert check.passed, check.metadata["sample"].value
    with duckdb.connect(warehouse, read_only=True) as conn:
        mapped = dict(
            conn.execute(
                "SELECT source_key, target_id FROM id_map WHERE flow = ? AND entity = ?", [FLOW, ROW]
            ).fetchall()
        )
    assert sorted(mapped) == sorted(leads)
    assert all(target.split(":")[1:] == [key] for key, target in mapped.items()), mapped
    assert len({target.split(":")[0] for target in mapped.values()}) == 1  # one tab: Sheet1


def test_rows_recorded_by_their_tab_alone_get_the_lead_in_their_target_id(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    new = {m.id for m in SHEETS_MIGRATIONS[1:]}
    Warehouse(path, [m for m in MIGRATIONS if m.id not in new]).migrate()
    legacy = [
        (FLOW, ROW, "30000004", "0"),
        (FLOW, ROW, "30000008", "0"),
        (FLOW, ROW, "30000015", "1234:30000015"),
        (FLOW, "lead_edit", "30000004", "30000004"),
        ("kaspi_amocrm", ROW, "7", "0"),
    ]
    with duckdb.connect(str(path)) as conn:
        conn.executemany("INSERT INTO id_map VALUES (?, ?, ?, ?, now())", legacy)
    Warehouse(path, MIGRATIONS).migrate()
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute("SELECT flow, entity, source_key, target_id FROM id_map ORDER BY ALL").fetchall()
    assert rows == sorted(
        [
            (FLOW, ROW, "30000004", "0:30000004"),
            (FLOW, ROW, "30000008", "0:30000008"),
            (FLOW, ROW, "30000015", "1234:30000015"),
            (FLOW, "lead_edit", "30000004", "30000004"),
            ("kaspi_amocrm", ROW, "7", "0"),
        ]
    )
