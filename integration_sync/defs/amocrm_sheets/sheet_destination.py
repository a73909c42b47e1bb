"""The sheet as a sync destination (amoCRM → sheet): rows upserted by lead id, in batched writes.

- A row is found by the lead id in column A of a fresh read, in the active tab or any archive (a lead's
  row stays where it is after a rotation), never by a remembered row number.
- Updates write only the columns amoCRM owns (A..I), and the status cell only when the flow's rule
  says amoCRM's value wins; «Заказ №» is written only when the row is appended. A cell already holding
  the value costs nothing: every update of a push is one `values:batchUpdate` (RAW: «0134» stays text).
- New rows are one `values:append` (RAW, INSERT_ROWS) to the active tab. An append whose answer was
  lost raises `AmbiguousWriteError`: the engine then resolves again, and `resolve` reads the sheet
  afresh, so the row is found instead of appended twice.
- A tab whose header is not the layout is never written: its leads are rejected with the reason.
- A row's target id is `row_id(tab, lead)`: a sheet row has no id of its own and its number changes
  with every sort, insert or delete, so the row is the tab's row holding that lead id in column A
  (never the tab alone: every lead of a tab would share it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gspread

from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.sheet_source import SheetRow, SheetSnapshot, sheets_errors
from integration_sync.sync.engine import Change, Outcome

ROW = "sheet_row"


def row_id(tab_id: int, lead_id: int) -> str:
    """The target id of a lead's row: its tab and the lead id its column A holds."""
    return f"{tab_id}:{lead_id}"


def row_values(payload: Mapping[str, Any], *, with_order: bool) -> list[str]:
    """A payload as the row's cells A..K (A..J for an update)."""
    amo = payload.get("amo") or {}
    cells = [str(amo.get(name, "")) for name in layout.AMO_OWNED]
    cells.append(str(payload.get("status", "")))
    if with_order:
        cells.append(str(payload.get("order_no", "")))
    return cells


@dataclass
class SheetDestination:
    """Rows of the seller's sheet keyed by lead id (see the module docstring)."""

    client: gspread.Client
    sheet_id: str
    snapshot: SheetSnapshot
    reread: Callable[[], SheetSnapshot]
    name: str = "google_sheets"
    primary_entity: str = ROW
    batch_size: int = 500
    requests: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    _fresh: bool = True
    writes: int = 0
    read_fingerprint: str | None = None  # the sheet as read before our writes (None once read again)

    def __post_init__(self) -> None:
        self.read_fingerprint = self.snapshot.fingerprint()

    def requests_used(self) -> int:
        return self.requests

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def _rows(self) -> dict[int, SheetRow]:
        """Each lead's first row (a second row of the same lead is reported by the reader, not written)."""
        return {lead: rows[0] for lead, rows in self.snapshot.rows_by_lead().items()}

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        if not self._fresh:  # a lost answer, or a second chunk after writes: look again
            self.snapshot = self.reread()
            self.requests += 1
            self.read_fingerprint = None
        self._fresh = False
        rows = self._rows()
        found: dict[str, dict[str, str]] = {}
        for change in changes:
            row = rows.get(int(change.key))
            if row is not None:
                found[change.key] = {ROW: row_id(row.tab_id, int(change.key))}
        return found

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        rows = self._rows()
        outcomes: list[Outcome] = []
        updates: list[tuple[Change, SheetRow]] = []
        appends: list[Change] = []
        for change in changes:
            row = rows.get(int(change.key))
            if row is None:
                appends.append(change)
            elif row.tab_id in self.snapshot.broken_tabs:
                problems = "; ".join(self.snapshot.broken_tabs[row.tab_id])
                outcomes.append(Outcome(change.key, "rejected", "update", message=f"tab «{row.tab_title}»: {problems}"))
            else:
                updates.append((change, row))
        outcomes += self._update(updates)
        outcomes += self._append(appends)
        return outcomes

    def _update(self, updates: Sequence[tuple[Change, SheetRow]]) -> list[Outcome]:
        data: list[dict[str, Any]] = []
        outcomes: list[Outcome] = []
        for change, row in updates:
            wanted = row_values(change.payload, with_order=False)
            owned = len(layout.AMO_OWNED)
            tab = layout.quoted(row.tab_title)
            if list(row.cells[:owned]) != wanted[:owned]:
                last = layout.column_letter(owned - 1)
                data.append({"range": f"{tab}!A{row.row_number}:{last}{row.row_number}", "values": [wanted[:owned]]})
                before = row_values(change.previous, with_order=False)[:owned] if change.previous else None
                damaged = before is not None and list(row.cells[:owned]) != before
                self._count("cells_restored" if damaged else "rows_updated")
            status = wanted[owned]
            if change.payload.get("status_write") and row.cell(layout.STATUS) != status:
                data.append({"range": f"{tab}!{layout.STATUS_LETTER}{row.row_number}", "values": [[status]]})
                self._count("statuses_written")
                written = list(row.cells)
                written[layout.col(layout.STATUS)] = status
                self._replace(row, tuple(written))
            outcomes.append(Outcome(change.key, "succeeded", "update", {ROW: row_id(row.tab_id, int(change.key))}))
        if data:
            with sheets_errors(write=False):  # values.batchUpdate writes the same cells again: safe to retry
                self.client.http_client.values_batch_update(self.sheet_id, {"valueInputOption": "RAW", "data": data})
            self.requests += 1
            self.writes += 1
        return outcomes

    def _append(self, appends: Sequence[Change]) -> list[Outcome]:
        if not appends:
            return []
        active = self.snapshot.active()
        if active is None or active.id in self.snapshot.broken_tabs:
            why = (
                "; ".join(self.snapshot.broken_tabs.get(active.id, []))
                if active
                else "the active tab (GOOGLE_WORKSHEET_NAME) does not exist: run `integration-sync sheet setup`"
            )
            return [Outcome(c.key, "rejected", "create", message=f"cannot append: {why}") for c in appends]
        values = [row_values(c.payload, with_order=True) for c in appends]
        header_missing = not any(r.tab_id == active.id for r in self.snapshot.rows) and not self._has_header(active.id)
        if header_missing:
            values = [list(layout.COLUMNS), *values]
        with sheets_errors(write=True):
            answer = self.client.http_client.values_append(
                self.sheet_id,
                f"{layout.quoted(active.title)}!A1:{layout.LAST_LETTER}",
                params={"valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS"},
                body={"majorDimension": "ROWS", "values": values},
            )
        self.requests += 1
        self.writes += 1
        self._count("rows_appended", len(appends))
        first = _first_row(answer) + (1 if header_missing else 0)
        for offset, change in enumerate(appends):
            cells = tuple(layout.pad(values[offset + (1 if header_missing else 0)]))
            self.snapshot.rows.append(SheetRow(active.id, active.title, first + offset, int(change.key), cells))
        return [Outcome(c.key, "succeeded", "create", {ROW: row_id(active.id, int(c.key))}) for c in appends]

    def _replace(self, row: SheetRow, cells: tuple[str, ...]) -> None:
        """Keep the in-memory sheet as our writes left it (its fingerprint tells the poll our own writes)."""
        at = self.snapshot.rows.index(row)
        self.snapshot.rows[at] = SheetRow(row.tab_id, row.tab_title, row.row_number, row.lead_id, cells)

    def _has_header(self, tab_id: int) -> bool:
        return tab_id not in self.snapshot.empty_tabs


def _first_row(answer: Mapping[str, Any]) -> int:
    """The first row number an append wrote (`updates.updatedRange`, e.g. `'Sheet1'!A12:K14`)."""
    updated = str((answer.get("updates") or {}).get("updatedRange", ""))
    start = updated.rsplit("!", 1)[-1].split(":", 1)[0]
    digits = "".join(ch for ch in start if ch.isdigit())
    return int(digits) if digits else 0
