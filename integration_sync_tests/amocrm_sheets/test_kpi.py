"""Staff KPI: the numbers on hand-made leads (staff codes with and without leading zeros, unknown and
empty codes, the month boundary in Asia/Tashkent) and the `staff_kpi` asset over a temp warehouse and
the Sheets sandbox."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import httpx

from integration_sync.defs.amocrm_sheets.kpi import (
    KpiLead,
    StaffMember,
    code_key,
    markdown,
    month_of,
    month_table,
    orders_not_in_staff,
    staff_kpi,
)
from integration_sync.defs.amocrm_sheets.kpi_asset import KPI_CHECKS, KPI_KEY, _why
from integration_sync.defs.amocrm_sheets.kpi_asset import staff_kpi as staff_kpi_asset
from integration_sync.defs.amocrm_sheets.resources import GoogleSheetResource
from integration_sync.defs.resources import WarehouseResource
from integration_sync.sandbox.sheets import SPREADSHEET_ID

TASHKENT = ZoneInfo("Asia/Tashkent")
STAFF = [
    StaffMember("0134", "BAHODIR HUSANOV"),
    StaffMember("152", "DILNOZA KARIMOVA"),
    StaffMember("0161 ", "SARDOR TOSHMATOV"),
    StaffMember("", "nobody"),
]


def lead(lead_id: int, when: str, code: str | None, stage: str) -> KpiLead:
    return KpiLead(lead_id, datetime.fromisoformat(when), code, stage)


def test_codes_match_with_or_without_leading_zeros() -> None:
    assert code_key("0134") == code_key("134") == code_key(" 134 ") == "134"
    assert code_key("000") == "0" and code_key("") == "" and code_key(None) == ""
    assert code_key("152.0") == "152"  # a code the sheet shows as a number


def test_kpi_per_employee_and_month() -> None:
    leads = [
        lead(1, "2026-11-02T10:00:00+00:00", "134", "trigger"),
        lead(2, "2026-11-03T10:00:00+00:00", "0134", "won"),
        lead(3, "2026-11-04T10:00:00+00:00", "00134", "sent"),
        lead(4, "2026-11-05T10:00:00+00:00", "0152", "won"),
        lead(5, "2026-11-05T11:00:00+00:00", "152", "lost"),
        lead(6, "2026-11-06T10:00:00+00:00", "0999", "won"),
        lead(7, "2026-11-06T11:00:00+00:00", "999", "trigger"),
        lead(8, "2026-11-07T10:00:00+00:00", "", "lost"),
        lead(9, "2026-11-07T11:00:00+00:00", None, "other"),
        lead(10, "2026-11-08T10:00:00+00:00", "161", "won"),
    ]
    rows = staff_kpi(leads, STAFF, TASHKENT)
    got = {r.employee: (r.orders, r.sent, r.successful, r.refused, r.conversion) for r in rows}
    assert got == {
        "BAHODIR HUSANOV": (3, 1, 1, 0, 0.333),
        "DILNOZA KARIMOVA": (2, 0, 1, 1, 0.5),
        "SARDOR TOSHMATOV": (1, 0, 1, 0, 1.0),
        "0999 (not in Staff)": (2, 0, 1, 0, 0.5),
        "(no code)": (2, 0, 0, 1, 0.0),
    }
    assert [r.employee for r in rows][-2:] == ["0999 (not in Staff)", "(no code)"]  # after Staff, by name
    assert {r.month for r in rows} == {"2026-11"}
    assert isinstance(rows[0].conversion, float)
    table = month_table(rows, "2026-11")
    assert (table.orders, table.successful, table.conversion) == (10, 4, 0.4)
    assert orders_not_in_staff(leads, STAFF) == [(6, "0999"), (7, "999"), (8, ""), (9, "")]
    assert "| BAHODIR HUSANOV | 3 | 1 | 1 | 0 | 0.333 |" in markdown(table)


def test_month_follows_the_flows_zone() -> None:
    late = lead(1, "2026-10-31T20:30:00+00:00", "134", "won")  # 01:30 on 1 November in Tashkent
    early = lead(2, "2026-10-31T18:59:00+00:00", "134", "trigger")  # 23:59 on 31 October
    assert month_of(late.created_at, TASHKENT) == "2026-11"
    assert month_of(late.created_at, UTC) == "2026-10"
    rows = staff_kpi([late, early], STAFF, TASHKENT)
    assert [(r.month, r.orders, r.successful) for r in rows] == [("2026-10", 1, 0), ("2026-11", 1, 1)]


def test_no_orders_means_zero_conversion() -> None:
    table = month_table([], "2026-12")
    assert (table.orders, table.conversion) == (0, 0.0)
    assert "no orders in 2026-12" in markdown(table)


# -- the asset ------------------------------------------------------------------------------------


def _warehouse(data_dir: Path, now: datetime) -> WarehouseResource:
    warehouse = WarehouseResource(database=str(data_dir / "warehouse.duckdb"))
    rows: list[tuple[Any, ...]] = [
        (1, now, "0134", "won", True),
        (2, now, "134", "trigger", True),
        (3, now, "777", "lost", True),
        (4, now, "134", "won", False),  # never reached a trigger status: not an order
    ]
    with warehouse.get_connection() as conn:
        for lead_id, created, code, stage, tracked in rows:
            conn.execute(
                "INSERT INTO sheets_leads (lead_id, partition_date, created_at, updated_at, pipeline_id, status_id,"
                " stage, tracked, employee_code, raw, loaded_at) VALUES (?, ?, ?, ?, 1, 2, ?, ?, ?, '{}', ?)",
                [lead_id, created.date(), created, created, stage, tracked, code, created],
            )
        conn.execute("INSERT INTO sheets_staff VALUES ('134', '134', 'BAHODIR HUSANOV', 'A', ?)", [now])
    return warehouse


def _materialize(warehouse: WarehouseResource, sheet: GoogleSheetResource) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [staff_kpi_asset, *KPI_CHECKS],
        resources={"warehouse": warehouse, "google_sheet": sheet},
        instance=dg.DagsterInstance.ephemeral(),
    )


def test_asset_metadata_dashboard_and_check(sandbox_env: dict[str, str], control: httpx.Client, data_dir: Path) -> None:
    now = datetime.now(UTC)
    warehouse = _warehouse(data_dir, now)
    sheet = GoogleSheetResource(
        sheet_id=sandbox_env["GOOGLE_SHEET_ID"],
        api_url=sandbox_env["GOOGLE_SHEETS_API_URL"],
        token=sandbox_env["GOOGLE_SHEETS_TOKEN"],
        state_dir=str(data_dir / "state"),
    )
    result = _materialize(warehouse, sheet)
    assert result.success
    [event] = result.asset_materializations_for_node("google_sheets__staff_kpi")
    assert event.asset_key == KPI_KEY
    meta: dict[str, Any] = {k: getattr(v, "value", v) for k, v in event.metadata.items()}
    assert meta["month"] == month_of(now, TASHKENT)
    assert (meta["orders_this_month"], meta["successful_this_month"], meta["employees"]) == (3, 1, 2)
    assert meta["conversion_this_month"] == 0.333
    assert meta["dashboard_written"] is True and "dashboard_error" not in meta
    assert "| BAHODIR HUSANOV | 2 | 0 | 1 | 0 | 0.5 |" in meta["kpi"]
    cells = control.get(f"/_sandbox/sheets/spreadsheets/{SPREADSHEET_ID}/cells", params={"sheet": "Dashboard"})
    assert cells.json()["rows"][3] == ["BAHODIR HUSANOV", 2, 0, 1, 0, 0.5]
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "kpi_every_order_has_an_employee"
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["orders_without_employee"].value == 1
    assert "lead 3: 777" in str(check.metadata["sample"].value)


def test_asset_materializes_when_the_sheet_refuses(sandbox_env: dict[str, str], data_dir: Path) -> None:
    bad_token = "ya29.a-wrong-token-that-must-not-leak"
    sheet = GoogleSheetResource(
        sheet_id=sandbox_env["GOOGLE_SHEET_ID"],
        api_url=sandbox_env["GOOGLE_SHEETS_API_URL"],
        token=bad_token,
        state_dir=str(data_dir / "state"),
    )
    result = _materialize(_warehouse(data_dir, datetime.now(UTC)), sheet)
    assert result.success
    [event] = result.asset_materializations_for_node("google_sheets__staff_kpi")
    meta: dict[str, Any] = {k: getattr(v, "value", v) for k, v in event.metadata.items()}
    assert meta["dashboard_written"] is False
    assert "401" in meta["dashboard_error"] and bad_token not in meta["dashboard_error"]
    assert meta["orders_this_month"] == 3


def test_a_reason_never_carries_the_sheets_token() -> None:
    token = "ya29.secret-token"
    assert _why(RuntimeError(f"refused with Bearer {token}"), token) == "RuntimeError: refused with Bearer ***"
