"""Reading the seller's sheet: the tab list (one metadata read) and every tab the flow uses — the active
tab, its archives and Staff — in ONE `values:batchGet`. No Dagster, no warehouse.

A tab whose header row is not the layout is read but marked broken: its rows are neither written nor
acted on, and its problems are recorded. Rows are identified by the lead id in column A, never by
their position (operators insert, sort and delete rows).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import gspread
import requests

from integration_sync.connectors.errors import AmbiguousWriteError, ApiError, AuthError
from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.settings import SheetsSettings

_PERIOD = re.compile(r"^\d{4}-\d{2}(-\d{2} \d{2}h)?$")


@dataclass(frozen=True)
class TabInfo:
    """A tab of the spreadsheet and the part it plays."""

    id: int
    title: str
    role: str  # active | archive | staff | dashboard | other
    period: str | None = None


def tab_role(title: str, settings: SheetsSettings) -> tuple[str, str | None]:
    if title == settings.worksheet:
        return "active", None
    if title == layout.STAFF_TAB:
        return "staff", None
    if title == layout.DASHBOARD_TAB:
        return "dashboard", None
    if _PERIOD.match(title):
        return "archive", title
    return "other", None


@contextmanager
def sheets_errors(write: bool = False) -> Iterator[None]:
    """gspread's and requests' errors as the project's: an error answer → `ApiError` (nothing written);
    a write whose answer was lost → `AmbiguousWriteError` (it may have been applied)."""
    try:
        yield
    except gspread.exceptions.APIError as exc:
        code = int(exc.code) if isinstance(exc.code, int) else None
        message = str(exc.error.get("message", "")) if isinstance(exc.error, Mapping) else str(exc)
        status = str(exc.error.get("status", "")) if isinstance(exc.error, Mapping) else ""
        error_type = AuthError if code in (401, 403) else ApiError
        raise error_type("sheets", message[:300], status=code, code=status or None) from None
    except requests.RequestException as exc:  # no answer, or an answer cut off mid-body
        if write:
            raise AmbiguousWriteError("sheets", f"no answer to a write ({type(exc).__name__})") from None
        raise ApiError("sheets", f"unreachable ({type(exc).__name__})") from None


def list_tabs(client: gspread.Client, sheet_id: str, settings: SheetsSettings) -> list[TabInfo]:
    """Every tab with its role (one read: the spreadsheet's properties, no cells)."""
    with sheets_errors():
        meta = client.http_client.fetch_sheet_metadata(sheet_id, params={"fields": "sheets.properties"})
    tabs: list[TabInfo] = []
    for sheet in meta.get("sheets", []):
        props = sheet.get("properties", {})
        title = str(props.get("title", ""))
        role, period = tab_role(title, settings)
        tabs.append(TabInfo(int(props.get("sheetId", 0)), title, role, period))
    return tabs


@dataclass(frozen=True)
class SheetRow:
    """One data row: where it is now, the lead id in column A (None when empty or not a number) and
    its cells padded to the layout's width."""

    tab_id: int
    tab_title: str
    row_number: int
    lead_id: int | None
    cells: tuple[str, ...]

    def cell(self, name: str) -> str:
        return self.cells[layout.col(name)]


@dataclass(frozen=True)
class LayoutIssue:
    tab_title: str
    row_number: int | None
    column_name: str | None
    value: str | None
    problem: str


@dataclass
class SheetSnapshot:
    """The sheet as one batchGet read it."""

    tabs: list[TabInfo]
    rows: list[SheetRow] = field(default_factory=list)
    staff_rows: list[list[str]] = field(default_factory=list)
    issues: list[LayoutIssue] = field(default_factory=list)
    broken_tabs: dict[int, list[str]] = field(default_factory=dict)
    empty_tabs: set[int] = field(default_factory=set)
    active_missing: bool = False

    def rows_by_lead(self) -> dict[int, list[SheetRow]]:
        found: dict[int, list[SheetRow]] = {}
        for row in self.rows:
            if row.lead_id is not None:
                found.setdefault(row.lead_id, []).append(row)
        return found

    def active(self) -> TabInfo | None:
        return next((t for t in self.tabs if t.role == "active"), None)

    def fingerprint(self) -> str:
        """What the poll compares: lead ids, status and «Заказ №» of every usable row, and Staff."""
        digest = hashlib.sha256()
        cells = sorted(
            (row.tab_id, row.lead_id or 0, row.cell(layout.STATUS), row.cell(layout.ORDER_NO))
            for row in self.rows
            if row.tab_id not in self.broken_tabs
        )  # order-free: a sort in the sheet, or our append's place, changes nothing an operator did
        digest.update(json.dumps(cells, ensure_ascii=False).encode())
        digest.update(json.dumps(self.staff_rows, ensure_ascii=False).encode())
        digest.update(json.dumps(sorted(self.broken_tabs)).encode())
        return digest.hexdigest()


def synced_tabs(tabs: Sequence[TabInfo]) -> list[TabInfo]:
    return [t for t in tabs if t.role in ("active", "archive")]


def ranges_for(tabs: Sequence[TabInfo]) -> list[str]:
    ranges = [f"{layout.quoted(t.title)}!A1:{layout.LAST_LETTER}" for t in synced_tabs(tabs)]
    ranges += [f"{layout.quoted(t.title)}!A1:D" for t in tabs if t.role == "staff"]
    return ranges


def _lead_id(text: str) -> int | None:
    cleaned = text.strip().replace(" ", "").replace("\u00a0", "")
    return int(cleaned) if cleaned.isdigit() and len(cleaned) < 19 else None


def parse_sheet(tabs: Sequence[TabInfo], value_ranges: Sequence[Mapping[str, Any]]) -> SheetSnapshot:
    """A batchGet's answer (in the order of `ranges_for(tabs)`) as rows, Staff and layout problems."""
    snapshot = SheetSnapshot(list(tabs))
    synced = synced_tabs(tabs)
    staff = [t for t in tabs if t.role == "staff"]
    snapshot.active_missing = not any(t.role == "active" for t in tabs)
    for tab, answer in zip([*synced, *staff], value_ranges, strict=False):
        values = [list(map(str, row)) for row in answer.get("values", [])]
        if tab.role == "staff":
            snapshot.staff_rows = values
            problems = layout.header_problems(values[0] if values else [], layout.STAFF_COLUMNS)
            for p in problems:
                snapshot.issues.append(LayoutIssue(tab.title, 1, p.column, p.found, p.describe()))
            continue
        header = values[0] if values else []
        if not any(cell.strip() for cell in header):
            snapshot.empty_tabs.add(tab.id)
        problems = layout.header_problems(header)
        if problems and header:  # an empty tab is fine: `sheet setup` or the first append writes it
            snapshot.broken_tabs[tab.id] = [p.describe() for p in problems]
            for p in problems:
                snapshot.issues.append(LayoutIssue(tab.title, 1, p.column, p.found, p.describe()))
        elif not header and values[1:]:
            snapshot.broken_tabs[tab.id] = ["the header row is empty"]
        for number, raw in enumerate(values[1:], start=2):
            cells = tuple(layout.pad(raw))
            if not any(c.strip() for c in cells):
                continue
            lead_id = _lead_id(cells[0])
            if lead_id is None:
                snapshot.issues.append(
                    LayoutIssue(tab.title, number, layout.LEAD_ID, cells[0], "the row has no lead id in column A")
                )
            snapshot.rows.append(SheetRow(tab.id, tab.title, number, lead_id, cells))
    for lead_id, rows in snapshot.rows_by_lead().items():
        for extra in rows[1:]:
            snapshot.issues.append(
                LayoutIssue(
                    extra.tab_title,
                    extra.row_number,
                    layout.LEAD_ID,
                    str(lead_id),
                    f"lead {lead_id} also has {rows[0].tab_title} row {rows[0].row_number}; this row is not synced",
                )
            )
    return snapshot


def read_sheet(client: gspread.Client, sheet_id: str, tabs: Sequence[TabInfo]) -> SheetSnapshot:
    """Every synced tab and Staff in one `values:batchGet` (formatted strings, as operators see them)."""
    ranges = ranges_for(tabs)
    if not ranges:
        return parse_sheet(tabs, [])
    with sheets_errors():
        answer = client.http_client.values_batch_get(sheet_id, ranges, params={"majorDimension": "ROWS"})
    return parse_sheet(tabs, answer.get("valueRanges", []))


def read_all(client: gspread.Client, sheet_id: str, settings: SheetsSettings) -> SheetSnapshot:
    """The tab list, then the tabs (two reads)."""
    return read_sheet(client, sheet_id, list_tabs(client, sheet_id, settings))
