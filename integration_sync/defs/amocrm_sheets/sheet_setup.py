"""`integration-sync sheet setup` (the seed's setup_sheet.py): makes the spreadsheet the layout of
`layout.py` — the active tab's headers (RAW), bold and frozen, the status dropdown, its period stamp;
the Staff tab's headers (rows kept); an empty Dashboard tab.

Safe to run twice: one metadata read and one batchGet of the header rows find what is missing, then at
most one batchUpdate and one values batchUpdate add it; the second run writes nothing. A tab whose
header row differs from the layout is never overwritten: the run writes nothing and says why (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gspread

from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.rotation import (
    JsonDict,
    format_requests,
    fresh_tab_requests,
    new_sheet_id,
    period_of,
    stamp_of,
    stamp_request,
)
from integration_sync.defs.amocrm_sheets.settings import SheetsSettings
from integration_sync.lib.registry import CommandGroups


class HeaderMismatch(Exception):
    """Tabs whose header row is not the layout's: an operator must fix or rename them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class _Plan:
    requests: list[JsonDict] = field(default_factory=list)
    values: list[JsonDict] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _header_range(title: str, width: int) -> str:
    return f"{layout.quoted(title)}!A1:{layout.column_letter(width - 1)}1"


def _existing_tab(
    plan: _Plan, sheet: JsonDict, header: list[str], expected: tuple[str, ...], *, active: str | None = None
) -> None:
    """A tab that exists: its header written when empty, refused when different; the active tab's
    bold/frozen/dropdown applied with its period stamp when the stamp is missing (they go together)."""
    props = sheet["properties"]
    title, sheet_id = str(props["title"]), int(props["sheetId"])
    if not any(cell.strip() for cell in header):
        plan.values.append({"range": _header_range(title, len(expected)), "values": [list(expected)]})
        plan.done.append(f"«{title}»: header row written")
    else:
        problems = layout.header_problems(header, expected)
        if problems:
            plan.problems += [f"«{title}» {p.describe()}" for p in problems]
            return
    if active is None:
        return
    frozen = int((props.get("gridProperties") or {}).get("frozenRowCount") or 0)
    if stamp_of(sheet) is None or frozen < 1:
        plan.requests += format_requests(sheet_id)
        if stamp_of(sheet) is None:
            plan.requests.append(stamp_request(sheet_id, active))
        plan.done.append(f"«{title}»: header bold and frozen, «{layout.STATUS}» dropdown from row 2 down")


def ensure_layout(spreadsheet: gspread.Spreadsheet, settings: SheetsSettings, now: datetime | None = None) -> list[str]:
    """Bring the spreadsheet to the layout; returns what was done, one line each (or that nothing was).
    Raises `HeaderMismatch` (and writes nothing) when a tab's header row differs from the layout."""
    period = period_of(now or datetime.now(UTC), settings.zone, settings.rotation)
    sheets: list[JsonDict] = spreadsheet.fetch_sheet_metadata().get("sheets") or []
    by_title = {str(s["properties"]["title"]): s for s in sheets}
    wanted = [(settings.worksheet, layout.COLUMNS), (layout.STAFF_TAB, layout.STAFF_COLUMNS)]
    present = [(title, columns) for title, columns in wanted if title in by_title]
    headers: list[list[str]] = []
    if present:
        answer = spreadsheet.values_batch_get([_header_range(t, len(c)) for t, c in present])
        headers = [[str(c) for c in (vr.get("values") or [[]])[0]] for vr in answer.get("valueRanges", [])]
    header_of = {title: header for (title, _), header in zip(present, headers, strict=True)}
    plan = _Plan()
    taken = list(sheets)
    for title, columns in wanted:
        if title in header_of:
            active = period if title == settings.worksheet else None
            _existing_tab(plan, by_title[title], header_of[title], columns, active=active)
            continue
        sheet_id = new_sheet_id(taken, title)
        taken.append({"properties": {"sheetId": sheet_id}})
        if title == settings.worksheet:
            plan.requests += fresh_tab_requests(sheet_id, title, 0, period)
            plan.done.append(f"«{title}»: tab added with the header row, bold and frozen, «{layout.STATUS}» dropdown")
        else:
            grid = {"rowCount": 1000, "columnCount": 26, "frozenRowCount": 1}
            add = {"addSheet": {"properties": {"sheetId": sheet_id, "title": title, "gridProperties": grid}}}
            plan.requests += [add, *format_requests(sheet_id, len(columns), validation=False)]
            plan.values.append({"range": _header_range(title, len(columns)), "values": [list(columns)]})
            plan.done.append(f"«{title}»: tab added with its header row")
    if layout.DASHBOARD_TAB not in by_title:
        sheet_id = new_sheet_id(taken, layout.DASHBOARD_TAB)
        plan.requests.append({"addSheet": {"properties": {"sheetId": sheet_id, "title": layout.DASHBOARD_TAB}}})
        plan.done.append(f"«{layout.DASHBOARD_TAB}»: tab added (empty)")
    if plan.problems:
        raise HeaderMismatch(plan.problems)
    if plan.requests:  # tabs first: the values below may be written into a tab added here
        spreadsheet.batch_update({"requests": plan.requests})
    if plan.values:
        spreadsheet.values_batch_update({"valueInputOption": "RAW", "data": plan.values})
    return plan.done or ["nothing to do: the spreadsheet already has the layout"]


# -- the command ---------------------------------------------------------------------------------


def _print(lines: list[str], as_json: bool, *, ok: bool, key: str = "done") -> None:
    if as_json:
        print(json.dumps({"ok": ok, key: lines}, ensure_ascii=False))
    else:
        print("\n".join(lines))


def cmd_setup(args: argparse.Namespace) -> int:
    from integration_sync.connectors.errors import ConfigError, IntegrationError
    from integration_sync.defs.amocrm_sheets.resources import SheetAccess
    from integration_sync.defs.resources import data_dir
    from integration_sync.lib.settings_files import load_dotenv

    load_dotenv(Path(args.project_dir).resolve() / ".env")
    try:
        settings = SheetsSettings.from_env(os.environ)
        state = Path(args.project_dir).resolve() / data_dir() / "state"  # the rate budgets' files
        access = SheetAccess.from_env(os.environ, state_dir=str(state))
        spreadsheet = access.spreadsheet()
        done = ensure_layout(spreadsheet, settings)
    except ConfigError as exc:
        print(f"integration-sync: error: {exc.message}", file=sys.stderr)
        return 2
    except HeaderMismatch as exc:
        print(
            "the sheet's layout differs; nothing was written. Fix or rename these tabs, then run again:",
            file=sys.stderr,
        )
        _print(exc.problems, args.json, ok=False, key="header_problems")
        return 1
    except gspread.exceptions.APIError as exc:  # Google's own message: carries no token
        print(f"integration-sync: error: Google Sheets answered {exc.code}: {_api_message(exc)}", file=sys.stderr)
        return 1
    except gspread.exceptions.SpreadsheetNotFound:
        print(
            "integration-sync: error: GOOGLE_SHEET_ID: no such spreadsheet, or it is not shared with the "
            "service account",
            file=sys.stderr,
        )
        return 2
    except ValueError as exc:  # an unreadable service-account key file
        print(f"integration-sync: error: GOOGLE_SERVICE_ACCOUNT_FILE: {type(exc).__name__}", file=sys.stderr)
        return 2
    except (IntegrationError, OSError) as exc:
        print(f"integration-sync: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    _print(done, args.json, ok=True)
    return 0


def _api_message(exc: gspread.exceptions.APIError) -> str:
    error: Any = exc.error if isinstance(exc.error, dict) else {}
    return str(error.get("message") or "no message")[:300]


def add_command(groups: CommandGroups) -> None:
    """`integration-sync sheet setup [--project-dir .] [--json]`."""
    sheet = groups.under("sheet", "the seller's Google Sheet (amocrm_sheets)")
    parser = sheet.add_parser(
        "setup", help="headers, the status dropdown, the Staff and Dashboard tabs (safe to rerun)"
    )
    parser.add_argument("--project-dir", default=".", help="where .env is read from")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=cmd_setup)
