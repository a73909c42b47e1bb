"""`integration-sync sheet setup` against the Sheets emulator over real HTTP (gspread): the layout on
the seeded sheet, a second run that writes nothing, a damaged header refused, exit codes."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_sync import cli
from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.rotation import PERIOD_KEY
from integration_sync.defs.amocrm_sheets.settings import SheetsSettings
from integration_sync.defs.amocrm_sheets.sheet_setup import HeaderMismatch, ensure_layout
from integration_sync.sandbox.server import SandboxServer
from integration_sync.sandbox.sheets import SHEETS_TOKEN, SPREADSHEET_ID, STAFF_ROWS, sheets_env
from integration_sync_tests.amocrm_sheets.flow import book, tab_cells

NOV_15 = datetime(2026, 11, 15, 9, 0, tzinfo=UTC)


@pytest.fixture()
def env(fresh_small_sandbox: SandboxServer, tmp_path: Path) -> dict[str, str]:
    base = fresh_small_sandbox.base_url
    return {**sheets_env(base), "SANDBOX": base, "INTEGRATION_SYNC_DATA_DIR": str(tmp_path)}


def calls(env: dict[str, str]) -> dict[str, int]:
    stats = httpx.get(f"{env['SANDBOX']}/_sandbox/stats", timeout=10).json()["sheets"]
    return {k: int(v) for k, v in stats["by_method"].items()}


def seed(env: dict[str, str], sheets: list[dict[str, Any]]) -> None:
    spec = {"spreadsheetId": SPREADSHEET_ID, "sheets": sheets}
    httpx.post(f"{env['SANDBOX']}/_sandbox/sheets/spreadsheets", json=spec, timeout=10).raise_for_status()


def tabs(env: dict[str, str]) -> list[dict[str, Any]]:
    meta = book(env).fetch_sheet_metadata()
    return list(meta["sheets"])


def test_setup_lays_out_the_seeded_sheet_and_a_second_run_writes_nothing(env: dict[str, str]) -> None:
    settings = SheetsSettings.from_env(env)
    done = ensure_layout(book(env), settings, now=NOV_15)
    assert any("bold and frozen" in line for line in done) and any("Dashboard" in line for line in done)
    active = tab_cells(env, "Sheet1")
    assert active["rows"][0] == list(layout.COLUMNS)
    assert active["properties"]["gridProperties"]["frozenRowCount"] == 1  # guards: format_requests' freeze
    assert all(active["formats"][f"{layout.column_letter(i)}1"]["textFormat"]["bold"] for i in range(11))
    status = layout.STATUS_LETTER
    assert f"{status}1" not in active["validations"] and f"{status}2" in active["validations"]
    assert f"{status}1000" in active["validations"] and "I2" not in active["validations"]
    rule = active["validations"][f"{status}2"]
    assert rule["strict"] is True and rule["showCustomUi"] is True
    assert rule["condition"] == {
        "type": "ONE_OF_LIST",
        "values": [{"userEnteredValue": v} for v in layout.STATUS_CHOICES],
    }
    assert tab_cells(env, layout.STAFF_TAB)["rows"][1:3] == [list(r) for r in STAFF_ROWS[1:3]]  # rows kept
    sheets = {s["properties"]["title"]: s for s in tabs(env)}
    assert set(sheets) == {"Sheet1", layout.STAFF_TAB, layout.DASHBOARD_TAB}
    assert tab_cells(env, layout.DASHBOARD_TAB)["rows"] == []
    stamp = sheets["Sheet1"]["developerMetadata"][0]
    assert (stamp["metadataKey"], stamp["metadataValue"]) == (PERIOD_KEY, "2026-11")  # the flow's month

    spreadsheet = book(env)  # opening reads the metadata once
    before = calls(env)
    assert ensure_layout(spreadsheet, settings, now=NOV_15) == ["nothing to do: the spreadsheet already has the layout"]
    after = calls(env)
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert delta == {"get": 2}  # one metadata read, one batchGet; guards the stamp/frozen test in _existing_tab


def test_an_empty_or_missing_tab_gets_the_layout_written_raw(env: dict[str, str]) -> None:
    seed(env, [{"title": "Notes", "rows": [["keep me"]]}, {"title": "Sheet1"}])
    done = ensure_layout(book(env), SheetsSettings.from_env(env), now=NOV_15)
    assert "«Sheet1»: header row written" in done and "«Staff»: tab added with its header row" in done
    assert tab_cells(env, "Sheet1")["rows"] == [list(layout.COLUMNS)]
    assert tab_cells(env, layout.STAFF_TAB)["rows"] == [list(layout.STAFF_COLUMNS)]
    assert tab_cells(env, "Notes")["rows"] == [["keep me"]]
    seed(env, [{"title": "Notes"}])  # no active tab at all: added first, headers in the same batch
    ensure_layout(book(env), SheetsSettings.from_env(env), now=NOV_15)
    titles = [s["properties"]["title"] for s in tabs(env)]
    assert titles[0] == "Sheet1" and set(titles) == {"Sheet1", "Notes", "Staff", "Dashboard"}
    active = tab_cells(env, "Sheet1")
    assert active["rows"] == [list(layout.COLUMNS)] and active["properties"]["gridProperties"]["frozenRowCount"] == 1
    assert f"{layout.STATUS_LETTER}2" in active["validations"]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ({"op": "set", "cell": "B1", "value": "Контакт"}, "column B: header is «Контакт», expected «Клиент»"),
        ({"op": "insert_column"}, "column C: header is «Заметка», expected «Телефон»"),
    ],
)
def test_a_damaged_header_is_refused_and_nothing_is_written(
    env: dict[str, str], edit: dict[str, str], problem: str
) -> None:
    header = list(layout.COLUMNS)
    if edit["op"] == "insert_column":
        header.insert(2, "Заметка")
    else:
        header[1] = edit["value"]
    seed(env, [{"title": "Sheet1", "rows": [header, ["17", "a"]]}])
    before = calls(env)
    with pytest.raises(HeaderMismatch) as caught:
        ensure_layout(book(env), SheetsSettings.from_env(env), now=NOV_15)
    assert f"«Sheet1» {problem}" in caught.value.problems  # guards: `if plan.problems: raise` before writing
    after = calls(env)
    assert after.get("post", 0) == before.get("post", 0) and after.get("put", 0) == before.get("put", 0)
    assert tab_cells(env, "Sheet1")["rows"][0] == header
    assert [s["properties"]["title"] for s in tabs(env)] == ["Sheet1"]  # not even Staff or Dashboard added


def run_cli(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = cli.main(["sheet", "setup", "--project-dir", os.getcwd(), *extra])
    out, err = capsys.readouterr()
    assert SHEETS_TOKEN not in out + err and "Traceback" not in out + err
    return code, out, err


def test_the_command_exit_codes(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, _ = run_cli(capsys, "--json")
    assert code == 0 and '"ok": true' in out and "Dashboard" in out
    code, out, _ = run_cli(capsys)
    assert (code, out.strip()) == (0, "nothing to do: the spreadsheet already has the layout")

    control = f"{env['SANDBOX']}/_sandbox/sheets/spreadsheets/{SPREADSHEET_ID}/edit"
    httpx.post(
        control, json={"sheet": "Sheet1", "op": "set", "cell": "J1", "value": "Статус заказа"}
    ).raise_for_status()
    code, out, err = run_cli(capsys)
    assert code == 1 and "column J: header is «Статус заказа», expected «Статус»" in out and "nothing" in err

    monkeypatch.setenv("GOOGLE_SHEET_ID", "")
    code, _, err = run_cli(capsys)
    assert (code, err.strip()) == (2, "integration-sync: error: GOOGLE_SHEET_ID is not set")
    monkeypatch.setenv("GOOGLE_SHEET_ID", SPREADSHEET_ID)
    monkeypatch.setenv("GOOGLE_SHEETS_API_URL", "")
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT_FILE", str(tmp_path / "missing.json"))
    code, _, err = run_cli(capsys)
    assert code == 2 and "GOOGLE_SERVICE_ACCOUNT_FILE: no key file at" in err and len(err.strip().splitlines()) == 1
