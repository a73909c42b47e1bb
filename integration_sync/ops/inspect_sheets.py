"""`integration-sync inspect sheets`: what the seller's spreadsheet holds, as the amocrm_sheets flow reads
it (the seeds' `inspect_amo.py` idea, for the sheet): tabs and their roles, each synced tab's header,
row counts and duplicate lead ids, the Staff tab's codes, and every layout problem. Read-only: two
reads (the tab list, then one `values:batchGet`), counted in the flow's shared Sheets budget."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from integration_sync.connectors.errors import ApiError, ConfigError
from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.mapping import code_key
from integration_sync.defs.amocrm_sheets.resources import SheetAccess
from integration_sync.defs.amocrm_sheets.settings import SheetsSettings
from integration_sync.defs.amocrm_sheets.sheet_source import SheetSnapshot, read_all
from integration_sync.ops.inspect import NotConfigured, table

_HINTS = {
    401: "the credentials were refused: check {credential}",
    403: "no access: share the sheet with the service account's e-mail",
    404: "no such spreadsheet: check GOOGLE_SHEET_ID",
}


def read_snapshot(env: Mapping[str, str]) -> tuple[SheetAccess, SheetsSettings, SheetSnapshot]:
    """The sheet as `.env` names it; configuration problems (and Google's 401/403/404) as `NotConfigured`."""
    access = SheetAccess.from_env(env)
    try:
        settings = SheetsSettings.from_env(env)
        return access, settings, read_all(access.client(), access.sheet_id, settings)
    except ConfigError as exc:
        raise NotConfigured(exc.message) from None
    except ApiError as exc:
        if exc.status not in _HINTS:
            raise
        credential = "GOOGLE_SHEETS_TOKEN" if access.api_url else "GOOGLE_SERVICE_ACCOUNT_FILE"
        hint = _HINTS[exc.status].format(credential=credential)
        raise NotConfigured(f"GOOGLE_SHEET_ID={access.sheet_id}: HTTP {exc.status}, {hint}") from None


def staff_report(rows: list[list[str]]) -> dict[str, Any]:
    """Employees (rows with a code) and the codes that are one once leading zeros are dropped."""
    codes: dict[str, list[str]] = {}
    employees = 0
    for row in rows[1:]:
        cells = layout.pad(row, len(layout.STAFF_COLUMNS))
        code = cells[1].strip()
        if not code:
            continue
        employees += 1
        codes.setdefault(code_key(code), []).append(code)
    colliding = [sorted(found) for _, found in sorted(codes.items()) if len(found) > 1]
    return {"employees": employees, "colliding_codes": colliding}


def sheets_report(env: Mapping[str, str]) -> dict[str, Any]:
    access, settings, snapshot = read_snapshot(env)
    per_lead = Counter(r.lead_id for r in snapshot.rows if r.lead_id is not None)
    tabs: list[dict[str, Any]] = []
    for tab in snapshot.tabs:
        entry: dict[str, Any] = {"id": tab.id, "title": tab.title, "role": tab.role}
        if tab.role in ("active", "archive"):
            rows = [r for r in snapshot.rows if r.tab_id == tab.id]
            if tab.id in snapshot.empty_tabs and not rows:
                entry["header"] = "empty"
            entry["header_problems"] = list(snapshot.broken_tabs.get(tab.id, []))
            entry["header_ok"] = not entry["header_problems"] and tab.id not in snapshot.empty_tabs
            entry["rows"] = len(rows)
            entry["rows_without_lead_id"] = sum(1 for r in rows if r.lead_id is None)
            entry["duplicate_lead_ids"] = sorted(
                {r.lead_id for r in rows if r.lead_id is not None and per_lead[r.lead_id] > 1}
            )
        tabs.append(entry)
    staff = staff_report(snapshot.staff_rows) if any(t.role == "staff" for t in snapshot.tabs) else None
    return {
        "system": "sheets",
        "spreadsheet_id": access.sheet_id,
        "worksheet": settings.worksheet,
        "active_missing": snapshot.active_missing,
        "tabs": tabs,
        "staff": staff,
        "layout_problems": [
            {"tab": i.tab_title, "row": i.row_number, "column": i.column_name, "value": i.value, "problem": i.problem}
            for i in snapshot.issues
        ],
    }


def render_sheets(report: Mapping[str, Any]) -> str:
    out = [f"Spreadsheet {report['spreadsheet_id']} (GOOGLE_WORKSHEET_NAME={report['worksheet']})"]
    if report["active_missing"]:
        out.append(f"no tab «{report['worksheet']}»: run `integration-sync sheet setup`")
    out += table(
        ["tab", "role", "header", "rows", "no lead id", "duplicate lead ids"],
        [
            (
                t["title"],
                t["role"],
                _header(t),
                t.get("rows", ""),
                t.get("rows_without_lead_id", ""),
                ", ".join(map(str, t.get("duplicate_lead_ids", []))),
            )
            for t in report["tabs"]
        ],
    )
    staff = report["staff"]
    out.append("")
    if staff is None:
        out.append(f"no «{layout.STAFF_TAB}» tab: «{layout.RESPONSIBLE}» stays empty")
    else:
        out.append(f"{layout.STAFF_TAB}: {staff['employees']} employees")
        for codes in staff["colliding_codes"]:
            out.append(f"  codes {' = '.join(codes)} are one code once leading zeros are dropped")
    problems = report["layout_problems"]
    out += ["", f"Layout problems ({len(problems)})"]
    out += [f"  {p['tab']}" + (f" row {p['row']}" if p["row"] else "") + f": {p['problem']}" for p in problems]
    return "\n".join(out)


def _header(tab: Mapping[str, Any]) -> str:
    if "header_ok" not in tab:
        return ""
    if tab.get("header") == "empty":
        return "empty (written by setup or the first append)"
    return "OK" if tab["header_ok"] else "; ".join(tab["header_problems"])


def run(env: Mapping[str, str], as_json: bool) -> str:
    report = sheets_report(env)
    return json.dumps(report, ensure_ascii=False, indent=2) if as_json else render_sheets(report)
