"""The flow's two pushes, declared on the shared skeleton, and the two-way rule that joins them.

- `ROWS_PUSH` (amoCRM → sheet, `google_sheets/lead_rows`): every tracked lead's row; the columns
  amoCRM owns are overwritten, the status cell only when amoCRM's value wins, «Заказ №» only when the
  row is appended.
- `EDITS_PUSH` (sheet → amoCRM, `amocrm/seller_lead_edits`): operators' edits — a filled «Заказ №», a
  dropdown choice — and never our own writes read back (echoes: a cell equal to what `ROWS_PUSH` last
  wrote there).

Per field: A..I belong to amoCRM; «Заказ №» to the sheet; the status is two-way. When both sides
changed the status since the last write, amoCRM wins (the declared owner) and the conflict is logged
with both values; when only the sheet changed, the edit is held in the sheet until `EDITS_PUSH`
applies it; when only amoCRM changed, the row follows.
"""

from __future__ import annotations

from typing import Any

from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.account_cache import cached_account_map
from integration_sync.defs.amocrm_sheets.amo_destination import LEAD, AmoLeadDestination
from integration_sync.defs.amocrm_sheets.assets import CRM, LEADS_KEY, ROWS_KEY
from integration_sync.defs.amocrm_sheets.mapping import amo_cells, display_status, operator_edit, staff_directory
from integration_sync.defs.amocrm_sheets.preflight import edits_preflight, rows_preflight
from integration_sync.defs.amocrm_sheets.resources import GoogleSheetResource
from integration_sync.defs.amocrm_sheets.settings import FLOW
from integration_sync.defs.amocrm_sheets.sheet_destination import ROW, SheetDestination
from integration_sync.defs.amocrm_sheets.sheet_source import SheetRow, read_all
from integration_sync.defs.amocrm_sheets.tables import stored_rows, tracked_leads
from integration_sync.lib.push import OpenedDestination, Push, PushContext
from integration_sync.sync.engine import Desired
from integration_sync.sync.ledger import Ledger
from integration_sync.sync.two_way import Resolution, resolve_field

ROWS_ENTITY = "sheet_row"
EDITS_ENTITY = "lead_edit"
STATUS_OWNER = {"status": "amocrm"}  # the declared rule when both sides changed the status


def _first_rows(rows: list[SheetRow]) -> dict[int, SheetRow]:
    first: dict[int, SheetRow] = {}
    for row in rows:
        if row.lead_id is not None:
            first.setdefault(row.lead_id, row)
    return first


def settle_status(
    display: str, cell: str | None, written: str | None, applied: str | None
) -> tuple[str, bool, Resolution | None]:
    """The status a row should hold: (value, write it?, the conflict if there was one).

    `written` is what we last wrote to the cell, `applied` the sheet value `EDITS_PUSH` last applied
    to amoCRM (the lead moved because of it: amoCRM's new state follows from the sheet, no conflict)."""
    if cell is None:
        return display, True, None
    base = cell if applied and cell == applied else written
    if base is None or cell not in layout.STATUS_CHOICES:
        return display, True, None  # never written by us, or not a dropdown value: amoCRM's state
    result = resolve_field("status", base, display, cell, None, None, STATUS_OWNER, sides=("amocrm", "sheet"))
    if result.winner == "sheet":
        return base, False, None  # the operator's edit waits for EDITS_PUSH; our record stays `base`
    return display, True, result if result.conflict else None


def _rows_desired(ctx: PushContext) -> list[Desired]:
    sheet: GoogleSheetResource = ctx.resources.google_sheet
    settings, access = sheet.settings(), sheet.access()
    snapshot = read_all(access.client(), access.sheet_id, settings)
    ctx.scratch["snapshot"] = snapshot
    staff = staff_directory(snapshot.staff_rows)
    leads = tracked_leads(ctx.store)
    keys = [str(lead["lead_id"]) for lead in leads]
    written = Ledger(ctx.store, FLOW, ROWS_ENTITY, ctx.run_id).last_written(keys)
    applied = Ledger(ctx.store, FLOW, EDITS_ENTITY, ctx.run_id).last_written(keys)
    rows = _first_rows([r for r in snapshot.rows if r.tab_id not in snapshot.broken_tabs])
    conflicts: dict[str, list[Resolution]] = {}
    desired: list[Desired] = []
    for lead in leads:
        key = str(lead["lead_id"])
        row = rows.get(int(lead["lead_id"]))
        before = written.get(key, {})
        display = display_status(lead["status_name"] or "", lead["stage"])
        status, write, conflict = settle_status(
            display,
            row.cell(layout.STATUS).strip() if row else None,
            before.get("status"),
            applied.get(key, {}).get("choice"),
        )
        if conflict is not None:
            conflicts[key] = [conflict]
        order = str(before.get("order_no", lead["order_no"] or "")) if row else str(lead["order_no"] or "")
        payload: dict[str, Any] = {
            "amo": amo_cells(lead, staff),
            "status": status,
            "status_write": write,
            "order_no": order,
        }
        desired.append(Desired(key, payload))
    ctx.scratch["conflicts"] = conflicts
    ctx.scratch["held_edits"] = sum(1 for d in desired if not d.payload["status_write"])
    return desired


def _rows_destination(ctx: PushContext, client: Any) -> OpenedDestination:
    sheet: GoogleSheetResource = ctx.resources.google_sheet
    settings, access = sheet.settings(), sheet.access()
    destination = SheetDestination(
        client, access.sheet_id, ctx.scratch["snapshot"], reread=lambda: read_all(client, access.sheet_id, settings)
    )
    destination.requests = 2  # the tab list and the batchGet of `_rows_desired`
    ctx.scratch["sheet_destination"] = destination
    return OpenedDestination(destination, counts=lambda: dict(destination.counts))


def _rows_after(ctx: PushContext) -> dict[str, Any]:
    from integration_sync.sync.engine import SyncEngine

    destination: SheetDestination | None = ctx.scratch.get("sheet_destination")
    if destination is not None and destination.writes and destination.read_fingerprint:
        # the poll will see our writes; it must not take them for an operator's edit
        ctx.resources.google_sheet.access().record_our_writes(
            destination.read_fingerprint, destination.snapshot.fingerprint()
        )
    conflicts = ctx.scratch.get("conflicts", {})
    logged = SyncEngine(ctx.store, flow=FLOW, entity=ROWS_ENTITY, run_id=ctx.run_id, dry_run=ctx.config.dry_run)
    return {"conflicts": logged.record_conflicts(conflicts), "edits_held": ctx.scratch.get("held_edits", 0)}


def _edits_desired(ctx: PushContext) -> list[Desired]:
    rows = _first_rows(stored_rows(ctx.store))
    keys = [str(lead_id) for lead_id in rows]
    written = Ledger(ctx.store, FLOW, ROWS_ENTITY, ctx.run_id).last_written(keys)
    desired: list[Desired] = []
    for lead_id, row in rows.items():
        key = str(lead_id)
        before = written.get(key)
        edit = operator_edit(
            row.cell(layout.STATUS),
            row.cell(layout.ORDER_NO),
            before.get("status") if before else None,
            before.get("order_no") if before else None,
        )
        payload = {
            "order_no": edit.order_no,
            "order_over": before.get("order_no") if before else None,
            "choice": edit.choice,
            "choice_over": before.get("status") if before else None,
        }
        if edit.problem and before is not None:
            desired.append(Desired(key, {**payload, "cell": row.cell(layout.STATUS)}, invalid_reason=edit.problem))
        elif not edit.empty:
            desired.append(Desired(key, payload))
    return desired


def _edits_destination(ctx: PushContext, client: Any) -> OpenedDestination:
    settings = ctx.resources.google_sheet.settings()
    account = cached_account_map(ctx.store, client, settings)
    destination = AmoLeadDestination(client, account, settings)
    return OpenedDestination(destination, counts=lambda: dict(destination.counts))


ROWS_PUSH = Push(
    key=["google_sheets", "lead_rows"],
    entity=ROWS_ENTITY,
    description=(
        "Each tracked amoCRM lead's row in the seller's sheet, upserted by lead id: found in the active tab"
        " or an archive by its id in a fresh read, updated in place (only the columns amoCRM owns, the"
        " status when amoCRM's value wins), appended to the active tab when new. One read of the tabs,"
        " at most one batch update and one append per run; an unchanged lead costs nothing."
    ),
    kind="googlesheets",
    client="google_sheet",
    desired=_rows_desired,
    destination=_rows_destination,
    target_ids=(ROW,),
    unique_entity=ROW,
    after=_rows_after,
    preflight=rows_preflight,
    deps=(LEADS_KEY.path, ("amocrm", "seller_lead_edits")),  # edits first: a held edit is applied before rows
)

EDITS_PUSH = Push(
    key=["amocrm", "seller_lead_edits"],
    entity=EDITS_ENTITY,
    description=(
        "Operators' edits in the sheet applied to amoCRM: a newly filled «Заказ №» is written to the lead"
        " and moves it to «Заказ отправлен»; the dropdown's «У курера» / «Успешно» move it to the won step,"
        " «Отказ» to the pipeline's reject step. Our own writes read back are echoes and move nothing"
        " («У курера» shown for «Заказ отправлен» never means won); an edit older than a change made in"
        " amoCRM loses to it (logged as a conflict)."
    ),
    kind="amocrm",
    client=CRM,
    resources=("google_sheet",),
    desired=_edits_desired,
    destination=_edits_destination,
    target_ids=(LEAD,),
    unique_entity=LEAD,
    preflight=edits_preflight,
    deps=(ROWS_KEY.path,),
)
