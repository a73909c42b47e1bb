"""Tab rotation (`SHEET_ROTATION_INTERVAL`): when a period ends, the active tab is archived under that
period's title and a fresh active tab is started, in one atomic `spreadsheets.batchUpdate`.

How the active tab's period is known: the tab carries it as developer metadata (`PERIOD_KEY`, invisible
to operators, kept through renames), written by `sheet setup` and by the rotation that starts a tab.
A tab stamped with an earlier period than now's is archived under the stamped title (also when ticks
were missed: the archive is named for the period it was started in). A tab without a stamp is stamped
with the current period; an empty tab is re-stamped instead of archived (no empty archives, hourly).
Rows are never moved or copied: a lead's row stays in its archive, where the pushes find it by lead id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import gspread

from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.settings import Rotation, SheetsSettings

PERIOD_KEY = "integration_sync.period"
JsonDict = dict[str, Any]


def period_start(moment: datetime, zone: ZoneInfo, interval: Rotation) -> datetime:
    """The start of the period holding `moment`, in `zone` (months for `monthly` and `off`)."""
    local = moment.astimezone(zone)
    if interval == "hourly":
        return local.replace(minute=0, second=0, microsecond=0)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def period_of(moment: datetime, zone: ZoneInfo, interval: Rotation) -> str:
    """The period's title: "2026-11" monthly, "2026-11-30 14h" hourly, in the flow's zone."""
    local = moment.astimezone(zone)
    return local.strftime("%Y-%m-%d %Hh" if interval == "hourly" else "%Y-%m")


def previous_period(moment: datetime, zone: ZoneInfo, interval: Rotation) -> str:
    """The title of the period before the one holding `moment`."""
    start = period_start(moment, zone, interval).astimezone(UTC)  # UTC arithmetic: DST-safe
    return period_of(start - timedelta(microseconds=1), zone, interval)


# -- what an active tab gets (shared with `sheet setup`) -----------------------------------------


def header_request(sheet_id: int, headers: Sequence[str]) -> JsonDict:
    """The header row as plain strings (the structural twin of a RAW values write)."""
    cells = [{"userEnteredValue": {"stringValue": name}} for name in headers]
    start = {"sheetId": sheet_id, "rowIndex": 0, "columnIndex": 0}
    return {"updateCells": {"rows": [{"values": cells}], "fields": "userEnteredValue", "start": start}}


def format_requests(sheet_id: int, width: int = len(layout.COLUMNS), *, validation: bool = True) -> list[JsonDict]:
    """Header bold and frozen, and the status dropdown from row 2 down (unbounded: rows added later too)."""
    requests: list[JsonDict] = [
        {
            "repeatCell": {
                "range": {
                    "sheetId": sheet_id,
                    "startRowIndex": 0,
                    "endRowIndex": 1,
                    "startColumnIndex": 0,
                    "endColumnIndex": width,
                },
                "cell": {"userEnteredFormat": {"textFormat": {"bold": True}}},
                "fields": "userEnteredFormat.textFormat.bold",
            }
        },
        {
            "updateSheetProperties": {
                "properties": {"sheetId": sheet_id, "gridProperties": {"frozenRowCount": 1}},
                "fields": "gridProperties.frozenRowCount",
            }
        },
    ]
    if validation:
        status = layout.col(layout.STATUS)
        rule = {
            "condition": {"type": "ONE_OF_LIST", "values": [{"userEnteredValue": v} for v in layout.STATUS_CHOICES]},
            "showCustomUi": True,
            "strict": True,
        }
        grid = {"sheetId": sheet_id, "startRowIndex": 1, "startColumnIndex": status, "endColumnIndex": status + 1}
        requests.append({"setDataValidation": {"range": grid, "rule": rule}})
    return requests


def stamp_request(sheet_id: int, period: str) -> JsonDict:
    metadata = {
        "metadataKey": PERIOD_KEY,
        "metadataValue": period,
        "location": {"sheetId": sheet_id},
        "visibility": "DOCUMENT",
    }
    return {"createDeveloperMetadata": {"developerMetadata": metadata}}


def restamp_request(metadata_id: int, period: str) -> JsonDict:
    return {
        "updateDeveloperMetadata": {
            "dataFilters": [{"developerMetadataLookup": {"metadataId": metadata_id}}],
            "developerMetadata": {"metadataValue": period},
            "fields": "metadataValue",
        }
    }


def stamp_of(sheet: Mapping[str, Any]) -> tuple[int, str] | None:
    """A tab's period stamp from the spreadsheet's metadata: (metadata id, period), or None."""
    for item in sheet.get("developerMetadata") or []:
        if item.get("metadataKey") == PERIOD_KEY:
            return int(item["metadataId"]), str(item.get("metadataValue") or "")
    return None


def new_sheet_id(sheets: Sequence[Mapping[str, Any]], seed: str) -> int:
    """An id no tab has: chosen by us, so one batch can add a tab and format it."""
    taken = {int(s["properties"]["sheetId"]) for s in sheets}
    candidate = (sum(seed.encode()) * 7919) % 2_000_000_000 + 1
    while candidate in taken:
        candidate += 1
    return candidate


def fresh_tab_requests(sheet_id: int, title: str, index: int, period: str) -> list[JsonDict]:
    """A new active tab: added with the header frozen, headers written, bold, dropdown, period stamp."""
    width = max(26, len(layout.COLUMNS))
    grid = {"rowCount": 1000, "columnCount": width, "frozenRowCount": 1}
    add = {"addSheet": {"properties": {"sheetId": sheet_id, "title": title, "index": index, "gridProperties": grid}}}
    return [add, header_request(sheet_id, layout.COLUMNS), *format_requests(sheet_id), stamp_request(sheet_id, period)]


# -- rotation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RotationResult:
    """What `rotate` did: `archived` is the archive's title when it rotated; `reason` says why (not)."""

    rotated: bool
    reason: str
    archived: str | None = None
    period: str | None = None  # the active tab's period afterwards

    def metadata(self) -> dict[str, str | bool]:
        return {
            "rotated": self.rotated,
            "reason": self.reason,
            "archived": self.archived or "",
            "period": self.period or "",
        }


def _has_rows(spreadsheet: gspread.Spreadsheet, title: str) -> bool:
    answer = spreadsheet.values_get(f"{layout.quoted(title)}!A2:{layout.LAST_LETTER}")
    return any(any(str(c).strip() for c in row) for row in answer.get("values") or [])


def rotate(spreadsheet: gspread.Spreadsheet, settings: SheetsSettings, now: datetime) -> RotationResult:
    """Archive the active tab when its period has ended (see the module docstring). Idempotent: the
    new tab carries the current period, so a second call in the same period finds nothing to do."""
    if settings.rotation == "off":
        return RotationResult(False, "SHEET_ROTATION_INTERVAL is off")
    current = period_of(now, settings.zone, settings.rotation)
    sheets: list[JsonDict] = spreadsheet.fetch_sheet_metadata().get("sheets") or []
    by_title = {str(s["properties"]["title"]): s for s in sheets}
    active = by_title.get(settings.worksheet)
    if active is None:
        return RotationResult(False, f"no tab «{settings.worksheet}»: run `integration-sync sheet setup`")
    sheet_id = int(active["properties"]["sheetId"])
    stamp = stamp_of(active)
    if stamp is None:
        spreadsheet.batch_update({"requests": [stamp_request(sheet_id, current)]})
        return RotationResult(False, f"«{settings.worksheet}» carried no period: stamped {current}", period=current)
    metadata_id, started = stamp
    if started == current:
        return RotationResult(False, f"«{settings.worksheet}» holds the current period {current}", period=current)
    if started in by_title:
        return RotationResult(
            False, f"a tab «{started}» already exists: rename it to archive «{settings.worksheet}»", period=started
        )
    if not _has_rows(spreadsheet, settings.worksheet):
        spreadsheet.batch_update({"requests": [restamp_request(metadata_id, current)]})
        return RotationResult(
            False, f"«{settings.worksheet}» had no rows in {started}: now holds {current}", period=current
        )
    index = int(active["properties"].get("index", 0))
    fresh = new_sheet_id(sheets, f"{settings.worksheet}|{current}")
    rename = {
        "updateSheetProperties": {
            "properties": {"sheetId": sheet_id, "title": started},
            "fields": "title",
        }
    }
    # one batch: Google applies all of it or none, so there is always a tab named settings.worksheet
    spreadsheet.batch_update({"requests": [rename, *fresh_tab_requests(fresh, settings.worksheet, index, current)]})
    return RotationResult(
        True,
        f"archived {started} as «{started}»; «{settings.worksheet}» started for {current}",
        archived=started,
        period=current,
    )
