"""gspread for real against the Sheets emulator, through `connectors.sheets` (rate budget, bounded retry)."""

from __future__ import annotations

from typing import Any

import gspread
import httpx
import pytest
from gspread.utils import ValidationConditionType

from integration_sync.connectors.ratelimit import RateLimiter
from integration_sync.connectors.sheets import PolicyAdapter, sheets_client, sheets_limiter
from integration_sync.sandbox.sheets import SHEETS_TOKEN, SPREADSHEET_ID
from integration_sync_tests.connectors.sandbox_support import FAST_POLICY


def client(sandbox: Any, limiter: RateLimiter | None = None, sleeps: list[float] | None = None) -> gspread.Client:
    record = sleeps if sleeps is not None else []
    return sheets_client(
        None,
        base_url=f"{sandbox.base_url}/sheets",
        token=SHEETS_TOKEN,
        limiter=limiter,
        policy=FAST_POLICY,
        sleep=record.append,
    )


def adapter(gc: gspread.Client) -> PolicyAdapter:
    found = gc.http_client.session.get_adapter("http://")
    assert isinstance(found, PolicyAdapter)
    return found


def cells(control: httpx.Client, title: str) -> Any:
    return control.get(f"/_sandbox/sheets/spreadsheets/{SPREADSHEET_ID}/cells", params={"sheet": title}).json()


def test_gspread_round_trip(sandbox: Any, control: httpx.Client) -> None:
    rows = [["id", "name", "code"], ["1", "", "0134"], [], ["3", "c"]]
    spec = {"spreadsheetId": SPREADSHEET_ID, "sheets": [{"title": "Sheet1", "rows": rows}]}
    control.post("/_sandbox/sheets/spreadsheets", json=spec).raise_for_status()
    sh = client(sandbox).open_by_key(SPREADSHEET_ID)
    ws = sh.worksheet("Sheet1")
    assert ws.get_all_values() == [["id", "name", "code"], ["1", "", "0134"], ["", "", ""], ["3", "c", ""]]
    ws.update([["0144"]], "C4")  # gspread's default is RAW: the leading zero stays
    ws.update([["0155", "=1+1"]], "C5:D5", value_input_option=gspread.utils.ValueInputOption.user_entered)
    assert ws.get_values("C4:D5") == [["0144", ""], ["155", "=1+1"]]  # gspread pads the ragged rows
    ws.append_rows([["6", "f"], ["7", "g"]])
    ws.batch_update([{"range": "B2", "values": [["b"]]}, {"range": "A3:B3", "values": [["2", "b2"]]}])
    assert ws.get_all_values()[1:3] == [["1", "b", "0134", ""], ["2", "b2", "", ""]]
    assert ws.get_all_values()[-2:] == [["6", "f", "", ""], ["7", "g", "", ""]]
    new = sh.add_worksheet("Dashboard", rows=20, cols=5)
    assert (new.row_count, new.col_count) == (20, 5)
    archive = ws.duplicate(new_sheet_name="2026-11")
    assert archive.get_all_values() == ws.get_all_values()
    ws.add_validation(
        "J2:J50", ValidationConditionType.one_of_list, ["В процессе", "У курера", "Успешно", "Отказ"], showCustomUi=True
    )
    validation = cells(control, "Sheet1")["validations"]["J2"]
    assert validation["condition"]["type"] == "ONE_OF_LIST" and validation["showCustomUi"] is True
    ws.clear()
    assert ws.get_all_values() == [[]]
    assert [w.title for w in sh.worksheets()] == ["Sheet1", "2026-11", "Dashboard"]
    with pytest.raises(gspread.SpreadsheetNotFound):
        client(sandbox).open_by_key("no-such-sheet")


def test_the_61st_read_in_a_minute_is_waited_out_not_refused(sandbox: Any) -> None:
    clock = sandbox.sandbox.clock
    reads = sheets_limiter("read", clock=clock.now, sleep=clock.advance)  # sleeping moves the emulator's clock
    gc = client(sandbox, reads, sleeps=[])
    ws = gc.open_by_key(SPREADSHEET_ID).worksheet("Sheet1")  # 2 reads
    for _ in range(60):
        ws.get_all_values()
    assert sandbox.sandbox.sheets.throttled == 0  # the emulator never had to say 429
    assert adapter(gc).retries == 0
    assert reads.waited_s >= 1.0  # the limiter, not the service, made the 61st read wait


def test_a_429_is_retried_a_bounded_number_of_times(sandbox: Any, control: httpx.Client) -> None:
    sleeps: list[float] = []
    gc = client(sandbox, sleeps=sleeps)
    ws = gc.open_by_key(SPREADSHEET_ID).worksheet("Sheet1")
    control.post("/_sandbox/faults", json={"sheets": {"error_burst": {"count": 2, "status": 429}}}).raise_for_status()
    assert ws.get_all_values()[0][0] == "ID сделки"
    assert adapter(gc).retries == 2 and len(sleeps) == 2
    control.post("/_sandbox/faults", json={"sheets": {"error_burst": {"count": 50, "status": 429}}}).raise_for_status()
    before = sandbox.sandbox.sheets.requests
    with pytest.raises(gspread.exceptions.APIError) as raised:
        ws.get_all_values()
    assert raised.value.response.status_code == 429
    assert sandbox.sandbox.sheets.requests - before == FAST_POLICY.max_attempts  # then it stops


def test_a_5xx_on_an_append_is_not_resent(sandbox: Any, control: httpx.Client) -> None:
    gc = client(sandbox)
    ws = gc.open_by_key(SPREADSHEET_ID).worksheet("Sheet1")
    burst = {"count": 1, "status": 503, "methods": ["post"]}
    control.post("/_sandbox/faults", json={"sheets": {"error_burst": burst}}).raise_for_status()
    with pytest.raises(gspread.exceptions.APIError) as raised:
        ws.append_rows([["1"]])
    assert raised.value.response.status_code == 503  # it may have been applied: the caller decides
    assert adapter(gc).retries == 0
    control.post("/_sandbox/faults", json={"sheets": {"error_burst": {"count": 1, "status": 503}}}).raise_for_status()
    assert ws.get_all_values()[0][0] == "ID сделки"  # a read is safe to resend
    assert adapter(gc).retries == 1
