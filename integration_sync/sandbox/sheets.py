"""The Google Sheets API v4 emulator (``/sheets/v4/spreadsheets/...``): every call gspread makes here.

- ``GET {id}`` (metadata); ``GET {id}/values/{range}``, ``GET {id}/values:batchGet``; ``PUT
  {id}/values/{range}`` (``valueInputOption`` RAW | USER_ENTERED); ``POST {id}/values/{range}:append``;
  ``POST {id}/values:batchUpdate``; ``POST {id}/values/{range}:clear``; ``POST {id}:batchUpdate`` with
  addSheet, duplicateSheet, deleteSheet, updateSheetProperties, setDataValidation, repeatCell, updateCells,
  addChart, updateChartSpec, deleteEmbeddedObject (charts listed in the metadata's ``sheets[].charts``),
  create/updateDeveloperMetadata (sheet locations; listed in the metadata's ``sheets[].developerMetadata``).
- Cells are kept as entered; read back as formatted strings (``12.0`` -> ``"12"``, ``True`` -> ``"TRUE"``);
  trailing empty cells and rows trimmed, ``""`` inside a row, ``[]`` for an empty row, no ``values`` key
  for an empty range. USER_ENTERED turns ``"0134"`` into the number 134; formulas are kept as text.
- ``Authorization: Bearer <SHEETS_TOKEN>`` required (401 envelope otherwise); 60 read (GET) and 60 write
  requests per sliding minute per token, then 429 RESOURCE_EXHAUSTED with an ErrorInfo, no Retry-After.
- Faults (``POST /_sandbox/faults {"sheets": {...}}``): error bursts (429/5xx), latency, and
  ``commit_then_drop`` on writes (the write is applied, its answer lost mid-body).
- Errors in Google's envelope ``{"error": {"code", "message", "status"}}``.

Control (``/_sandbox/sheets``): ``GET /spreadsheets``; ``POST /spreadsheets`` (seed one: ``{"spreadsheetId"?,
"title"?, "sheets": [{"title", "rows"?, "rowCount"?, "columnCount"?}]}``); ``GET /spreadsheets/{id}/cells?sheet=``
(raw cells, validations, formats, charts); ``POST /spreadsheets/{id}/edit`` (an operator's edit: ``{"sheet", "op":
"set", "cell": "K5", "value", "raw"?}`` | ``{"op": "delete_row", "row": 5}`` | ``{"op": "insert_row", "row",
"values"}``).
"""

from __future__ import annotations

import copy
import json
import random
from collections import deque
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from integration_sync.sandbox.core import Clock, DroppedResponse, JsonDict, JsonResponse, Service, read_json
from integration_sync.sandbox.sheets_model import (
    QUOTA_PER_MINUTE,
    ApiFailure,
    Book,
    StructureRequests,
    Tab,
    auth_error,
    entered,
    google_error,
    grid_of,
    quota_error,
    shown,
)
from integration_sync.sandbox.sheets_ranges import A1Range, RangeError, col_letter, parse_a1, render

SHEETS_TOKEN = "ya29.sandbox-sheets-token-only-for-the-emulator"  # noqa: S105 - the emulator's own
SPREADSHEET_ID = "1SbxAmoSheetsSync0000000000000000000000000000"
WORKSHEET = "Sheet1"
#: the seed's row: a lead id column, the row content and «Заказ №»
SEED_HEADERS = [
    "ID сделки",
    "Клиент",
    "Телефон",
    "Компания",
    "Продукт",
    "Дата заказа",
    "Регион",
    "Код сотрудника",
    "Ответственный",
    "Статус",
    "Заказ №",
]
#: the Staff tab as operators keep it: leading zeros, a code typed without them, a blank line, a stray space
STAFF_ROWS: list[list[Any]] = [
    ["№", "Код сотрудника", "Сотрудник", "Отдел"],
    [1, "0134", "BAHODIR HUSANOV", "A"],
    [2, "0144", "ELYORBEK ISOQULOV", "A"],
    [3, 152, "DILNOZA KARIMOVA", "B"],
    [],
    [4, "0161 ", "SARDOR TOSHMATOV"],
]


def sheets_env(base_url: str) -> dict[str, str]:
    """Settings pointing a Sheets client at the emulator of the sandbox at ``base_url``."""
    return {
        "GOOGLE_SHEETS_API_URL": f"{base_url.rstrip('/')}/sheets",
        "GOOGLE_SHEETS_TOKEN": SHEETS_TOKEN,
        "GOOGLE_SHEET_ID": SPREADSHEET_ID,
        "GOOGLE_WORKSHEET_NAME": WORKSHEET,
    }


class SheetsService(StructureRequests, Service):
    """Spreadsheets by id, one token, read and write quotas per sliding minute."""

    name = "sheets"

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.books: dict[str, Book] = {}
        self.recent: dict[str, deque[float]] = {}
        self._rng = random.Random(0)

    # -- lifecycle -------------------------------------------------------------------------------
    def reset(self, seed: int, volumes: Mapping[str, Any]) -> None:
        with self.lock:
            self._rng = random.Random(seed)
            self.books = {}
            self.recent = {"read": deque(), "write": deque()}
            self.seed_book(
                {
                    "spreadsheetId": SPREADSHEET_ID,
                    "title": "amoCRM leads",
                    "sheets": [
                        {"title": WORKSHEET, "rows": [SEED_HEADERS]},
                        {"title": "Staff", "rows": STAFF_ROWS},
                    ],
                }
            )
            self.reset_counters()
        self.configure_faults(None)

    def entities(self) -> dict[str, int]:
        cells = sum(len(t.cells) for b in self.books.values() for t in b.tabs)
        return {"spreadsheets": len(self.books), "cells": cells}

    def seed_book(self, spec: Mapping[str, Any]) -> Book:
        """Create or replace a spreadsheet; rows are stored as typed (RAW)."""
        sheet_specs = spec.get("sheets") or [{"title": WORKSHEET}]
        book = Book(str(spec.get("spreadsheetId") or SPREADSHEET_ID), str(spec.get("title") or "Sandbox sheet"))
        for i, sheet in enumerate(sheet_specs):
            rows = list(sheet.get("rows") or [])
            props = {
                "sheetId": int(sheet["sheetId"]) if "sheetId" in sheet else (0 if i == 0 else self._new_sheet_id(book)),
                "title": str(sheet.get("title") or f"Sheet{i + 1}"),
                "index": i,
                "sheetType": "GRID",
                "gridProperties": {
                    "rowCount": int(sheet.get("rowCount") or max(1000, len(rows))),
                    "columnCount": int(sheet.get("columnCount") or max([26, *(len(r) for r in rows)])),
                },
            }
            tab = Tab(props)
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    tab.set(r, c, value)
            book.tabs.append(tab)
        with self.lock:
            self.books[book.spreadsheet_id] = book
        return book

    def fault_response(self, status: int, body: Any, method: str) -> Response:
        if body is not None:
            return super().fault_response(status, body, method)
        if status == 429:
            return quota_error("write" if method in ("post", "put") else "read")
        if status == 503:
            return google_error(503, "The service is currently unavailable.", "UNAVAILABLE")
        if status >= 500:
            return google_error(status, "Internal error encountered.", "INTERNAL")
        return google_error(status, "Request contains an invalid argument.", "INVALID_ARGUMENT")

    # -- routes ----------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        return [Route("/v4/spreadsheets/{rest:path}", self.handle, methods=["GET", "POST", "PUT"])]

    def _quota_ok(self, kind: str) -> bool:
        now = self.clock.monotonic()
        with self.lock:
            window = self.recent.setdefault(kind, deque())
            while window and window[0] <= now - 60.0:
                window.popleft()
            if len(window) >= QUOTA_PER_MINUTE:
                return False
            window.append(now)
            return True

    async def handle(self, request: Request) -> Response:
        method = request.method.lower()
        rest = str(request.path_params["rest"])
        self.count_request(method)
        header = request.headers.get("authorization", "")
        if not header:
            return auth_error(
                "CREDENTIALS_MISSING",
                "Request is missing required authentication credential. Expected OAuth 2 access token, login "
                "cookie or other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
            )
        if header != f"Bearer {SHEETS_TOKEN}":
            return auth_error(
                "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
            )
        kind = "read" if method == "get" else "write"
        if not self._quota_ok(kind):
            self.count_throttled()
            return quota_error(kind)
        fault = await self.apply_faults(method)
        if fault is not None:
            return fault
        try:
            body = await read_json(request) if method != "get" else None
        except ValueError:
            return google_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        try:
            with self.lock:
                answer = self._dispatch(method, rest, request, body)
            if method != "get" and self.faults.take_commit_then_drop(method):
                return DroppedResponse(json.dumps(answer).encode(), status_code=200, hold_s=self.faults.drop_hold_s)
            return JsonResponse(answer)
        except ApiFailure as exc:
            return google_error(exc.code, exc.message, exc.status)

    def _dispatch(self, method: str, rest: str, request: Request, body: Any) -> JsonDict:
        sid, _, tail = rest.partition("/")
        action = ""
        if not tail and ":" in sid:
            sid, _, action = sid.partition(":")
        book = self.books.get(sid)
        if book is None:
            raise ApiFailure(404, "Requested entity was not found.", "NOT_FOUND")
        params = request.query_params
        if not tail:
            if method == "get" and not action:
                return self._metadata(book)
            if method == "post" and action == "batchUpdate":
                return self._batch_update(book, body)
        elif tail == "values:batchGet" and method == "get":
            ranges = params.getlist("ranges")
            return {"spreadsheetId": book.spreadsheet_id, "valueRanges": [self._get(book, r, params) for r in ranges]}
        elif tail == "values:batchUpdate" and method == "post":
            return self._values_batch_update(book, body)
        elif tail.startswith("values/"):
            target = tail[len("values/") :]
            if method == "get":
                return self._get(book, target, params)
            if method == "put":
                return self._update(book, target, params.get("valueInputOption"), body)
            if method == "post" and target.endswith(":append"):
                return self._append(book, target[: -len(":append")], params, body)
            if method == "post" and target.endswith(":clear"):
                return self._clear(book, target[: -len(":clear")])
        raise ApiFailure(404, "Requested entity was not found.", "NOT_FOUND")

    # -- values ----------------------------------------------------------------------------------
    def _resolve(self, book: Book, text: str) -> tuple[Tab, A1Range]:
        try:
            rng = parse_a1(text)
        except RangeError:
            raise ApiFailure(400, f"Unable to parse range: {text}") from None
        tab = book.tab(rng.title)
        if tab is None:
            raise ApiFailure(400, f"Unable to parse range: {text}")
        return tab, rng

    def _get(self, book: Book, text: str, params: Mapping[str, str]) -> JsonDict:
        tab, rng = self._resolve(book, text)
        row0, row1, col0, col1 = grid_of(tab, rng)
        render_option = params.get("valueRenderOption") or "FORMATTED_VALUE"
        rows: list[list[Any]] = []
        for r in range(row0, row1):
            row = [tab.cells.get((r, c), "") for c in range(col0, col1)]
            while row and row[-1] == "":
                row.pop()
            rows.append([v if render_option != "FORMATTED_VALUE" else shown(v) for v in row])
        while rows and not rows[-1]:
            rows.pop()
        dimension = params.get("majorDimension") or "ROWS"
        if dimension == "COLUMNS" and rows:
            width = max(len(r) for r in rows)
            cols = [[r[c] if c < len(r) else "" for r in rows] for c in range(width)]
            rows = []
            for col in cols:
                while col and col[-1] == "":
                    col.pop()
                rows.append(col)
        answer: JsonDict = {"range": render(tab.title, row0, max(row1, row0 + 1), col0, max(col1, col0 + 1))}
        answer["majorDimension"] = dimension
        if rows:
            answer["values"] = rows
        return answer

    def _write(
        self, tab: Tab, rng: A1Range, values: Any, user_entered: bool, text: str, grow: bool = False
    ) -> JsonDict:
        if not isinstance(values, list) or not all(isinstance(row, list) for row in values):
            shown = json.dumps(values, ensure_ascii=False)  # Google quotes the value as JSON: "X"
            message = f"Invalid value at 'data.values' (type.googleapis.com/google.protobuf.ListValue), {shown}"
            raise ApiFailure(400, message)
        height = len(values)
        width = max((len(row) for row in values), default=0)
        if (rng.row1, rng.col1) == (rng.row0 + 1, rng.col0 + 1):  # one cell: where the values start
            rng = A1Range(rng.title, rng.row0, None, rng.col0, None)
        if rng.row1 is not None and rng.row0 + height > rng.row1 and not grow:
            raise ApiFailure(
                400, f"Requested writing within range [{text}], but tried writing to row [{rng.row0 + height}]"
            )
        if rng.col1 is not None and rng.col0 + width > rng.col1:
            raise ApiFailure(
                400,
                f"Requested writing within range [{text}], but tried writing to column "
                f"[{col_letter(rng.col0 + width - 1)}]",
            )
        if rng.col0 + width > tab.cols or (rng.row0 + height > tab.rows and not grow):
            raise ApiFailure(
                400,
                f"Range ({text}) exceeds grid limits. Max rows: {tab.rows}, max columns: {tab.cols}",
            )
        if grow and rng.row0 + height > tab.rows:
            tab.properties["gridProperties"]["rowCount"] = rng.row0 + height
        for r, row in enumerate(values):
            for c, value in enumerate(row):
                if value is not None:
                    tab.set(rng.row0 + r, rng.col0 + c, entered(value, user_entered))
        if height == 0 or width == 0:
            return {"updatedRange": render(tab.title, rng.row0, rng.row0 + 1, rng.col0, rng.col0 + 1)}
        return {
            "updatedRange": render(tab.title, rng.row0, rng.row0 + height, rng.col0, rng.col0 + width),
            "updatedRows": height,
            "updatedColumns": width,
            "updatedCells": sum(len(row) for row in values),
        }

    @staticmethod
    def _input_option(value: Any) -> bool:
        if value in (None, ""):
            raise ApiFailure(400, "'valueInputOption' is required but not specified")
        if value not in ("RAW", "USER_ENTERED"):
            raise ApiFailure(400, f"Invalid value at 'value_input_option' (TYPE_ENUM), \"{value}\"")
        return bool(value == "USER_ENTERED")

    def _update(self, book: Book, text: str, option: Any, body: Any) -> JsonDict:
        user_entered = self._input_option(option)
        tab, rng = self._resolve(book, text)
        if not isinstance(body, dict):
            raise ApiFailure(400, "Invalid JSON payload received.")
        if body.get("majorDimension") not in (None, "ROWS"):
            raise ApiFailure(400, "majorDimension COLUMNS is not emulated")
        result = self._write(tab, rng, body.get("values", []), user_entered, text)
        return {"spreadsheetId": book.spreadsheet_id, **result}

    def _values_batch_update(self, book: Book, body: Any) -> JsonDict:
        if not isinstance(body, dict):
            raise ApiFailure(400, "Invalid JSON payload received.")
        user_entered = self._input_option(body.get("valueInputOption"))
        responses, sheets = [], set()
        for item in body.get("data") or []:
            tab, rng = self._resolve(book, str(item.get("range", "")))
            result = self._write(tab, rng, item.get("values", []), user_entered, str(item.get("range")))
            responses.append({"spreadsheetId": book.spreadsheet_id, **result})
            sheets.add(tab.title)
        return {
            "spreadsheetId": book.spreadsheet_id,
            "totalUpdatedRows": sum(r.get("updatedRows", 0) for r in responses),
            "totalUpdatedColumns": sum(r.get("updatedColumns", 0) for r in responses),
            "totalUpdatedCells": sum(r.get("updatedCells", 0) for r in responses),
            "totalUpdatedSheets": len(sheets),
            "responses": responses,
        }

    def _append(self, book: Book, text: str, params: Mapping[str, str], body: Any) -> JsonDict:
        user_entered = self._input_option(params.get("valueInputOption"))
        insert = params.get("insertDataOption") or "OVERWRITE"
        if insert not in ("OVERWRITE", "INSERT_ROWS"):
            raise ApiFailure(400, f"Invalid value at 'insert_data_option' (TYPE_ENUM), \"{insert}\"")
        tab, rng = self._resolve(book, text)
        if not isinstance(body, dict):
            raise ApiFailure(400, "Invalid JSON payload received.")
        values = body.get("values", [])
        col1 = tab.cols if rng.col1 is None else rng.col1
        start = tab.last_row(rng.col0, col1, rng.row0)
        answer: JsonDict = {"spreadsheetId": book.spreadsheet_id}
        if start > rng.row0:
            width = max(c for (r, c) in tab.cells if rng.col0 <= c < col1 and rng.row0 <= r < start) + 1
            answer["tableRange"] = render(tab.title, rng.row0, start, rng.col0, width)
        height = len(values) if isinstance(values, list) else 0
        if insert == "INSERT_ROWS" and height:
            tab.cells = {((r + height if r >= start else r), c): v for (r, c), v in tab.cells.items()}
            tab.validations = {((r + height if r >= start else r), c): v for (r, c), v in tab.validations.items()}
            tab.formats = {((r + height if r >= start else r), c): v for (r, c), v in tab.formats.items()}
            tab.properties["gridProperties"]["rowCount"] = tab.rows + height
        target = A1Range(tab.title, start, None, rng.col0, None)
        result = self._write(tab, target, values, user_entered, text, grow=True)
        answer["updates"] = {"spreadsheetId": book.spreadsheet_id, **result}
        return answer

    def _clear(self, book: Book, text: str) -> JsonDict:
        tab, rng = self._resolve(book, text)
        row0, row1, col0, col1 = grid_of(tab, rng)
        for key in [k for k in tab.cells if row0 <= k[0] < row1 and col0 <= k[1] < col1]:
            del tab.cells[key]
        return {"spreadsheetId": book.spreadsheet_id, "clearedRange": render(tab.title, row0, row1, col0, col1)}

    # -- spreadsheet -----------------------------------------------------------------------------
    def _metadata(self, book: Book) -> JsonDict:
        sheets = []
        for tab in book.tabs:
            entry: JsonDict = {"properties": copy.deepcopy(tab.properties)}
            if tab.charts:
                entry["charts"] = copy.deepcopy(tab.charts)
            if tab.metadata:
                entry["developerMetadata"] = copy.deepcopy(tab.metadata)
            sheets.append(entry)
        return {
            "spreadsheetId": book.spreadsheet_id,
            "properties": {
                "title": book.title,
                "locale": "ru_RU",
                "autoRecalc": "ON_CHANGE",
                "timeZone": "Asia/Tashkent",
            },
            "sheets": sheets,
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{book.spreadsheet_id}/edit",
        }

    def _batch_update(self, book: Book, body: Any) -> JsonDict:
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            raise ApiFailure(400, "Invalid JSON payload received.")
        work = copy.deepcopy(book)  # all or nothing, as the API applies a batch
        replies = []
        for i, req in enumerate(body["requests"]):
            if not isinstance(req, dict) or len(req) != 1:
                raise ApiFailure(400, f"Invalid requests[{i}]: exactly one kind of request must be set.")
            ((kind, spec),) = req.items()
            handler = getattr(self, f"_req_{kind}", None)
            if handler is None:
                unknown = f"Unknown name \"{kind}\" at 'requests[{i}]': Cannot find field."
                raise ApiFailure(400, f"Invalid JSON payload received. {unknown}")
            try:
                replies.append(handler(work, spec or {}))
            except ApiFailure as exc:
                raise ApiFailure(400, f"Invalid requests[{i}].{kind}: {exc.message}") from None
        self.books[book.spreadsheet_id] = work
        return {"spreadsheetId": book.spreadsheet_id, "replies": replies}

    # -- control ---------------------------------------------------------------------------------
    def control_routes(self) -> list[BaseRoute]:
        async def books(request: Request) -> Response:
            if request.method == "POST":
                spec = await read_json(request)
                if not isinstance(spec, dict):
                    return JsonResponse({"error": "body must be an object"}, status_code=400)
                return JsonResponse(self._metadata(self.seed_book(spec)))
            with self.lock:
                listing = [{"spreadsheetId": b.spreadsheet_id, "title": b.title} for b in self.books.values()]
            return JsonResponse(listing)

        async def cells(request: Request) -> Response:
            with self.lock:
                book = self.books.get(str(request.path_params["sid"]))
                tab = book.tab(request.query_params.get("sheet")) if book else None
                if tab is None:
                    return JsonResponse({"error": "no such spreadsheet or sheet"}, status_code=404)
                rows: list[list[Any]] = [[] for _ in range(max((r for r, _ in tab.cells), default=-1) + 1)]
                for (r, c), value in sorted(tab.cells.items()):
                    rows[r].extend([""] * (c - len(rows[r])))
                    rows[r].append(value)
                validations = {f"{col_letter(c)}{r + 1}": v for (r, c), v in sorted(tab.validations.items())}
                formats = {f"{col_letter(c)}{r + 1}": v for (r, c), v in sorted(tab.formats.items()) if v}
                answer = {"properties": tab.properties, "rows": rows, "validations": validations, "charts": tab.charts}
                return JsonResponse({**answer, "formats": formats})

        async def edit(request: Request) -> Response:
            spec = await read_json(request)
            with self.lock:
                book = self.books.get(str(request.path_params["sid"]))
                tab = book.tab(spec.get("sheet")) if book and isinstance(spec, dict) else None
                if tab is None or not isinstance(spec, dict):
                    return JsonResponse({"error": "no such spreadsheet or sheet"}, status_code=404)
                return self._operator_edit(tab, spec)

        return [
            Route("/spreadsheets", books, methods=["GET", "POST"]),
            Route("/spreadsheets/{sid}/cells", cells, methods=["GET"]),
            Route("/spreadsheets/{sid}/edit", edit, methods=["POST"]),
        ]

    @staticmethod
    def _operator_edit(tab: Tab, spec: JsonDict) -> Response:
        """What a person does in the UI: typing is USER_ENTERED unless ``raw`` (a cell formatted as text)."""
        op = spec.get("op")
        if op == "set":
            rng = parse_a1(str(spec.get("cell")))
            tab.set(rng.row0, rng.col0, entered(spec.get("value"), not spec.get("raw")))
        elif op == "delete_row":
            row = int(spec.get("row", 0)) - 1  # 1-based, as the UI shows it
            tab.cells = {((r - 1 if r > row else r), c): v for (r, c), v in tab.cells.items() if r != row}
            tab.validations = {((r - 1 if r > row else r), c): v for (r, c), v in tab.validations.items() if r != row}
            tab.formats = {((r - 1 if r > row else r), c): v for (r, c), v in tab.formats.items() if r != row}
            tab.properties["gridProperties"]["rowCount"] = tab.rows - 1
        elif op == "insert_row":
            row = int(spec.get("row", 0)) - 1
            tab.cells = {((r + 1 if r >= row else r), c): v for (r, c), v in tab.cells.items()}
            tab.validations = {((r + 1 if r >= row else r), c): v for (r, c), v in tab.validations.items()}
            tab.formats = {((r + 1 if r >= row else r), c): v for (r, c), v in tab.formats.items()}
            for c, value in enumerate(spec.get("values") or []):
                tab.set(row, c, entered(value, not spec.get("raw")))
            tab.properties["gridProperties"]["rowCount"] = tab.rows + 1
        else:
            return JsonResponse({"error": "op must be set, delete_row or insert_row"}, status_code=400)
        return JsonResponse({"ok": True})
