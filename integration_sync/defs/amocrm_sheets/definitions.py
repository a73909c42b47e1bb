"""The amocrm_sheets flow, declared: the seller's amoCRM leads ↔ Google Sheets (the fourth seed)."""

from typing import Any

from integration_sync.defs.amocrm_sheets.assets import CRM, GROUP, seller_leads, sheet_rows, tashkent_days
from integration_sync.defs.amocrm_sheets.automation import (
    amocrm_lead_hooks,
    amocrm_lead_poll,
    amocrm_sheets_job,
    amocrm_to_sheet_job,
    initial_sync,
    sheet_edits,
    sheets_push_job,
    sheets_reconciliation,
    staff_kpi_hourly,
    staff_kpi_job,
)
from integration_sync.defs.amocrm_sheets.kpi_asset import KPI_CHECKS, staff_kpi
from integration_sync.defs.amocrm_sheets.pushes import EDITS_PUSH, ROWS_PUSH
from integration_sync.defs.amocrm_sheets.resources import google_sheet_resource
from integration_sync.defs.amocrm_sheets.rotation_job import ROTATION_JOB, ROTATION_SCHEDULE
from integration_sync.defs.resources import amocrm_resource
from integration_sync.lib.flow import SyncFlow


def resources() -> dict[str, Any]:
    return {CRM: amocrm_resource("SHEETS_"), "google_sheet": google_sheet_resource()}


FLOW = SyncFlow(
    name=GROUP,
    partitions=tashkent_days,
    ingest=[seller_leads, sheet_rows],
    push=ROWS_PUSH,
    more_pushes=[EDITS_PUSH],
    resources=resources,
    rejected_share_var="SHEETS_MAX_REJECTED_SHARE",
    assets=[staff_kpi],
    checks=KPI_CHECKS,
    jobs=[amocrm_sheets_job, amocrm_to_sheet_job, sheets_push_job, staff_kpi_job, ROTATION_JOB],
    schedules=[sheets_reconciliation, staff_kpi_hourly, ROTATION_SCHEDULE],
    sensors=[amocrm_lead_hooks, amocrm_lead_poll, sheet_edits, initial_sync],
)
lead_rows = FLOW.push_asset
