"""Both directions at once, and the paths where rows get lost or doubled: an append whose answer was
lost, Google's 429, a lost warehouse, a broken header, a deleted row, a conflict where amoCRM moved
the lead after the sheet showed it."""

from __future__ import annotations

from pathlib import Path

import httpx

from integration_sync.defs.amocrm_sheets import layout
from integration_sync_tests.amocrm_sheets.flow import (
    AMO_TO_SHEET,
    EVERYTHING,
    SHEET_TO_AMO,
    cells,
    edit,
    flow_env,
    lead,
    move,
    row_of,
    run,
    sent_status,
    synced_sheet,
)
from integration_sync_tests.dagster_support import asset_metadata

STATUS = layout.col(layout.STATUS)


def _ids(rows: list[list[str]]) -> list[str]:
    return [r[0] for r in rows[1:] if r and r[0]]


def test_an_append_whose_answer_was_lost_is_found_not_doubled(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow_env(sandbox_env, data_dir)
    drop = {"count": 1, "methods": ["post"]}
    control.post("/_sandbox/faults", json={"sheets": {"commit_then_drop": drop}}).raise_for_status()
    result = run(env, AMO_TO_SHEET)
    state = control.post("/_sandbox/faults", json={}).json()["sheets"]  # {} reads the state only
    assert state["commit_then_drop"]["fired"] == 1  # the append was applied, its answer lost
    ids = _ids(cells(control))
    assert ids and len(ids) == len(set(ids))
    meta = asset_metadata(result, "google_sheets__lead_rows")
    assert meta["settled"] + meta["created"] == len(ids) and meta["rejected"] == 0


def test_google_429_is_waited_out_within_bounds(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow_env(sandbox_env, data_dir)
    burst = {"count": 2, "status": 429}
    control.post("/_sandbox/faults", json={"sheets": {"error_burst": burst}}).raise_for_status()
    run(env, AMO_TO_SHEET)
    ids = _ids(cells(control))
    assert ids and len(ids) == len(set(ids))


def test_a_lost_warehouse_doubles_no_row_and_moves_no_lead(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env, rows, lead_id = synced_sheet(sandbox_env, data_dir, control)
    # amoCRM moves the lead to «Заказ отправлен»; its row shows «У курера» (our echo)
    sent = sent_status(control, lead_id)
    move(control, lead_id, sent)
    run(env, AMO_TO_SHEET)
    rows = cells(control)
    assert rows[row_of(rows, lead_id) - 1][STATUS] == layout.AT_COURIER
    for path in data_dir.glob("warehouse.duckdb*"):
        path.unlink()
    run(env, EVERYTHING)  # a new warehouse: every row is found by its lead id, every cell read as it is
    after = cells(control)
    assert _ids(after) == _ids(rows)
    assert lead(control, lead_id)["status_id"] == sent  # «У курера» was never taken for an operator's won


def test_a_broken_header_stops_writes_and_moves_nothing(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env, rows, lead_id = synced_sheet(sandbox_env, data_dir, control)
    before = lead(control, lead_id)["status_id"]
    edit(control, cell="B1", value="Имя клиента")  # a renamed header
    edit(control, cell=f"{layout.STATUS_LETTER}{row_of(rows, lead_id)}", value=layout.REFUSED)
    rows = cells(control)
    result = run(env, SHEET_TO_AMO)
    meta = asset_metadata(result, "google_sheets__sheet_rows")
    assert meta["broken_tabs"] == 1 and "Имя клиента" in meta["layout_issue_sample"]
    assert lead(control, lead_id)["status_id"] == before
    assert cells(control) == rows  # nothing written into the broken tab


def test_a_deleted_row_comes_back_once(sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client) -> None:
    env = flow_env(sandbox_env, data_dir)
    run(env, AMO_TO_SHEET)
    rows = cells(control)
    lead_id = int(rows[2][0])
    edit(control, op="delete_row", row=3)
    sent = sent_status(control, lead_id)
    move(control, lead_id, sent)
    run(env, AMO_TO_SHEET)
    run(env, AMO_TO_SHEET)
    after = _ids(cells(control))
    assert after.count(str(lead_id)) == 1 and sorted(after) == sorted(_ids(rows))


def test_amocrm_moved_after_the_sheet_showed_it_wins_the_conflict(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env, rows, lead_id = synced_sheet(sandbox_env, data_dir, control)
    number = row_of(rows, lead_id)
    # both sides change the status before the next sync: an operator picks «Отказ», a manager wins the deal
    edit(control, cell=f"{layout.STATUS_LETTER}{number}", value=layout.REFUSED)
    move(control, lead_id, 142)
    result = run(env, SHEET_TO_AMO)
    assert lead(control, lead_id)["status_id"] == 142  # the sheet's older state did not undo amoCRM's change
    assert asset_metadata(result, "amocrm__seller_lead_edits").get("conflicts_amocrm_won") == 1
    run(env, AMO_TO_SHEET)
    rows = cells(control)
    assert rows[row_of(rows, lead_id) - 1][STATUS] == layout.SUCCESS


def test_rows_stay_in_their_archive_across_a_rotation(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    from datetime import datetime

    from integration_sync.defs.amocrm_sheets.resources import SheetAccess
    from integration_sync.defs.amocrm_sheets.rotation import rotate
    from integration_sync.defs.amocrm_sheets.settings import SheetsSettings
    from integration_sync.defs.amocrm_sheets.sheet_setup import ensure_layout

    env = flow_env(sandbox_env, data_dir)
    settings = SheetsSettings.from_env(env)
    book = SheetAccess.from_env(env, state_dir=str(data_dir / "state")).spreadsheet()
    zone = settings.zone
    ensure_layout(book, settings, now=datetime(2026, 10, 20, 12, tzinfo=zone))  # the active tab started in October
    run(env, AMO_TO_SHEET)
    archived = cells(control)
    result = rotate(book, settings, datetime(2026, 11, 1, 0, 0, tzinfo=zone))  # the boundary, in Tashkent
    assert result.archived == "2026-10"
    assert cells(control, "2026-10") == archived and cells(control)[1:] == []
    lead_id = int(archived[1][0])
    sent = sent_status(control, lead_id)
    move(control, lead_id, sent)
    run(env, AMO_TO_SHEET)
    old = cells(control, "2026-10")
    assert old[row_of(old, lead_id) - 1][STATUS] == layout.AT_COURIER  # updated where it is
    assert _ids(cells(control)) == []  # nothing appended to the new tab for a lead that has a row
    assert _ids(old) == _ids(archived)
