"""Data model of the Sheets emulator (tabs, cells, Google's error envelope) and the structural
requests of ``spreadsheets.batchUpdate`` (addSheet, duplicateSheet, deleteSheet, updateSheetProperties,
setDataValidation, repeatCell, addChart)."""

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
        props = {
            "sheetId": given.get("sheetId") if given.get("sheetId") is not None else self._new_sheet_id(book),
            "title": title,
            "index": given.get("index") if given.get("index") is not None else len(book.tabs),
            "sheetType": given.get("sheetType") or "GRID",
            "gridProperties": {"rowCount": grid.get("rowCount", 1000), "columnCount": grid.get("columnCount", 26)},
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
        book.tabs.append(Tab(props, dict(source.cells), copy.deepcopy(source.validations)))
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
        value = ((spec.get("cell") or {}).get("userEnteredValue") or {}) if "userEnteredValue" in fields else None
        if value is not None:
            stored = next(iter(value.values()), "") if value else ""
            for r, c in cells:
                tab.set(r, c, stored)
        return {}  # formats are accepted and not rendered: values come back as formatted strings anyway

    def _req_addChart(self, book: Book, spec: JsonDict) -> JsonDict:
        chart = copy.deepcopy(spec.get("chart") or {})
        if not chart.get("spec"):
            raise ApiFailure(400, "chart.spec is required")
        anchor = (((chart.get("position") or {}).get("overlayPosition") or {}).get("anchorCell") or {}).get("sheetId")
        tab = self._tab_of(book, anchor)
        chart.setdefault("chartId", self._new_sheet_id(book))
        tab.charts.append(chart)
        return {"addChart": {"chart": copy.deepcopy(chart)}}
