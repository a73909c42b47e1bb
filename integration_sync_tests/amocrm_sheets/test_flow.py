"""The amocrm_sheets flow end to end, through Dagster, against the seller's amoCRM and the Sheets
emulator over real HTTP: rows from amoCRM, edits from the sheet, echoes, conflicts, re-runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from integration_sync.connectors.amocrm_models import WON_STATUS_ID
from integration_sync.defs.amocrm_sheets import layout
from integration_sync.sandbox.amocrm_seller import SELLER_FIELD_ORDER_NO, TRIGGER_VARIANTS
from integration_sync_tests.amocrm_sheets.flow import (
    AMO_TO_SHEET,
    SHEET_TO_AMO,
    cells,
    edit,
    flow_env,
    lead,
    requests_of,
    row_of,
    run,
    synced_sheet,
)
from integration_sync_tests.dagster_support import asset_metadata

STATUS_COL = layout.STATUS_LETTER
ORDER_COL = layout.letter(layout.ORDER_NO)


def _order_no(data: dict[str, Any]) -> str | None:
    for field in data.get("custom_fields_values") or []:
        if field["field_id"] == SELLER_FIELD_ORDER_NO:
            return str(field["values"][0]["value"])
    return None


def test_leads_at_a_trigger_status_get_rows_and_a_rerun_writes_nothing(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow_env(sandbox_env, data_dir)
    result = run(env, AMO_TO_SHEET)
    rows = cells(control)
    assert rows[0] == list(layout.COLUMNS)
    data = rows[1:]
    assert data, "no lead got a row"
    ids = [r[0] for r in data]
    assert len(ids) == len(set(ids)), "a lead has two rows"
    assert {r[layout.col(layout.STATUS)] for r in data} == {layout.IN_PROGRESS}  # every row is at a trigger status
    # Staff: a code typed with or without leading zeros finds its employee
    for r in data:
        code = r[layout.col(layout.EMPLOYEE_CODE)]
        if code.lstrip("0") == "134":
            assert r[layout.col(layout.RESPONSIBLE)] == "BAHODIR HUSANOV"
    meta = asset_metadata(result, "google_sheets__lead_rows")
    assert meta["created"] == len(data) and meta["rows_appended"] == len(data)
    before = requests_of(control, "sheets")
    again = run(env, AMO_TO_SHEET)
    after = requests_of(control, "sheets")
    meta = asset_metadata(again, "google_sheets__lead_rows")
    assert meta["created"] == 0 and meta["updated"] == 0
    writes = {k: v for k, v in after.items() if k not in ("get", "total") and v != before.get(k, 0)}
    assert writes == {}, f"an unchanged lead cost a write: {writes}"
    assert len(cells(control)) == len(rows)


def test_an_operator_fills_the_order_number_and_our_echo_never_means_won(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env, rows, lead_id = synced_sheet(sandbox_env, data_dir, control)
    number = row_of(rows, lead_id)
    edit(control, cell=f"{ORDER_COL}{number}", value="Z-777")
    result = run(env, SHEET_TO_AMO)
    assert asset_metadata(result, "amocrm__seller_lead_edits")["updated"] == 1
    data = lead(control, lead_id)
    assert _order_no(data) == "Z-777"
    sent_status = data["status_id"]
    assert sent_status not in (WON_STATUS_ID,)
    # amoCRM's new stage reaches the row: «Заказ отправлен» is shown as «У курера»
    run(env, AMO_TO_SHEET)
    rows = cells(control)
    assert rows[row_of(rows, lead_id) - 1][layout.col(layout.STATUS)] == layout.AT_COURIER
    # the sheet is read again: «У курера» is our own write, it must not move the lead to won
    run(env, SHEET_TO_AMO)
    assert lead(control, lead_id)["status_id"] == sent_status
    # now an operator chooses «Успешно»: won
    edit(control, cell=f"{STATUS_COL}{row_of(rows, lead_id)}", value=layout.SUCCESS)
    run(env, SHEET_TO_AMO)
    assert lead(control, lead_id)["status_id"] == WON_STATUS_ID


def test_a_dropdown_typo_moves_nothing_and_is_recorded(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env, rows, lead_id = synced_sheet(sandbox_env, data_dir, control)
    status_before = lead(control, lead_id)["status_id"]
    edit(control, cell=f"{STATUS_COL}{row_of(rows, lead_id)}", value="Отменён")
    result = run(env, SHEET_TO_AMO)
    assert asset_metadata(result, "amocrm__seller_lead_edits")["invalid"] == 1
    assert lead(control, lead_id)["status_id"] == status_before
    assert TRIGGER_VARIANTS  # the seller's trigger spellings are in use
