"""Data model of the Sheets emulator (tabs, cells, Google's error envelope) and the structural
requests of ``spreadsheets.batchUpdate`` (addSheet, duplicateSheet, deleteSheet, updateSheetProperties,
setDataValidation, repeatCell, updateCells, addChart, updateChartSpec, deleteEmbeddedObject,
createDeveloperMetadata on a sheet)."""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response

from integration_sync.sandbox.core import JsonDict, JsonResponse
from integration_sync.sandbox.sheets_ranges import A1Range

QUOTA_PER_MINUTE = 60
_NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_PROPERTY_PATHS = ("title", "index", "hidden", "tabColor", "rightToLeft", "gridProperties")


def google_error(code: int, message: str, status: str, details: list[JsonDict] | None = None) -> Response:
    body: JsonDict = {"code": code, "message": message, "status": status}
    if details:
        body["details"] = details
    return JsonResponse({"error": body}, status_code=code)


def quota_error(kind: str) -> Response:
    word = "Read" if kind == "read" else "Write"
    return google_error(
        429,
        f"Quota exceeded for quota metric '{word} requests' and limit '{word} requests per minute per user' "
        "of service 'sheets.googleapis.com' for consumer 'project_number:100200300400'.",
        "RESOURCE_EXHAUSTED",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com",
                "metadata": {
                    "quota_location": "global",
                    "quota_metric": f"sheets.googleapis.com/{kind}_requests",
                    "quota_limit": f"{word}RequestsPerMinutePerUser",
                    "quota_limit_value": str(QUOTA_PER_MINUTE),
                    "consumer": "projects/100200300400",
                    "service": "sheets.googleapis.com",
                },
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Request a higher quota limit.",
                        "url": "https://cloud.google.com/docs/quotas/help/request_increase",
                    }
                ],
            },
        ],
    )


def auth_error(reason: str, message: str) -> Response:
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": "sheets.googleapis.com", "method": "google.apps.sheets.v4.SpreadsheetsService"},
    }
    return google_error(401, message, "UNAUTHENTICATED", [info])


class ApiFailure(Exception):
    """A 4xx the handler turns into Google's envelope."""

    def __init__(self, code: int, message: str, status: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def shown(value: Any) -> str:
    """A stored value as FORMATTED_VALUE renders it."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def entered(value: Any, user_entered: bool) -> Any:
    """What a cell stores for a value sent with RAW or USER_ENTERED."""
    if not user_entered or not isinstance(value, str):
        return value
    if value.startswith("'"):
        return value[1:]
    if value.upper() in ("TRUE", "FALSE"):
        return value.upper() == "TRUE"
    if _NUMBER_RE.match(value.strip()):
        number = float(value)
        return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
    return value


@dataclass
class Tab:
    properties: JsonDict
    cells: dict[tuple[int, int], Any] = field(default_factory=dict)
    validations: dict[tuple[int, int], JsonDict] = field(default_factory=dict)
    charts: list[JsonDict] = field(default_factory=list)
    formats: dict[tuple[int, int], JsonDict] = field(default_factory=dict)  # userEnteredFormat, as set
    metadata: list[JsonDict] = field(default_factory=list)  # developer metadata located on the sheet

    @property
    def title(self) -> str:
        return str(self.properties["title"])

    @property
    def rows(self) -> int:
        return int(self.properties["gridProperties"]["rowCount"])

    @property
    def cols(self) -> int:
        return int(self.properties["gridProperties"]["columnCount"])

    def last_row(self, col0: int, col1: int, row0: int = 0) -> int:
        """Index after the last row holding a value in columns ``col0..col1`` (``row0`` when none)."""
        used = [r for (r, c), v in self.cells.items() if col0 <= c < col1 and r >= row0 and v != ""]
        return max(used) + 1 if used else row0

    def set(self, row: int, col: int, value: Any) -> None:
        if value == "" or value is None:
            self.cells.pop((row, col), None)
        else:
            self.cells[(row, col)] = value


@dataclass
class Book:
    spreadsheet_id: str
    title: str
    tabs: list[Tab] = field(default_factory=list)

    def tab(self, title: str | None) -> Tab | None:
        if title is None:
            return self.tabs[0] if self.tabs else None
        return next((t for t in self.tabs if t.title == title), None)

    def by_id(self, sheet_id: Any) -> Tab | None:
        return next((t for t in self.tabs if t.properties["sheetId"] == sheet_id), None)

    def reindex(self) -> None:
        self.tabs.sort(key=lambda t: float(t.properties["index"]))
        for i, tab in enumerate(self.tabs):
            tab.properties["index"] = i


_OTHER_CELL_FIELDS = ("note", "dataValidation", "textFormatRuns", "hyperlink", "pivotTable", "dataSourceTable")


def _mask_paths(fields: str) -> list[str]:
    """A FieldMask as dotted paths: ``a(b,c.d),e`` is ``a.b, a.c.d, e``."""
    paths: list[str] = []
    depth, part = 0, ""
    for char in fields + ",":
        if char == "," and depth == 0:
            name, _, inner = part.strip().partition("(")
            if inner:
                paths += [f"{name}.{sub}" for sub in _mask_paths(inner.rstrip(")"))]
            elif name:
                paths.append(name)
            part = ""
            continue
        depth += (char == "(") - (char == ")")
        part += char
    return paths


def grid_of(tab: Tab, rng: A1Range) -> tuple[int, int, int, int]:
    """The range clamped to the tab's grid (reads)."""
    row1 = tab.rows if rng.row1 is None else min(rng.row1, tab.rows)
    col1 = tab.cols if rng.col1 is None else min(rng.col1, tab.cols)
    return rng.row0, max(row1, rng.row0), rng.col0, max(col1, rng.col0)


class StructureRequests:
    """The ``_req_<kind>`` handlers of ``spreadsheets.batchUpdate``; each edits a working copy of the book."""

    _rng: random.Random

    def _new_sheet_id(self, book: Book | None) -> int:
        taken = {t.properties["sheetId"] for t in book.tabs} if book else set()
        while (candidate := self._rng.randrange(1, 2**31 - 1)) in taken:
            pass
        return candidate

    def _tab_of(self, book: Book, sheet_id: Any) -> Tab:
        tab = book.by_id(sheet_id if sheet_id is not None else 0)
        if tab is None:
            raise ApiFailure(400, f"No grid with id: {sheet_id}")
        return tab

    def _req_addSheet(self, book: Book, spec: JsonDict) -> JsonDict:
        given = spec.get("properties") or {}
        title = given.get("title") or f"Sheet{len(book.tabs) + 1}"
        if book.tab(title) is not None:
            raise ApiFailure(400, f'A sheet with the name "{title}" already exists. Please enter another name.')
        grid = given.get("gridProperties") or {}
        if given.get("sheetId") is not None and book.by_id(given["sheetId"]) is not None:
            raise ApiFailure(400, f"A sheet with the id {given['sheetId']} already exists.")
        sized: JsonDict = {"rowCount": grid.get("rowCount", 1000), "columnCount": grid.get("columnCount", 26)}
        sized.update({k: grid[k] for k in ("frozenRowCount", "frozenColumnCount") if grid.get(k)})
        props = {
            "sheetId": given.get("sheetId") if given.get("sheetId") is not None else self._new_sheet_id(book),
            "title": title,
            "index": given.get("index") if given.get("index") is not None else len(book.tabs),
            "sheetType": given.get("sheetType") or "GRID",
            "gridProperties": sized,
        }
        for tab in book.tabs:
            if tab.properties["index"] >= props["index"]:
                tab.properties["index"] += 1
        book.tabs.append(Tab(props))
        book.reindex()
        return {"addSheet": {"properties": copy.deepcopy(props)}}

    def _req_duplicateSheet(self, book: Book, spec: JsonDict) -> JsonDict:
        source = self._tab_of(book, spec.get("sourceSheetId"))
        title = spec.get("newSheetName") or f"Copy of {source.title}"
        if book.tab(title) is not None:
            raise ApiFailure(400, f'A sheet with the name "{title}" already exists. Please enter another name.')
        index = spec.get("insertSheetIndex")
        props = copy.deepcopy(source.properties)
        props.update(
            sheetId=spec.get("newSheetId") if spec.get("newSheetId") is not None else self._new_sheet_id(book),
            title=title,
            index=index if index is not None else source.properties["index"] + 1,
        )
        for tab in book.tabs:
            if tab.properties["index"] >= props["index"]:
                tab.properties["index"] += 1
        book.tabs.append(
            Tab(props, dict(source.cells), copy.deepcopy(source.validations), formats=copy.deepcopy(source.formats))
        )
        book.reindex()
        return {"duplicateSheet": {"properties": copy.deepcopy(props)}}

    def _req_deleteSheet(self, book: Book, spec: JsonDict) -> JsonDict:
        tab = self._tab_of(book, spec.get("sheetId"))
        if len(book.tabs) == 1:
            raise ApiFailure(400, "You can't remove all the sheets in a document.")
        book.tabs.remove(tab)
        book.reindex()
        return {}

    def _req_updateSheetProperties(self, book: Book, spec: JsonDict) -> JsonDict:
        given = spec.get("properties") or {}
        tab = self._tab_of(book, given.get("sheetId"))
        fields = str(spec.get("fields") or "")
        if not fields:
            raise ApiFailure(400, "At least one field must be updated, but 'fields' is empty.")
        paths = list(given) if fields == "*" else [f.strip() for f in fields.split(",")]
        for path in paths:
            head, _, sub = path.partition(".")
            if head == "sheetId":
                continue
            if head not in _PROPERTY_PATHS:
                raise ApiFailure(400, f"Invalid field mask path: {path}")
            if head == "title" and given.get("title") != tab.title and book.tab(str(given.get("title"))):
                raise ApiFailure(400, f'A sheet with the name "{given.get("title")}" already exists.')
            if sub:
                tab.properties.setdefault(head, {})[sub] = (given.get(head) or {}).get(sub)
            elif head == "index":
                tab.properties["index"] = given.get("index", 0) - 0.5  # before the tab now at that index
            else:
                tab.properties[head] = given.get(head)
        if all(t.properties.get("hidden") for t in book.tabs):
            raise ApiFailure(400, "You can't hide all the sheets in a document.")
        book.reindex()
        return {}

    def _cells(self, book: Book, grid: Any) -> tuple[Tab, list[tuple[int, int]]]:
        grid = grid or {}
        tab = self._tab_of(book, grid.get("sheetId"))
        row1 = grid.get("endRowIndex", tab.rows)
        col1 = grid.get("endColumnIndex", tab.cols)
        if row1 > tab.rows or col1 > tab.cols:
            raise ApiFailure(400, f"Range exceeds grid limits. Max rows: {tab.rows}, max columns: {tab.cols}")
        rows = range(grid.get("startRowIndex", 0), row1)
        return tab, [(r, c) for r in rows for c in range(grid.get("startColumnIndex", 0), col1)]

    def _req_setDataValidation(self, book: Book, spec: JsonDict) -> JsonDict:
        tab, cells = self._cells(book, spec.get("range"))
        rule = spec.get("rule")
        for key in cells:
            if rule:
                tab.validations[key] = copy.deepcopy(rule)
            else:
                tab.validations.pop(key, None)
        return {}

    def _req_repeatCell(self, book: Book, spec: JsonDict) -> JsonDict:
        tab, cells = self._cells(book, spec.get("range"))
        if not spec.get("fields"):
            raise ApiFailure(400, "At least one field must be updated, but 'fields' is empty.")
        fields = str(spec["fields"])
        cell = spec.get("cell") or {}
        for r, c in cells:
            self._put_cell(tab, r, c, cell, fields)
        return {}

    @staticmethod
    def _put_cell(tab: Tab, row: int, col: int, cell: JsonDict, fields: str) -> None:
        """A CellData under a field mask: masked fields absent from ``cell`` are cleared, as Google does.
        Formats are kept (not rendered: values come back as formatted strings anyway)."""
        for path in _mask_paths(fields):
            head, _, sub = path.partition(".")
            if head == "*":
                StructureRequests._put_cell(tab, row, col, cell, "userEnteredValue,userEnteredFormat")
            elif head == "userEnteredValue":
                value = cell.get("userEnteredValue") or {}
                tab.set(row, col, next(iter(value.values()), "") if value else "")
            elif head == "userEnteredFormat":
                stored, given = tab.formats.setdefault((row, col), {}), cell.get("userEnteredFormat") or {}
                *parents, leaf = sub.split(".") if sub else [""]
                for name in parents:
                    stored, given = stored.setdefault(name, {}), given.get(name) or {}
                if not leaf:
                    tab.formats[(row, col)] = copy.deepcopy(given)
                elif leaf in given:
                    stored[leaf] = copy.deepcopy(given[leaf])
                else:
                    stored.pop(leaf, None)
            elif head not in _OTHER_CELL_FIELDS:
                raise ApiFailure(400, f"Invalid field mask path: {path}")

    def _req_updateCells(self, book: Book, spec: JsonDict) -> JsonDict:
        if not spec.get("fields"):
            raise ApiFailure(400, "At least one field must be updated, but 'fields' is empty.")
        if ("start" in spec) == ("range" in spec):
            raise ApiFailure(400, "Exactly one of start or range must be set.")
        rows = spec.get("rows") or []
        if "range" in spec:
            tab, cells = self._cells(book, spec["range"])
            area = set(cells)
            row0 = min((r for r, _ in cells), default=0)
            col0 = min((c for _, c in cells), default=0)
        else:
            start = spec["start"] or {}
            tab = self._tab_of(book, start.get("sheetId"))
            row0, col0 = int(start.get("rowIndex", 0)), int(start.get("columnIndex", 0))
            width = max((len(r.get("values") or []) for r in rows), default=0)
            if row0 + len(rows) > tab.rows or col0 + width > tab.cols:
                raise ApiFailure(400, f"Range exceeds grid limits. Max rows: {tab.rows}, max columns: {tab.cols}")
            area = {(row0 + r, col0 + c) for r in range(len(rows)) for c in range(width)}
        for r, row in enumerate(rows):
            for c, cell in enumerate(row.get("values") or []):
                if (row0 + r, col0 + c) in area:
                    self._put_cell(tab, row0 + r, col0 + c, cell or {}, str(spec["fields"]))
        return {}

    def _req_createDeveloperMetadata(self, book: Book, spec: JsonDict) -> JsonDict:
        given = copy.deepcopy(spec.get("developerMetadata") or {})
        if not given.get("metadataKey"):
            raise ApiFailure(400, "Developer metadata must always have a key specified.")
        if given.get("visibility") not in ("DOCUMENT", "PROJECT"):
            raise ApiFailure(400, "Developer metadata must always have a visibility specified.")
        location = given.get("location") or {}
        if "sheetId" not in location:  # spreadsheet and row/column locations exist, and are not emulated
            raise ApiFailure(400, "developerMetadata.location: only a sheetId location is emulated")
        tab = self._tab_of(book, location["sheetId"])
        taken = {m["metadataId"] for t in book.tabs for m in t.metadata}
        metadata_id = given.get("metadataId")
        if metadata_id is not None and (int(metadata_id) <= 0 or metadata_id in taken):
            raise ApiFailure(400, f"Invalid metadataId: {metadata_id}")
        while metadata_id is None or metadata_id in taken:
            metadata_id = self._rng.randrange(1, 2**31 - 1)
        given.update(metadataId=metadata_id, location={"locationType": "SHEET", "sheetId": tab.properties["sheetId"]})
        tab.metadata.append(given)
        return {"createDeveloperMetadata": {"developerMetadata": copy.deepcopy(given)}}

    def _req_addChart(self, book: Book, spec: JsonDict) -> JsonDict:
        chart = copy.deepcopy(spec.get("chart") or {})
        if not chart.get("spec"):
            raise ApiFailure(400, "chart.spec is required")
        anchor = (((chart.get("position") or {}).get("overlayPosition") or {}).get("anchorCell") or {}).get("sheetId")
        tab = self._tab_of(book, anchor)
        chart.setdefault("chartId", self._new_sheet_id(book))
        tab.charts.append(chart)
        return {"addChart": {"chart": copy.deepcopy(chart)}}

    def _chart(self, book: Book, chart_id: Any) -> tuple[Tab, JsonDict] | None:
        for tab in book.tabs:
            for chart in tab.charts:
                if chart.get("chartId") == chart_id:
                    return tab, chart
        return None

    def _req_updateChartSpec(self, book: Book, spec: JsonDict) -> JsonDict:
        if not spec.get("spec"):
            raise ApiFailure(400, "spec is required")
        found = self._chart(book, spec.get("chartId"))
        if found is None:
            raise ApiFailure(400, f"No chart with id: {spec.get('chartId')}")
        found[1]["spec"] = copy.deepcopy(spec["spec"])  # the whole spec is replaced, as documented
        return {}

    def _req_deleteEmbeddedObject(self, book: Book, spec: JsonDict) -> JsonDict:
        found = self._chart(book, spec.get("objectId"))
        if found is None:
            raise ApiFailure(400, f"No embedded object with id: {spec.get('objectId')}")
        found[0].charts.remove(found[1])
        return {}

    def _req_updateDeveloperMetadata(self, book: Book, spec: JsonDict) -> JsonDict:
        fields = [f.strip() for f in str(spec.get("fields") or "").split(",") if f.strip()]
        if not fields:
            raise ApiFailure(400, "At least one field must be updated, but 'fields' is empty.")
        if not set(fields) <= {"metadataKey", "metadataValue", "visibility"}:  # moving a location: not emulated
            raise ApiFailure(400, f"Invalid field mask path: {','.join(fields)}")
        filters = spec.get("dataFilters") or []
        if not filters:
            raise ApiFailure(400, "At least one data filter must be specified.")
        given = spec.get("developerMetadata") or {}
        matched: list[JsonDict] = []
        for data_filter in filters:
            lookup = (data_filter or {}).get("developerMetadataLookup")
            if not isinstance(lookup, dict) or not lookup:
                raise ApiFailure(400, "dataFilters: only a developerMetadataLookup is emulated")
            sheet_id = ((lookup.get("metadataLocation") or {}) or {}).get("sheetId")
            for tab in book.tabs:
                for item in tab.metadata:
                    wanted = [(k, lookup[k]) for k in ("metadataId", "metadataKey", "metadataValue") if k in lookup]
                    located = sheet_id in (None, tab.properties["sheetId"])
                    if located and all(item.get(k) == v for k, v in wanted) and item not in matched:
                        matched.append(item)
        for item in matched:
            for name in fields:
                item[name] = given.get(name)
        return {"updateDeveloperMetadata": {"developerMetadata": copy.deepcopy(matched)}}
