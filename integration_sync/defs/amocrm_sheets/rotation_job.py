"""The Dagster side of tab rotation: `amocrm_sheets_rotation_job` (one op, in the flow's push pool and
carrying its push tag, so it never runs beside a push of the flow) and its schedule `sheet_rotation`
(at each period's start in the flow's zone; skipped while the flow is unconfigured or running).

The schedule's cron follows `SHEET_ROTATION_INTERVAL` as read when the code location loads (monthly:
00:00 on the 1st; hourly: every hour; off: monthly ticks that do nothing). The op decides from the
sheet itself (`rotation.rotate`), so a late or repeated tick is harmless.
"""

import os
from datetime import UTC, datetime

import dagster as dg

from integration_sync.connectors.errors import ConfigError
from integration_sync.defs.amocrm_sheets.resources import GoogleSheetResource
from integration_sync.defs.amocrm_sheets.rotation import rotate
from integration_sync.defs.amocrm_sheets.settings import DEFAULT_ZONE, FLOW, SheetsSettings
from integration_sync.defs.runs import push_pool
from integration_sync.lib.flow import skip_while_running
from integration_sync.lib.push import push_tags

CRON = {"monthly": "0 0 1 * *", "hourly": "0 * * * *", "off": "0 0 1 * *"}


@dg.op(pool=push_pool(FLOW), tags=push_tags(FLOW))
def rotate_sheet_tab(context: dg.OpExecutionContext, google_sheet: GoogleSheetResource) -> None:
    """Archive the active tab under its period's title when that period has ended; start a fresh one."""
    settings = google_sheet.settings()
    result = rotate(google_sheet.access().spreadsheet(), settings, datetime.now(UTC))
    context.log.info(result.reason)
    context.add_output_metadata(dict(result.metadata()))


@dg.job(
    name=f"{FLOW}_rotation_job",
    tags=push_tags(FLOW),
    description="Archive the sheet's active tab when its period ends (SHEET_ROTATION_INTERVAL) and start a fresh one.",
)
def amocrm_sheets_rotation_job() -> None:
    rotate_sheet_tab()


def _loaded_settings() -> SheetsSettings:
    """The settings at load; a bad value must not break the code location (doctor names it)."""
    try:
        return SheetsSettings.from_env(os.environ)
    except ConfigError:
        return SheetsSettings()


_SETTINGS = _loaded_settings()


@dg.schedule(
    name="sheet_rotation",
    job=amocrm_sheets_rotation_job,
    cron_schedule=CRON[_SETTINGS.rotation],
    execution_timezone=_SETTINGS.timezone or DEFAULT_ZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
@skip_while_running(FLOW)
def sheet_rotation(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """At each period's start: rotate the active tab (see `rotation.py`)."""
    try:
        interval = SheetsSettings.from_env(os.environ).rotation  # as set now, not at load
    except ConfigError as exc:
        return dg.SkipReason(exc.message)
    if interval == "off":
        return dg.SkipReason("SHEET_ROTATION_INTERVAL is off")
    when = context.scheduled_execution_time
    return dg.RunRequest(run_key=f"rotate@{when:%Y-%m-%dT%H:%M}" if when else None)


ROTATION_JOB = amocrm_sheets_rotation_job
ROTATION_SCHEDULE = sheet_rotation
