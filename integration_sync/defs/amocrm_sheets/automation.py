"""What starts the flow's runs: amoCRM status hooks (and the polling fallback that catches what hooks
missed) → leads re-read and rows upserted; the sheet's poll → operators' edits applied to amoCRM; the
initial sync; a half-hourly reconciliation. An idle tick launches nothing.

- `amocrm_lead_hooks` drains the inbox by cursor (its identity and last event id) and requests one
  `amocrm_to_sheet_job` run per creation day of the new events, tagged `integration_sync/source=inbox`
  (the run reads only those leads); a day with a run waiting gets no second one.
- `amocrm_lead_poll` asks amoCRM every `SHEETS_AMO_POLL_MINUTES` (default 5) for leads updated since
  its cursor — one request — and puts them in the inbox under the key a hook of the same change has,
  so a change the hook delivered costs nothing more.
- `sheet_edits` reads the sheet every `SYNC_POLL_SECONDS` with ONE `values:batchGet` (the tab list
  is kept in the cursor, refreshed every 10 minutes or when a range fails) and launches
  `sheets_push_job` only when a lead id, status or «Заказ №» cell, or Staff, changed.
- `initial_sync` launches, once per configured range, one run over `INITIAL_SYNC_DATE_FROM..TO`.
"""

import json
import os
import time
from datetime import UTC, datetime

import dagster as dg

from integration_sync.connectors.errors import ConfigError, IntegrationError
from integration_sync.defs.amocrm_sheets.amo_source import load_account_map, updated_since
from integration_sync.defs.amocrm_sheets.assets import (
    GROUP,
    LEADS_KEY,
    POLL_SOURCE,
    ROWS_KEY,
    SOURCE_TAG,
    partition_bounds,
    tashkent_days,
)
from integration_sync.defs.amocrm_sheets.receiver import SOURCE as HOOK_SOURCE
from integration_sync.defs.amocrm_sheets.receiver import creation_day
from integration_sync.defs.amocrm_sheets.resources import SheetAccess
from integration_sync.defs.amocrm_sheets.settings import DEFAULT_ZONE, SheetsSettings
from integration_sync.defs.amocrm_sheets.sheet_source import TabInfo, list_tabs, read_sheet
from integration_sync.defs.runs import ACTIVE
from integration_sync.lib.flow import flow_job, not_ready, skip_while_running
from integration_sync.lib.inbox_sensor import drain_inbox
from integration_sync.webhooks.inbox import Inbox
from integration_sync.webhooks.settings import inbox_path_from_env

ZONE = os.environ.get("SHEETS_TIMEZONE") or DEFAULT_ZONE
SENSOR_BATCH = 5000
TABS_MAX_AGE_S = 600.0
_RANGE_START = "dagster/asset_partition_range_start"
_RANGE_END = "dagster/asset_partition_range_end"
ROWS_PUSH_KEY = dg.AssetKey(["google_sheets", "lead_rows"])
EDITS_PUSH_KEY = dg.AssetKey(["amocrm", "seller_lead_edits"])


def _poll_seconds() -> int:
    try:
        return max(int(os.environ.get("SYNC_POLL_SECONDS") or 10), 2)
    except ValueError:
        return 10  # the doctor names the bad value; the sensor keeps the seed's default


amocrm_sheets_job = flow_job(
    GROUP,
    tashkent_days,
    "Every lead created on the chosen days re-read from amoCRM, the sheet read, edits applied and rows upserted"
    " (the initial sync and any backfill).",
)
amocrm_to_sheet_job = flow_job(
    GROUP,
    tashkent_days,
    name="amocrm_to_sheet_job",
    selection=dg.AssetSelection.assets(LEADS_KEY, ROWS_PUSH_KEY),
    executor=dg.in_process_executor,  # one process per run: a status change reaches the sheet in seconds
    description="Leads whose status changed (hooks, polling) re-read from amoCRM and their rows upserted.",
)
sheets_push_job = flow_job(
    GROUP,
    None,
    name="sheets_push_job",
    selection=dg.AssetSelection.assets(ROWS_KEY, EDITS_PUSH_KEY, ROWS_PUSH_KEY),
    executor=dg.in_process_executor,
    description="The sheet read, operators' edits applied to amoCRM, and every row brought up to date.",
)


def _settings() -> SheetsSettings | dg.SkipReason:
    """The flow's settings, or a skip naming the wrong variable (the doctor names it too)."""
    try:
        return SheetsSettings.from_env(os.environ)
    except ConfigError as exc:
        return dg.SkipReason(f"a setting is wrong: {exc.message}")


@dg.sensor(job=amocrm_to_sheet_job, minimum_interval_seconds=2, default_status=dg.DefaultSensorStatus.RUNNING)
def amocrm_lead_hooks(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """New amoCRM status hooks (and polled changes) in the inbox → a run per creation day."""
    return drain_inbox(
        context,
        flow=GROUP,
        sources=(HOOK_SOURCE, POLL_SOURCE),
        job_name=amocrm_to_sheet_job.name,
        bounds=partition_bounds,
        run_key_prefix="hooks",
        tags={SOURCE_TAG: "inbox"},
        nothing="no new status changes",
    )


def _poll_minutes() -> int:
    try:
        return max(int(os.environ.get("SHEETS_AMO_POLL_MINUTES") or 5), 1)
    except ValueError:
        return 5


@dg.sensor(minimum_interval_seconds=60 * _poll_minutes(), default_status=dg.DefaultSensorStatus.RUNNING)
def amocrm_lead_poll(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """The polling fallback: leads updated in amoCRM since the last poll go to the inbox (under the key
    their status hook has), so a hook amoCRM never delivered still reaches the sheet."""
    from integration_sync.defs.resources import amocrm_resource

    unready = not_ready(GROUP)
    if unready is not None:
        return unready
    settings = _settings()
    if isinstance(settings, dg.SkipReason):
        return settings
    now = int(time.time())
    cursor = context.cursor or ""
    since = int(cursor) - 60 if cursor.isdigit() else now - 3600
    resource = amocrm_resource("SHEETS_").process_config_and_initialize()
    try:
        with resource.client() as client:
            account = load_account_map(client, settings)
            leads = updated_since(client, since, account)
    except IntegrationError as exc:
        return dg.SkipReason(f"amoCRM did not answer the poll: {exc.message[:200]}")
    inbox = Inbox(inbox_path_from_env())
    added = 0
    for lead in leads:
        fields = {"id": lead.id, "status_id": int(lead.status_id or 0), "pipeline_id": int(lead.pipeline_id or 0)}
        fields.update(date_create=int(lead.created_at or 0), last_modified=int(lead.updated_at or 0))
        key = f"{HOOK_SOURCE}:{lead.id}:{fields['status_id']}:{fields['last_modified']}"
        day = creation_day(fields, settings.zone)
        added += inbox.insert(POLL_SOURCE, key, day, json.dumps(fields), "accepted", None) is not None
    newest = max([int(lead.updated_at or 0) for lead in leads] + [since + 60])
    context.update_cursor(str(min(newest, now)))
    return dg.SkipReason(f"{len(leads)} leads updated since {since}, {added} not delivered by a hook")


@dg.sensor(job=sheets_push_job, minimum_interval_seconds=_poll_seconds(), default_status=dg.DefaultSensorStatus.RUNNING)
def sheet_edits(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """The sheet polled with one read; a run only when an operator-facing cell or Staff changed."""
    unready = not_ready(GROUP)
    if unready is not None:
        return unready
    if context.instance.get_run_records(dg.RunsFilter(job_name=sheets_push_job.name, statuses=ACTIVE), limit=1):
        return dg.SkipReason("a sheets_push_job run is queued or running")
    raw = context.cursor or ""
    state = json.loads(raw) if raw.startswith("{") else {}
    settings = _settings()
    if isinstance(settings, dg.SkipReason):
        return settings
    access = SheetAccess.from_env(os.environ)
    tabs = [TabInfo(*t) for t in state.get("tabs", [])]
    try:
        client = access.client()
        if not tabs or time.time() - float(state.get("tabs_at", 0)) > TABS_MAX_AGE_S:
            tabs, state["tabs_at"] = list_tabs(client, access.sheet_id, settings), time.time()
        try:
            snapshot = read_sheet(client, access.sheet_id, tabs)
        except IntegrationError:  # a tab renamed or deleted since: list them again, once
            tabs, state["tabs_at"] = list_tabs(client, access.sheet_id, settings), time.time()
            snapshot = read_sheet(client, access.sheet_id, tabs)
    except IntegrationError as exc:
        return dg.SkipReason(f"the sheet could not be read: {exc.message[:200]}")
    state["tabs"] = [[t.id, t.title, t.role, t.period] for t in tabs]
    fingerprint = snapshot.fingerprint()
    changed = fingerprint != state.get("fingerprint")
    if changed and access.only_our_writes(state.get("fingerprint"), fingerprint):
        changed = False  # exactly what our pushes wrote, over what this poll had seen: no edit
    state["fingerprint"] = fingerprint
    cursor = json.dumps(state, ensure_ascii=False)
    if not changed:
        return dg.SensorResult(skip_reason="the sheet has not changed", cursor=cursor)
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"sheet:{fingerprint[:16]}")], cursor=cursor)


@dg.sensor(job=amocrm_sheets_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def initial_sync(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """`INITIAL_SYNC_DATE_FROM..TO` (TO defaults to today): one run over those days, once per range."""
    unready = not_ready(GROUP)
    if unready is not None:
        return unready
    settings = _settings()
    if isinstance(settings, dg.SkipReason):
        return settings
    if settings.initial_sync_from is None:
        return dg.SkipReason("INITIAL_SYNC_DATE_FROM is not set")
    first, last = partition_bounds()
    start = min(max(settings.initial_sync_from, first), last)
    end = min(max(settings.initial_sync_to or datetime.now(UTC).date(), start), last)
    wanted = f"{start.isoformat()}..{end.isoformat()}"
    if context.cursor == wanted:
        return dg.SkipReason(f"the initial sync {wanted} was launched already")
    request = dg.RunRequest(
        run_key=f"initial-sync:{wanted}", tags={_RANGE_START: start.isoformat(), _RANGE_END: end.isoformat()}
    )
    return dg.SensorResult(run_requests=[request], cursor=wanted)


@dg.schedule(
    job=sheets_push_job,
    cron_schedule="*/30 * * * *",
    execution_timezone=ZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
@skip_while_running(GROUP)
def sheets_reconciliation(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Every 30 minutes: the sheet read again, failed edits and rows retried."""
    return dg.RunRequest(run_key=f"reconcile@{context.scheduled_execution_time:%Y-%m-%dT%H:%M}")


staff_kpi_job = flow_job(
    GROUP,
    None,
    name="staff_kpi_job",
    selection=dg.AssetSelection.assets(ROWS_KEY, dg.AssetKey(["google_sheets", "staff_kpi"])),
    executor=dg.in_process_executor,
    description="The sheet read (Staff), then the staff KPI computed and written to the Dashboard tab.",
)


@dg.schedule(
    job=staff_kpi_job,
    cron_schedule="15 * * * *",
    execution_timezone=ZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
@skip_while_running(GROUP)
def staff_kpi_hourly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Hourly at :15: the staff KPI and the Dashboard tab brought up to date."""
    return dg.RunRequest(run_key=f"kpi@{context.scheduled_execution_time:%Y-%m-%dT%H}")
