"""Helpers to run the amocrm_sheets flow through Dagster against the seller's amoCRM and Sheets
emulators (tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import httpx

from integration_sync.defs.amocrm_sheets.assets import seller_leads, sheet_rows
from integration_sync.defs.amocrm_sheets.definitions import FLOW, lead_rows
from integration_sync.defs.resources import warehouse_resource
from integration_sync.sandbox.sheets import SPREADSHEET_ID
from integration_sync_tests.dagster_support import environment, materialize_range

ZONE = ZoneInfo("Asia/Tashkent")
EDITS = FLOW.more_push_assets[0]
AMO_TO_SHEET = [seller_leads, lead_rows]
SHEET_TO_AMO = [sheet_rows, EDITS, lead_rows]
EVERYTHING = [seller_leads, sheet_rows, EDITS, lead_rows]
SECRET = "test-amocrm-hook-secret-0123456789"


def today() -> date:
    return datetime.now(ZONE).date()


def flow_env(sandbox_env: Mapping[str, str], data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {
        **sandbox_env,
        "INTEGRATION_SYNC_DATA_DIR": str(data_dir),
        "WAREHOUSE_PATH": str(data_dir / "warehouse.duckdb"),
        "WEBHOOK_INBOX_PATH": str(data_dir / "inbox.sqlite"),
        "SHEETS_WEBHOOK_SECRET": SECRET,
        "SHEETS_START_DATE": (today() - timedelta(days=40)).isoformat(),
    }
    env.update(overrides)
    return env


def resources() -> dict[str, Any]:
    return {"warehouse": warehouse_resource(), **FLOW.resources()}


def run(
    env: Mapping[str, str],
    selection: Sequence[Any],
    *,
    days: int = 31,
    tags: Mapping[str, str] | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """The selection over the last `days` days (a partitioned run; unpartitioned assets run once)."""
    last = today()
    if not any(a.partitions_def for a in selection):
        with environment(env):
            return dg.materialize(
                list(selection),
                resources=resources(),
                instance=dg.DagsterInstance.ephemeral(),
                tags=dict(tags or {}),
                raise_on_error=raise_on_error,
            )
    return materialize_range(
        env,
        selection,
        resources,
        first_day=last - timedelta(days=days - 1),
        last_day=last,
        tags=tags,
        raise_on_error=raise_on_error,
    )


def cells(control: httpx.Client, sheet: str = "Sheet1") -> list[list[str]]:
    """The tab's cells as stored (the control call: not counted against the quota)."""
    answer = control.get(f"/_sandbox/sheets/spreadsheets/{SPREADSHEET_ID}/cells", params={"sheet": sheet})
    answer.raise_for_status()
    return [[str(c) for c in row] for row in answer.json()["rows"]]


def edit(control: httpx.Client, **change: Any) -> None:
    """An operator's edit (`op` set | delete_row | insert_row), as the emulator's control call takes it."""
    body = {"sheet": "Sheet1", "op": "set", **change}
    control.post(f"/_sandbox/sheets/spreadsheets/{SPREADSHEET_ID}/edit", json=body).raise_for_status()


def row_of(rows: list[list[str]], lead_id: int) -> int:
    """The 1-based row number of a lead's row."""
    return next(i + 1 for i, row in enumerate(rows) if row and row[0] == str(lead_id))


def lead(control: httpx.Client, lead_id: int) -> dict[str, Any]:
    answer = control.get(f"/amocrm-seller/api/v4/leads/{lead_id}", headers=_auth())
    answer.raise_for_status()
    data: dict[str, Any] = answer.json()
    return data


def move(control: httpx.Client, lead_id: int, status_id: int) -> None:
    """A manager moves a lead in amoCRM (the control call: amoCRM sends its status hook)."""
    control.post(f"/_sandbox/amocrm-seller/leads/{lead_id}/status", json={"status_id": status_id}).raise_for_status()


def sent_status(control: httpx.Client, lead_id: int) -> int:
    """The «Заказ отправлен» status of the lead's pipeline."""
    pipeline_id = lead(control, lead_id)["pipeline_id"]
    pipeline = control.get(f"/amocrm-seller/api/v4/leads/pipelines/{pipeline_id}", headers=_auth()).json()
    return next(int(s["id"]) for s in pipeline["_embedded"]["statuses"] if s["name"].casefold() == "заказ отправлен")


def _auth() -> dict[str, str]:
    from integration_sync.sandbox.amocrm_seller import SELLER_APP

    return {"Authorization": f"Bearer {SELLER_APP.long_lived}"}


def requests_of(control: httpx.Client, service: str) -> dict[str, int]:
    """A service's requests so far by method (``GET /api/v4/leads``...) and in all (``total``)."""
    data = control.get("/_sandbox/stats").json()[service]
    return {"total": int(data["requests"]), **{k: int(v) for k, v in data["by_method"].items()}}


def now_utc() -> datetime:
    return datetime.now(UTC)


def book(env: Mapping[str, str]) -> Any:
    """The sandbox spreadsheet through gspread, as the flow opens it (`env` has INTEGRATION_SYNC_DATA_DIR)."""
    from integration_sync.defs.amocrm_sheets.resources import SheetAccess

    return SheetAccess.from_env(dict(env), state_dir=env["INTEGRATION_SYNC_DATA_DIR"]).spreadsheet()


def tab_cells(env: Mapping[str, str], title: str) -> dict[str, Any]:
    """A tab of the sandbox spreadsheet as the emulator holds it (`env["SANDBOX"]`: its base URL)."""
    url = f"{env['SANDBOX']}/_sandbox/sheets/spreadsheets/{SPREADSHEET_ID}/cells"
    answer: dict[str, Any] = httpx.get(url, params={"sheet": title}, timeout=10).json()
    return answer


def synced_sheet(
    sandbox_env: Mapping[str, str], data_dir: Path, control: httpx.Client
) -> tuple[dict[str, str], list[list[str]], int]:
    """The flow's settings, the sheet after amoCRM's leads were synced to it once, and its first lead."""
    env = flow_env(sandbox_env, data_dir)
    run(env, AMO_TO_SHEET)
    rows = cells(control)
    return env, rows, int(rows[1][0])
