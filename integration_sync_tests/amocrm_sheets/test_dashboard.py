"""The «Dashboard» tab written to the Sheets sandbox over real HTTP through gspread and read back:
the table's values, exactly one chart after repeated writes, its ranges following the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gspread
import httpx
import pytest

from integration_sync.defs.amocrm_sheets.dashboard import CHART_TITLE, chart_spec, write_dashboard
from integration_sync.defs.amocrm_sheets.kpi import KpiRow, KpiTable
from integration_sync.defs.amocrm_sheets.resources import SheetAccess
from integration_sync.sandbox.sheets import SPREADSHEET_ID

CELLS = f"/_sandbox/sheets/spreadsheets/{SPREADSHEET_ID}/cells"


@pytest.fixture()
def spreadsheet(sandbox_env: dict[str, str], data_dir: Path) -> gspread.Spreadsheet:
    return SheetAccess.from_env(sandbox_env, state_dir=str(data_dir / "state")).spreadsheet()


def table(*rows: tuple[str, int, int, int, int]) -> KpiTable:
    return KpiTable("2026-11", tuple(KpiRow("2026-11", name, a, b, c, d) for name, a, b, c, d in rows))


def charts(control: httpx.Client) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = control.get(CELLS, params={"sheet": "Dashboard"}).json()["charts"]
    return found


def drawn_rows(chart: dict[str, Any]) -> list[tuple[int, int]]:
    basic = chart["spec"]["basicChart"]
    parts = [basic["domains"][0]["domain"], *(s["series"] for s in basic["series"])]
    return [(g["startRowIndex"], g["endRowIndex"]) for p in parts for g in p["sourceRange"]["sources"]]


def test_written_twice_one_chart_and_old_rows_cleared(spreadsheet: gspread.Spreadsheet, control: httpx.Client) -> None:
    # "007" stands for any cell text USER_ENTERED would change (a number, a date, a leading apostrophe)
    first = table(
        ("BAHODIR HUSANOV", 3, 1, 1, 0),
        ("DILNOZA KARIMOVA", 2, 0, 1, 1),
        ("0999 (not in Staff)", 1, 0, 0, 0),
        ("007", 0, 0, 0, 0),
    )
    used = write_dashboard(spreadsheet, first, note="first")
    assert used == 4  # metadata, tab + chart, clear, values
    tab = spreadsheet.worksheet("Dashboard")
    assert tab.get_all_values()[:7] == [
        ["KPI сотрудников — 2026-11", "", "", "", "", ""],
        ["first", "", "", "", "", ""],
        ["Сотрудник", "Заказов", "Отправлено", "Успешно", "Отказ", "Конверсия"],
        ["BAHODIR HUSANOV", "3", "1", "1", "0", "0.333"],
        ["DILNOZA KARIMOVA", "2", "0", "1", "1", "0.5"],
        ["0999 (not in Staff)", "1", "0", "0", "0", "0"],
        ["007", "0", "0", "0", "0", "0"],
    ]
    raw = control.get(CELLS, params={"sheet": "Dashboard"}).json()["rows"]
    assert raw[3][1:] == [3, 1, 1, 0, 0.333]  # RAW: numbers stay numbers
    [chart] = charts(control)
    assert chart["spec"]["basicChart"]["chartType"] == "COLUMN" and chart["spec"]["title"] == CHART_TITLE
    assert drawn_rows(chart) == [(2, 7)] * 3

    second = table(("BAHODIR HUSANOV", 4, 1, 2, 0))
    assert write_dashboard(spreadsheet, second) == 4  # metadata, chart ranges, clear, values
    assert tab.get_all_values() == [  # gspread pads rows to the widest one
        ["KPI сотрудников — 2026-11", "", "", "", "", ""],
        [""] * 6,
        ["Сотрудник", "Заказов", "Отправлено", "Успешно", "Отказ", "Конверсия"],
        ["BAHODIR HUSANOV", "4", "1", "2", "0", "0.5"],
    ]
    [again] = charts(control)
    assert again["chartId"] == chart["chartId"] and drawn_rows(again) == [(2, 4)] * 3
    assert write_dashboard(spreadsheet, second) == 3  # nothing to change in the chart


def test_copies_of_our_chart_are_removed_and_others_kept(
    spreadsheet: gspread.Spreadsheet, control: httpx.Client
) -> None:
    rows = table(("BAHODIR HUSANOV", 1, 0, 1, 0))
    write_dashboard(spreadsheet, rows)
    [ours] = charts(control)
    sheet_id = spreadsheet.worksheet("Dashboard").id
    anchor = {"overlayPosition": {"anchorCell": {"sheetId": sheet_id}}}
    pie = {"title": "an operator's own", "pieChart": {}}
    spreadsheet.batch_update(
        {
            "requests": [
                {"addChart": {"chart": {"spec": chart_spec(sheet_id, 1), "position": anchor}}},  # a retried add
                {"addChart": {"chart": {"spec": pie, "position": anchor}}},
            ]
        }
    )
    assert len(charts(control)) == 3
    write_dashboard(spreadsheet, rows)
    left = charts(control)
    assert [c["chartId"] for c in left] == [ours["chartId"], left[1]["chartId"]]
    assert left[1]["spec"]["title"] == "an operator's own"


def test_google_leaves_zero_fields_out_of_the_chart(spreadsheet: gspread.Spreadsheet, control: httpx.Client) -> None:
    """Real Google's JSON omits zero values (sheetId 0, startColumnIndex 0): our chart is still found."""
    body = {"spreadsheetId": SPREADSHEET_ID, "sheets": [{"title": "Dashboard", "sheetId": 0}, {"title": "Sheet1"}]}
    control.post("/_sandbox/sheets/spreadsheets", json=body).raise_for_status()
    spec = chart_spec(0, 1)
    for part in [spec["basicChart"]["domains"][0]["domain"], *(s["series"] for s in spec["basicChart"]["series"])]:
        grid = part["sourceRange"]["sources"][0]
        for key in [k for k, v in grid.items() if v == 0]:
            del grid[key]
    spreadsheet.batch_update(
        {
            "requests": [
                {"addChart": {"chart": {"spec": spec, "position": {"overlayPosition": {"anchorCell": {"sheetId": 0}}}}}}
            ]
        }
    )
    write_dashboard(spreadsheet, table(("BAHODIR HUSANOV", 1, 0, 1, 0)))
    assert len(charts(control)) == 1


def test_unknown_chart_is_refused_and_nothing_applied(spreadsheet: gspread.Spreadsheet, control: httpx.Client) -> None:
    write_dashboard(spreadsheet, table(("BAHODIR HUSANOV", 1, 0, 1, 0)))
    [ours] = charts(control)
    requests = [
        {"deleteEmbeddedObject": {"objectId": ours["chartId"]}},
        {"updateChartSpec": {"chartId": 424242, "spec": chart_spec(0, 1)}},
    ]
    with pytest.raises(gspread.exceptions.APIError) as refused:
        spreadsheet.batch_update({"requests": requests})
    assert refused.value.response.status_code == 400
    assert "requests[1].updateChartSpec" in str(refused.value)
    assert len(charts(control)) == 1  # a batch is all or nothing


def test_a_small_dashboard_tab_is_grown(spreadsheet: gspread.Spreadsheet, control: httpx.Client) -> None:
    body = {"spreadsheetId": SPREADSHEET_ID, "sheets": [{"title": "Sheet1"}, {"title": "Dashboard", "rowCount": 3}]}
    control.post("/_sandbox/sheets/spreadsheets", json=body).raise_for_status()
    write_dashboard(spreadsheet, table(("BAHODIR HUSANOV", 1, 0, 1, 0), ("DILNOZA KARIMOVA", 1, 0, 0, 1)))
    assert spreadsheet.worksheet("Dashboard").get_all_values()[4][0] == "DILNOZA KARIMOVA"
