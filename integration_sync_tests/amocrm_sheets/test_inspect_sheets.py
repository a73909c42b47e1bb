"""`integration-sync inspect sheets` against the Sheets emulator over real HTTP: tabs and roles, headers,
rows, duplicate lead ids, Staff codes that collide without their leading zeros, layout problems; and
configuration errors as one line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_sync import cli
from integration_sync.defs.amocrm_sheets import layout
from integration_sync.sandbox.sheets import SPREADSHEET_ID, STAFF_ROWS
from integration_sync_tests.amocrm_sheets.flow import requests_of
from integration_sync_tests.dagster_support import environment

HEADER = list(layout.COLUMNS)
DAMAGED = [HEADER[0], "Имя клиента", *HEADER[2:]]  # an operator renamed column B


def _row(lead_id: str, status: str = layout.IN_PROGRESS) -> list[str]:
    return [lead_id, "Ali", "+998901112233", "", "Чай", "01.11.2026", "Toshkent", "0134", "", status, ""]


def _seed(control: httpx.Client) -> None:
    sheets = [
        {
            "title": "Sheet1",
            "rows": [HEADER, _row("101"), _row("102"), ["см. ниже", "без id"], _row("101"), _row("103")],
        },
        {"title": "2026-10", "rows": [DAMAGED, _row("103"), _row("90")]},
        {"title": "Staff", "rows": [*STAFF_ROWS, [5, "134", "BAHODIR H. (again)", "A"]]},
        {"title": "Dashboard"},
        {"title": "Заметки", "rows": [["anything"]]},
    ]
    answer = control.post("/_sandbox/sheets/spreadsheets", json={"spreadsheetId": SPREADSHEET_ID, "sheets": sheets})
    answer.raise_for_status()


def _cli(capsys: pytest.CaptureFixture[str], project: Path, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["inspect", "sheets", "--project-dir", str(project), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_sheets_reports_tabs_headers_rows_staff_and_problems(
    sandbox_env: dict[str, str],
    data_dir: Path,
    control: httpx.Client,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _seed(control)
    with environment({**sandbox_env, "INTEGRATION_SYNC_DATA_DIR": str(data_dir)}):
        before = requests_of(control, "sheets")
        code, out, _ = _cli(capsys, tmp_path, "--json")
        after = requests_of(control, "sheets")
        assert code == 0
        assert (
            after["total"] - before["total"] == 2 and after.get("get", 0) - before.get("get", 0) == 2
        )  # two reads, no write
        report: dict[str, Any] = json.loads(out)
        tabs = {t["title"]: t for t in report["tabs"]}
        assert {k: t["role"] for k, t in tabs.items()} == {
            "Sheet1": "active",
            "2026-10": "archive",
            "Staff": "staff",
            "Dashboard": "dashboard",
            "Заметки": "other",
        }
        active = tabs["Sheet1"]
        assert active["header_ok"] and active["header_problems"] == []
        assert active["rows"] == 5 and active["rows_without_lead_id"] == 1
        assert active["duplicate_lead_ids"] == [101, 103]  # 101 twice here, 103 also in the archive
        archive = tabs["2026-10"]
        assert not archive["header_ok"]
        assert archive["header_problems"] == ["column B: header is «Имя клиента», expected «Клиент»"]
        assert archive["rows"] == 2 and archive["rows_without_lead_id"] == 0 and archive["duplicate_lead_ids"] == [103]
        assert "rows" not in tabs["Staff"] and "rows" not in tabs["Заметки"]
        assert report["staff"] == {"employees": 5, "colliding_codes": [["0134", "134"]]}
        problems = {(p["tab"], p["row"], p["problem"]) for p in report["layout_problems"]}
        assert ("Sheet1", 4, "the row has no lead id in column A") in problems
        assert ("2026-10", 1, archive["header_problems"][0]) in problems
        assert any(tab == "Sheet1" and row == 5 and "also has" in p for tab, row, p in problems)

        code, text, _ = _cli(capsys, tmp_path)
        assert code == 0
        lines = text.splitlines()
        assert any(line.startswith("Sheet1") and "active" in line and "OK" in line for line in lines)
        assert any(line.startswith("2026-10") and "«Имя клиента»" in line for line in lines)
        assert "Staff: 5 employees" in text and "codes 0134 = 134" in text


@pytest.mark.parametrize(
    ("change", "fault", "expected"),
    [
        ({"GOOGLE_SHEET_ID": ""}, None, "GOOGLE_SHEET_ID is not set"),
        (
            {"GOOGLE_SHEETS_API_URL": "", "GOOGLE_SERVICE_ACCOUNT_FILE": "/nonexistent/key.json"},
            None,
            "GOOGLE_SERVICE_ACCOUNT_FILE: no key file at /nonexistent/key.json",
        ),
        ({"GOOGLE_SHEETS_TOKEN": "ya29.wrong-token"}, None, "HTTP 401, the credentials were refused"),
        ({}, {"count": 1, "status": 403}, "HTTP 403, no access"),
        ({"GOOGLE_SHEET_ID": "1NoSuchSheet"}, None, "GOOGLE_SHEET_ID=1NoSuchSheet: HTTP 404, no such spreadsheet"),
    ],
    ids=["no-sheet-id", "no-key-file", "401", "403", "404"],
)
def test_inspect_sheets_configuration_errors_are_one_line(
    sandbox_env: dict[str, str],
    data_dir: Path,
    control: httpx.Client,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    fault: dict[str, Any] | None,
    expected: str,
) -> None:
    if fault is not None:
        control.post("/_sandbox/faults", json={"sheets": {"error_burst": fault}}).raise_for_status()
    with environment({**sandbox_env, "INTEGRATION_SYNC_DATA_DIR": str(data_dir), **change}):
        code, out, err = _cli(capsys, tmp_path)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert err.startswith("integration-sync: error: sheets account not configured: ")
    assert "Traceback" not in err and "ya29" not in err
