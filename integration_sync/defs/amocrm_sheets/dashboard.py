"""The «Dashboard» tab for managers who live in the sheet: a title, the month's staff KPI table and one
column chart of orders and successful per employee, written through gspread.

A write costs one metadata read (the tab, its grid, our chart), at most one structure `batchUpdate`
(the tab when missing, the chart added once or its ranges moved, a grid too small grown), a clear of
the table's columns and one RAW values update. The chart is found again in the metadata by its data
(a column chart whose categories are this tab's column A), so a second write never adds a second one;
copies left by a retried `addChart` are deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gspread

from integration_sync.defs.amocrm_sheets.kpi import HEADERS, KpiTable
from integration_sync.defs.amocrm_sheets.layout import DASHBOARD_TAB, column_letter, quoted

HEADER_ROW = 3  # 1-based: title in A1, a note in A2, the table's header in A3
WIDTH = len(HEADERS)
LAST_LETTER = column_letter(WIDTH - 1)
CHART_TITLE = "Заказы и успешные по сотрудникам"
SERIES_COLUMNS = (HEADERS.index("Заказов"), HEADERS.index("Успешно"))
_GRID_KEYS = ("sheetId", "startRowIndex", "endRowIndex", "startColumnIndex", "endColumnIndex")

JsonDict = dict[str, Any]


def _grid(sheet_id: int, column: int, rows: int) -> JsonDict:
    return {
        "sheetId": sheet_id,
        "startRowIndex": HEADER_ROW - 1,
        "endRowIndex": HEADER_ROW + rows,
        "startColumnIndex": column,
        "endColumnIndex": column + 1,
    }


def chart_spec(sheet_id: int, rows: int) -> JsonDict:
    """A COLUMN chart: employees (column A) as categories, orders and successful as series."""

    def source(column: int) -> JsonDict:
        return {"sourceRange": {"sources": [_grid(sheet_id, column, rows)]}}

    return {
        "title": CHART_TITLE,
        "basicChart": {
            "chartType": "COLUMN",
            "legendPosition": "BOTTOM_LEGEND",
            "axis": [
                {"position": "BOTTOM_AXIS", "title": HEADERS[0]},
                {"position": "LEFT_AXIS", "title": HEADERS[1]},
            ],
            "domains": [{"domain": source(0)}],
            "series": [{"series": source(c), "targetAxis": "LEFT_AXIS"} for c in SERIES_COLUMNS],
            "headerCount": 1,
        },
    }


def _sources(spec: Mapping[str, Any]) -> tuple[tuple[int, ...], ...]:
    """The grid ranges a chart draws, in order; Google's JSON leaves out zero fields (sheetId 0 too)."""
    basic = spec.get("basicChart") or {}
    parts = [d.get("domain") or {} for d in basic.get("domains") or []]
    parts += [s.get("series") or {} for s in basic.get("series") or []]
    found: list[tuple[int, ...]] = []
    for part in parts:
        for grid in (part.get("sourceRange") or {}).get("sources") or []:
            found.append(tuple(int(grid.get(key, 0)) for key in _GRID_KEYS))
    return tuple(found)


def _is_ours(chart: Mapping[str, Any], sheet_id: int) -> bool:
    spec = chart.get("spec") or {}
    basic = spec.get("basicChart") or {}
    drawn = _sources(spec)
    return basic.get("chartType") == "COLUMN" and bool(drawn) and drawn[0][0] == sheet_id and drawn[0][3] == 0


def _chart_requests(sheet_id: int, charts: Sequence[Mapping[str, Any]], rows: int) -> list[JsonDict]:
    spec = chart_spec(sheet_id, rows)
    ours = [c for c in charts if _is_ours(c, sheet_id)]
    if not ours:
        anchor = {"sheetId": sheet_id, "rowIndex": HEADER_ROW - 1, "columnIndex": WIDTH + 1}
        position = {"overlayPosition": {"anchorCell": anchor, "widthPixels": 640, "heightPixels": 360}}
        return [{"addChart": {"chart": {"spec": spec, "position": position}}}]
    first = ours[0]
    requests: list[JsonDict] = []
    current = first.get("spec") or {}
    if _sources(current) != _sources(spec) or current.get("title") != CHART_TITLE:
        requests.append({"updateChartSpec": {"chartId": first["chartId"], "spec": spec}})
    requests += [{"deleteEmbeddedObject": {"objectId": extra["chartId"]}} for extra in ours[1:]]
    return requests


def _free_sheet_id(sheets: Sequence[Mapping[str, Any]]) -> int:
    taken = [int((s.get("properties") or {}).get("sheetId", 0)) for s in sheets]
    return max(taken, default=0) + 1


def dashboard_values(table: KpiTable, note: str = "") -> list[list[str | int | float]]:
    """The cells from A1: the title, a note, the header and one row per employee."""
    title = f"KPI сотрудников — {table.month}"
    return [[title], [note], list(HEADERS), *(row.cells() for row in table.rows)]


def write_dashboard(spreadsheet: gspread.Spreadsheet, table: KpiTable, note: str = "") -> int:
    """Write the month's table and chart to the «Dashboard» tab (created when missing); returns the
    number of Sheets API requests used."""
    used = 1
    sheets: list[JsonDict] = list(spreadsheet.fetch_sheet_metadata().get("sheets") or [])
    tab = next((s for s in sheets if (s.get("properties") or {}).get("title") == DASHBOARD_TAB), None)
    values = dashboard_values(table, note)
    structure: list[JsonDict] = []
    if tab is None:
        sheet_id = _free_sheet_id(sheets)
        grid = {"rowCount": max(200, len(values)), "columnCount": 20}
        properties = {"sheetId": sheet_id, "title": DASHBOARD_TAB, "gridProperties": grid}
        structure.append({"addSheet": {"properties": properties}})
        charts: list[JsonDict] = []
    else:
        props = tab.get("properties") or {}
        sheet_id = int(props.get("sheetId", 0))
        charts = list(tab.get("charts") or [])
        grid = props.get("gridProperties") or {}
        if int(grid.get("rowCount", 0)) < len(values) or int(grid.get("columnCount", 0)) < WIDTH:
            bigger = {"rowCount": max(int(grid.get("rowCount", 0)), len(values) + 50)}
            bigger["columnCount"] = max(int(grid.get("columnCount", 0)), WIDTH)
            fields = "gridProperties.rowCount,gridProperties.columnCount"
            structure.append(
                {
                    "updateSheetProperties": {
                        "properties": {"sheetId": sheet_id, "gridProperties": bigger},
                        "fields": fields,
                    }
                }
            )
    structure += _chart_requests(sheet_id, charts, len(table.rows))
    if structure:
        spreadsheet.batch_update({"requests": structure})
        used += 1
    spreadsheet.values_clear(f"{quoted(DASHBOARD_TAB)}!A:{LAST_LETTER}")
    spreadsheet.values_update(
        f"{quoted(DASHBOARD_TAB)}!A1", params={"valueInputOption": "RAW"}, body={"values": values}
    )
    return used + 2
