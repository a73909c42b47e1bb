"""The flow's source assets: the seller's amoCRM leads (by creation day in the flow's zone) and the
sheet's rows as last read (with Staff, the tabs and what breaks the layout)."""

import os
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.account_cache import cached_account_map
from integration_sync.defs.amocrm_sheets.amo_source import ReadResult, read_by_ids, read_created
from integration_sync.defs.amocrm_sheets.receiver import SOURCE as HOOK_SOURCE
from integration_sync.defs.amocrm_sheets.resources import GoogleSheetResource
from integration_sync.defs.amocrm_sheets.settings import DEFAULT_ZONE, FLOW
from integration_sync.defs.amocrm_sheets.sheet_source import read_all
from integration_sync.defs.amocrm_sheets.tables import (
    loaded_event_keys,
    recently_loaded,
    store_leads,
    store_sheet,
)
from integration_sync.defs.metadata import samples_table
from integration_sync.defs.partitions import daily, window_days
from integration_sync.defs.resources import AmoCrmResource, WarehouseResource
from integration_sync.lib.push import partition_metadata
from integration_sync.sync.ledger import Ledger
from integration_sync.webhooks.inbox import Event, Inbox
from integration_sync.webhooks.settings import inbox_path_from_env

GROUP = FLOW
CRM = "amocrm_sheets"
LEADS_KEY = dg.AssetKey(["amocrm", "seller_leads"])
ROWS_KEY = dg.AssetKey(["google_sheets", "sheet_rows"])
POLL_SOURCE = "amocrm_poll"
SOURCE_TAG = "integration_sync/source"  # "inbox": a run the sensors asked for reads only the inbox's new leads
CELLS_ENTITY = "sheet_cells"  # when each sheet cell value was first seen

tashkent_days = daily(os.environ.get("SHEETS_TIMEZONE") or DEFAULT_ZONE, "SHEETS_START_DATE", "2025-01-01")


def partition_bounds() -> tuple[date, date]:
    first = tashkent_days.get_first_partition_key()
    last = tashkent_days.get_last_partition_key()
    assert first is not None and last is not None
    return date.fromisoformat(first), date.fromisoformat(last)


def _day_of(stamp: int, zone: Any, first: date, last: date) -> date:
    day = datetime.fromtimestamp(stamp, UTC).astimezone(zone).date()
    return min(max(day, first), last)


def _inbox_events(first: date, last: date) -> list[Event]:
    path = inbox_path_from_env()
    if not path.exists():
        return []
    lowest, highest = partition_bounds()
    events = Inbox(path).read_dates(
        first.isoformat(),
        last.isoformat(),
        before=first.isoformat() if first <= lowest else None,
        after=last.isoformat() if last >= highest else None,
        sources=(HOOK_SOURCE, POLL_SOURCE),
    )
    return events


@dg.asset(
    key=LEADS_KEY,
    group_name=GROUP,
    partitions_def=tashkent_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"amocrm", "duckdb"},
)
def seller_leads(
    context: dg.AssetExecutionContext,
    amocrm_sheets: AmoCrmResource,
    google_sheet: GoogleSheetResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult[None]:
    """The seller's amoCRM leads by creation day (in the flow's zone, Asia/Tashkent by default), always
    re-read from the API in bulk — a status hook only says which lead to read.

    Launched by the hook sensor (tag `integration_sync/source=inbox`) it reads the leads of the new
    hooks and polling events in the inbox; launched from the UI, a schedule or a backfill (the
    initial sync) it reads every lead created on the partition's days. Skipped as the seed says:
    last updated before `LEADS_CREATED_AFTER`, a pipeline not matching `PIPELINE_KEYWORD`, a repeated
    (lead, status) hook within `WEBHOOK_DEDUP_TTL_SEC`. A lead at a trigger stage, or one that already
    has a row, is tracked: the `google_sheets/lead_rows` push keeps its row.
    """
    settings = google_sheet.settings()
    start, end, first, last = window_days(context)
    store = warehouse.warehouse()
    from_inbox = context.run.tags.get(SOURCE_TAG) == "inbox"
    events = _inbox_events(first, last) if from_inbox else []
    fresh = [e for e in events if e.event_key not in loaded_event_keys(store, [e.event_key for e in events])]
    hooks = [(e, _hook_fields(e)) for e in fresh]
    since = datetime.now(UTC) - timedelta(seconds=settings.webhook_dedup_ttl_s)
    repeated = recently_loaded(store, [(f["id"], f["status_id"]) for e, f in hooks if e.source == HOOK_SOURCE], since)
    duplicates = [(e, f) for e, f in hooks if e.source == HOOK_SOURCE and (f["id"], f["status_id"]) in repeated]
    to_read = sorted({f["id"] for e, f in hooks} - {f["id"] for _, f in duplicates})
    with amocrm_sheets.client() as client:
        account = cached_account_map(store, client, settings)
        if from_inbox:
            result = read_by_ids(client, to_read, account, settings) if to_read else ReadResult()
        else:
            result = read_created(client, int(start.timestamp()), int(end.timestamp()), account, settings)
        requests = client.requests_used
    lowest, highest = partition_bounds()
    partition_of = {s.lead_id: _day_of(s.created_at, settings.zone, lowest, highest) for s in result.snapshots}
    outcome = {lead: "too_old" for lead in result.too_old}
    outcome.update({lead: "other_pipeline" for lead in result.other_pipeline})
    outcome.update({lead: "not_found" for lead in result.not_found})
    dup_keys = {e.event_key for e, _ in duplicates}
    event_rows = [
        {
            "event_key": e.event_key,
            "lead_id": f["id"],
            "status_id": f.get("status_id"),
            "received_at": e.received_at,
            "outcome": "duplicate" if e.event_key in dup_keys else outcome.get(f["id"], "loaded"),
        }
        for e, f in hooks
    ]
    tracked = store_leads(store, result.snapshots, partition_of, context.run_id, event_rows)
    per_day: dict[date, dict[str, Any]] = {}
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    for day in days:
        per_day[day] = {"fetched": 0, "tracked": 0}
    for snap in result.snapshots:
        counts = per_day.setdefault(partition_of[snap.lead_id], {"fetched": 0, "tracked": 0})
        counts["fetched"] += 1
        counts["tracked"] += snap.stage == "trigger"
    run: dict[str, Any] = {
        "hooks": sum(e.source == HOOK_SOURCE for e in fresh),
        "polled": sum(e.source == POLL_SOURCE for e in fresh),
        "duplicates": len(duplicates),
        "skipped_too_old": len(result.too_old),
        "skipped_pipeline": len(result.other_pipeline),
        "not_found": len(result.not_found),
        "tracked_in_run": tracked,
        "api_requests": requests,
        "mode": "inbox" if from_inbox else "window",
    }
    if account.problems:
        run["account_problems"] = samples_table([("amoCRM", p) for p in account.problems])
        context.log.warning("amoCRM account: " + "; ".join(account.problems))
    return partition_metadata(context, per_day, run)


def _hook_fields(event: Event) -> dict[str, int]:
    import json

    data = json.loads(event.payload)
    return {k: int(v) for k, v in data.items() if k in ("id", "status_id", "pipeline_id", "last_modified")}


@dg.asset(key=ROWS_KEY, group_name=GROUP, kinds={"googlesheets", "duckdb"})
def sheet_rows(
    context: dg.AssetExecutionContext, google_sheet: GoogleSheetResource, warehouse: WarehouseResource
) -> dg.MaterializeResult[None]:
    """The seller's sheet as last read: every row of the active tab and its archives (by lead id, with
    its cells), the Staff tab, the tab list, and what breaks the layout (a renamed header, an inserted
    column, a row without a lead id, a lead with two rows) — recorded in `sheets_layout_issues` and
    shown here; a broken tab is neither written nor acted on. Two reads: the tab list and one
    `values:batchGet` of every tab in use."""
    settings = google_sheet.settings()
    access = google_sheet.access()
    snapshot = read_all(access.client(), access.sheet_id, settings)
    store = warehouse.warehouse()
    store_sheet(store, snapshot)
    rows = [r for r in snapshot.rows if r.lead_id is not None and r.tab_id not in snapshot.broken_tabs]
    Ledger(store, FLOW, CELLS_ENTITY, context.run_id).observe(
        {str(r.lead_id): {"status": r.cell(layout.STATUS), "order_no": r.cell(layout.ORDER_NO)} for r in rows}
    )
    issues: Sequence[tuple[str, str]] = [
        (f"{i.tab_title}!{i.column_name or ''}{i.row_number or ''}", i.problem) for i in snapshot.issues
    ]
    metadata: dict[str, Any] = {
        "rows": len(snapshot.rows),
        "leads": len(snapshot.rows_by_lead()),
        "tabs": len(snapshot.tabs),
        "archives": sum(t.role == "archive" for t in snapshot.tabs),
        "staff": max(len(snapshot.staff_rows) - 1, 0),
        "layout_issues": len(snapshot.issues),
        "broken_tabs": len(snapshot.broken_tabs),
    }
    if issues:
        metadata["layout_issue_sample"] = samples_table(list(issues)[:20])
        context.log.warning(f"the sheet's layout: {len(issues)} problems, e.g. {issues[0][0]}: {issues[0][1]}")
    if snapshot.active_missing:
        context.log.warning(
            f"no tab named {settings.worksheet!r} (GOOGLE_WORKSHEET_NAME): run `integration-sync sheet setup`"
        )
    return dg.MaterializeResult(metadata=metadata)
