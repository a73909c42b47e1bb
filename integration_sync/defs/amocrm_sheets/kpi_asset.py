"""The `staff_kpi` asset (the seed's staff dashboard) and its check: the KPI computed from the
warehouse, shown as Dagster metadata and written to the sheet's «Dashboard» tab."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import gspread
import requests

from integration_sync.connectors.errors import ConfigError
from integration_sync.defs.amocrm_sheets.dashboard import write_dashboard
from integration_sync.defs.amocrm_sheets.kpi import (
    KpiLead,
    StaffMember,
    markdown,
    month_of,
    month_table,
    orders_not_in_staff,
)
from integration_sync.defs.amocrm_sheets.kpi import staff_kpi as compute_kpi
from integration_sync.defs.amocrm_sheets.resources import GoogleSheetResource
from integration_sync.defs.resources import WarehouseResource

KPI_KEY = dg.AssetKey(["google_sheets", "staff_kpi"])
LEADS_KEY = dg.AssetKey(["amocrm", "seller_leads"])
ROWS_KEY = dg.AssetKey(["google_sheets", "sheet_rows"])
GROUP = "amocrm_sheets"
_ERROR_LIMIT = 300


def read_kpi_inputs(warehouse: WarehouseResource) -> tuple[list[KpiLead], list[StaffMember]]:
    """The tracked leads and the Staff tab as last loaded (one short connection)."""
    with warehouse.get_connection() as conn:
        leads = conn.execute(
            "SELECT lead_id, epoch_ms(created_at), employee_code, stage FROM sheets_leads WHERE tracked"
        ).fetchall()
        staff = conn.execute("SELECT code, name FROM sheets_staff").fetchall()
    return (
        [KpiLead(int(i), datetime.fromtimestamp(ms / 1000, UTC), code, str(stage)) for i, ms, code, stage in leads],
        [StaffMember(str(code), str(name)) for code, name in staff],
    )


def _why(exc: Exception, secret: str) -> str:
    """A short reason for the metadata, with the sheet's token (if any) blanked out."""
    text = f"{type(exc).__name__}: {exc}"
    if secret:
        text = text.replace(secret, "***")
    return text[:_ERROR_LIMIT]


@dg.asset(
    key=KPI_KEY,
    group_name=GROUP,
    kinds={"duckdb", "googlesheets"},
    deps=[LEADS_KEY, ROWS_KEY],  # the leads, and Staff as the sheet's last read holds it
)
def staff_kpi(warehouse: WarehouseResource, google_sheet: GoogleSheetResource) -> dg.MaterializeResult[None]:
    """Staff KPI per employee and month of lead creation in the flow's zone (SHEETS_TIMEZONE): orders
    (leads that reached a trigger status), sent, successful (won), refused (lost) and conversion
    (successful ÷ orders). Employees come from the Staff tab by «Код сотрудника» with or without
    leading zeros; an unknown code is its own row. The current month is shown here (a table and
    numbers plotted over time) and written to the sheet's «Dashboard» tab with a chart; when the sheet
    cannot be reached the metadata still materializes and `dashboard_error` says why."""
    leads, staff = read_kpi_inputs(warehouse)  # the connection is closed before any Sheets request
    settings = google_sheet.settings()
    zone = settings.zone
    now = datetime.now(UTC)
    table = month_table(compute_kpi(leads, staff, zone), month_of(now, zone))
    metadata: dict[str, dg.RawMetadataValue] = {
        "month": table.month,
        "kpi": dg.MetadataValue.md(markdown(table)),
        "orders_this_month": table.orders,
        "successful_this_month": table.successful,
        "conversion_this_month": dg.MetadataValue.float(table.conversion),
        "employees": len(table.rows),
    }
    note = f"Обновлено {now.astimezone(zone):%d.%m.%Y %H:%M} ({settings.timezone})"
    try:
        spreadsheet = google_sheet.access().spreadsheet()
        metadata["dashboard_requests"] = 1 + write_dashboard(spreadsheet, table, note)
        metadata["dashboard_written"] = True
    except (ConfigError, gspread.exceptions.GSpreadException, requests.RequestException, OSError) as exc:
        metadata["dashboard_written"] = False
        metadata["dashboard_error"] = _why(exc, google_sheet.token)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(
    asset=staff_kpi,
    name="kpi_every_order_has_an_employee",
    description="Every order's «Код сотрудника» is in the Staff tab (with or without leading zeros).",
)
def kpi_every_order_has_an_employee(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    leads, staff = read_kpi_inputs(warehouse)
    missing = orders_not_in_staff(leads, staff)
    lines = [f"- lead {lead_id}: {code or '(no code)'}" for lead_id, code in missing[:20]]
    return dg.AssetCheckResult(
        passed=not missing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"orders_without_employee": len(missing), "sample": dg.MetadataValue.md("\n".join(lines) or "none")},
    )


KPI_CHECKS: list[dg.AssetChecksDefinition] = [kpi_every_order_has_an_employee]
