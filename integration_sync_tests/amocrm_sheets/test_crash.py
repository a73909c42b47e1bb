"""A push of the amocrm_sheets flow SIGKILLed between a write's commit and its answer, then run again.

The emulator applies the chosen write and holds its answer (`commit_then_drop` with ``hold_ms``); the
test kills the run process during the hold, so the kill lands exactly after that write:
- amoCRM → sheet: the rows' `values:append` applied, the run dead before it heard so: the rerun finds
  the rows by lead id and settles them (one row per lead);
- sheet → amoCRM: the `PATCH /leads` applied (order numbers in, leads moved): the rerun sees amoCRM
  holds them and moves nothing again;
- sheet → amoCRM killed while its leads were re-read, before the PATCH: the edits are in flight but not
  applied, and the rerun must apply them (an edit's lead always exists, so finding it proves nothing).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from integration_sync.connectors.amocrm_models import WON_STATUS_ID
from integration_sync.defs.amocrm_sheets import layout
from integration_sync.sandbox.amocrm_seller import SELLER_FIELD_ORDER_NO
from integration_sync_tests.amocrm_sheets.flow import (
    AMO_TO_SHEET,
    SHEET_TO_AMO,
    cells,
    edit,
    flow_env,
    requests_of,
    row_of,
    run,
)
from integration_sync_tests.crash_support import kill_at_held_write
from integration_sync_tests.dagster_support import asset_metadata, environment

CHILD = """
import json, sys
from integration_sync_tests.amocrm_sheets import flow
flow.run(json.loads(sys.argv[1]), getattr(flow, sys.argv[2]))
"""
ORDER_COL = layout.letter(layout.ORDER_NO)
HOLD_MS = 4_000  # long enough to kill the run in; the sandbox waits it out at teardown


def _states(env: dict[str, str], entity: str) -> Counter[str]:
    from integration_sync.defs.resources import warehouse_resource

    with environment(env), warehouse_resource().warehouse().connect() as conn:
        rows = conn.execute(
            "SELECT status FROM sync_state WHERE flow = 'amocrm_sheets' AND entity = ?", [entity]
        ).fetchall()
    return Counter(str(r[0]) for r in rows)


def _ids(rows: list[list[str]]) -> list[str]:
    return [r[0] for r in rows[1:] if r and r[0]]


def test_rows_push_killed_after_its_append_then_rerun(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow_env(sandbox_env, data_dir)
    kill_at_held_write(
        control, "sheets", {"count": 1, "methods": ["post"], "hold_ms": HOLD_MS}, CHILD, json.dumps(env), "AMO_TO_SHEET"
    )
    held = _ids(cells(control))
    assert held and len(held) == len(set(held)), "the held append was applied"
    assert _states(env, "sheet_row") == Counter({"in_flight": len(held)})

    result = run(env, AMO_TO_SHEET)
    rows = cells(control)
    assert rows[0] == list(layout.COLUMNS)
    assert sorted(_ids(rows)) == sorted(held), "one row per lead: none appended twice, none lost"
    meta = asset_metadata(result, "google_sheets__lead_rows")
    assert meta["settled"] == len(held) and meta["created"] == 0 and meta["rejected"] == 0
    assert _states(env, "sheet_row") == Counter({"synced": len(held)})
    before = requests_of(control, "sheets")
    run(env, AMO_TO_SHEET)  # settled rows are remembered as written: nothing left to write
    after = requests_of(control, "sheets")
    assert {k: v for k, v in after.items() if k not in ("get", "total") and v != before.get(k, 0)} == {}


def _order_no(data: dict[str, Any]) -> str | None:
    for field in data.get("custom_fields_values") or []:
        if field["field_id"] == SELLER_FIELD_ORDER_NO:
            return str(field["values"][0]["value"])
    return None


def _leads(control: httpx.Client) -> dict[int, dict[str, Any]]:
    """Every lead as stored (the control dump: no rate limit, not counted)."""
    dump: Any = control.get("/_sandbox/amocrm-seller/leads").json()
    return {int(x["id"]): x for x in dump}


def _operators_edit(control: httpx.Client, env: dict[str, str]) -> tuple[list[int], int]:
    """Rows written, then three «Заказ №» filled and one «Успешно» chosen by an operator."""
    run(env, AMO_TO_SHEET)
    rows = cells(control)
    ordered = [int(r[0]) for r in rows[1:4]]
    won = int(rows[4][0])
    for n, lead_id in enumerate(ordered):
        edit(control, cell=f"{ORDER_COL}{row_of(rows, lead_id)}", value=f"Z-{n}")
    edit(control, cell=f"{layout.STATUS_LETTER}{row_of(rows, won)}", value=layout.SUCCESS)
    return ordered, won


def test_edits_push_killed_after_its_patch_then_rerun(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow_env(sandbox_env, data_dir)
    ordered, won = _operators_edit(control, env)
    fault = {"count": 1, "methods": ["PATCH leads"], "hold_ms": HOLD_MS}
    kill_at_held_write(control, "amocrm-seller", fault, CHILD, json.dumps(env), "SHEET_TO_AMO")
    leads = _leads(control)
    moved = {lead_id: leads[lead_id]["status_id"] for lead_id in ordered}
    assert [_order_no(leads[lead_id]) for lead_id in ordered] == ["Z-0", "Z-1", "Z-2"], "the PATCH was applied"
    assert leads[won]["status_id"] == WON_STATUS_ID
    assert _states(env, "lead_edit") == Counter({"in_flight": len(ordered) + 1})

    patches = requests_of(control, "amocrm-seller").get("PATCH leads", 0)
    result = run(env, SHEET_TO_AMO)
    meta = asset_metadata(result, "amocrm__seller_lead_edits")
    assert meta["rejected"] == 0 and meta.get("conflicts_amocrm_won", 0) == 0  # its own move is no conflict
    assert requests_of(control, "amocrm-seller").get("PATCH leads", 0) == patches, "a lead was moved twice"
    assert _states(env, "lead_edit") == Counter({"synced": len(ordered) + 1})
    leads = _leads(control)
    assert {lead_id: leads[lead_id]["status_id"] for lead_id in ordered} == moved
    assert [_order_no(leads[lead_id]) for lead_id in ordered] == ["Z-0", "Z-1", "Z-2"]
    assert leads[won]["status_id"] == WON_STATUS_ID
    run(env, AMO_TO_SHEET)  # amoCRM's new stages reach the rows
    after = cells(control)
    statuses = {int(r[0]): r[layout.col(layout.STATUS)] for r in after[1:]}
    assert {statuses[lead_id] for lead_id in ordered} == {layout.AT_COURIER}  # «Заказ отправлен» shown
    assert statuses[won] == layout.SUCCESS


def test_edits_push_killed_before_its_patch_then_rerun(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow_env(sandbox_env, data_dir)
    ordered, won = _operators_edit(control, env)
    before = _leads(control)
    # the edits are marked in flight, then the push re-reads its leads: killed there, no PATCH sent
    fault = {"count": 1, "methods": ["GET leads"], "hold_ms": HOLD_MS}
    kill_at_held_write(control, "amocrm-seller", fault, CHILD, json.dumps(env), "SHEET_TO_AMO")
    assert requests_of(control, "amocrm-seller").get("PATCH leads", 0) == 0
    assert _states(env, "lead_edit") == Counter({"in_flight": len(ordered) + 1})

    result = run(env, SHEET_TO_AMO)  # in flight is not applied: each edit is checked in amoCRM and made
    meta = asset_metadata(result, "amocrm__seller_lead_edits")
    assert meta["rejected"] == 0 and meta["settled"] == 0
    leads = _leads(control)
    assert [_order_no(leads[lead_id]) for lead_id in ordered] == ["Z-0", "Z-1", "Z-2"], "an edit was lost"
    assert all(leads[lead_id]["status_id"] != before[lead_id]["status_id"] for lead_id in ordered)
    assert leads[won]["status_id"] == WON_STATUS_ID
