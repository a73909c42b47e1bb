"""The Google Sheets API v4 emulator, exercised over real HTTP with plain httpx."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from integration_sync.sandbox.sheets import SHEETS_TOKEN, SPREADSHEET_ID

API = f"/sheets/v4/spreadsheets/{SPREADSHEET_ID}"
AUTH = {"Authorization": f"Bearer {SHEETS_TOKEN}"}


def values_url(rng: str, suffix: str = "") -> str:
    return f"{API}/values/{quote(rng)}{suffix}"


def seed(control: httpx.Client, rows: list[list[Any]], title: str = "Leads") -> None:
    spec = {"spreadsheetId": SPREADSHEET_ID, "sheets": [{"title": title, "rows": rows}, {"title": "Staff"}]}
    control.post("/_sandbox/sheets/spreadsheets", json=spec).raise_for_status()


def raw_cells(control: httpx.Client, title: str) -> list[list[Any]]:
    answer = control.get(f"/_sandbox/sheets/spreadsheets/{SPREADSHEET_ID}/cells", params={"sheet": title}).json()
    rows: list[list[Any]] = answer["rows"]
    return rows


def test_metadata_lists_tabs_with_grid_properties(control: httpx.Client) -> None:
    answer = control.get(API, params={"includeGridData": "false"}, headers=AUTH).json()
    assert answer["spreadsheetId"] == SPREADSHEET_ID
    props = [sheet["properties"] for sheet in answer["sheets"]]
    assert (props[0]["sheetId"], props[0]["title"], props[0]["index"]) == (0, "Sheet1", 0)
    assert props[1]["title"] == "Staff" and props[1]["index"] == 1
    assert props[0]["gridProperties"] == {"rowCount": 1000, "columnCount": 26}
    assert {"title", "locale", "timeZone"} <= set(answer["properties"])


def test_values_come_back_as_formatted_strings_ragged_and_trimmed(control: httpx.Client) -> None:
    seed(control, [["a", "", 3, ""], [], ["", 12.0, True], [], ["", ""]])
    answer = control.get(values_url("'Leads'"), headers=AUTH).json()
    assert answer == {
        "range": "Leads!A1:Z1000",
        "majorDimension": "ROWS",
        "values": [["a", "", "3"], [], ["", "12", "TRUE"]],
    }
    empty = control.get(values_url("Leads!D4"), headers=AUTH).json()
    assert empty == {"range": "Leads!D4", "majorDimension": "ROWS"}  # no "values" key at all
    batch = control.get(f"{API}/values:batchGet", params={"ranges": ["Leads!A1:B1", "Leads!C3"]}, headers=AUTH)
    assert [vr.get("values") for vr in batch.json()["valueRanges"]] == [[["a"]], [["TRUE"]]]
    seed(control, [])
    assert "values" not in control.get(values_url("Leads"), headers=AUTH).json()


def test_raw_keeps_text_user_entered_parses_numbers(control: httpx.Client) -> None:
    body = {"values": [["0134", "=SUM(1,2)", "12"]], "majorDimension": None}
    raw = control.put(values_url("Sheet1!A2:C2"), params={"valueInputOption": "RAW"}, json=body, headers=AUTH)
    assert raw.json()["updatedRange"] == "Sheet1!A2:C2" and raw.json()["updatedCells"] == 3
    typed = control.put(values_url("Sheet1!A3"), params={"valueInputOption": "USER_ENTERED"}, json=body, headers=AUTH)
    assert typed.json()["updatedRange"] == "Sheet1!A3:C3"
    rows = control.get(values_url("Sheet1!A2:C3"), headers=AUTH).json()["values"]
    assert rows == [["0134", "=SUM(1,2)", "12"], ["134", "=SUM(1,2)", "12"]]
    assert raw_cells(control, "Sheet1")[1:3] == [["0134", "=SUM(1,2)", "12"], [134, "=SUM(1,2)", 12]]
    missing = control.put(values_url("Sheet1!A2"), json=body, headers=AUTH)
    assert missing.status_code == 400 and "valueInputOption" in missing.json()["error"]["message"]
    too_wide = control.put(values_url("Sheet1!A2:B2"), params={"valueInputOption": "RAW"}, json=body, headers=AUTH)
    assert too_wide.status_code == 400 and "tried writing to column [C]" in too_wide.json()["error"]["message"]


def test_append_goes_after_the_table(control: httpx.Client) -> None:
    seed(control, [["id", "name"], ["1", "a"], [], ["3", "c"]])
    params = {"valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS"}
    body = {"values": [["4", "d"], ["5", "e"]]}
    answer = control.post(values_url("'Leads'", ":append"), params=params, json=body, headers=AUTH).json()
    assert answer["updates"]["updatedRange"] == "Leads!A5:B6" and answer["updates"]["updatedRows"] == 2
    assert answer["tableRange"] == "Leads!A1:B4"
    rows = control.get(values_url("Leads"), headers=AUTH).json()["values"]
    assert rows[-2:] == [["4", "d"], ["5", "e"]] and rows[2] == []


def test_clear_and_batch_update_values(control: httpx.Client) -> None:
    seed(control, [["a", "b"], ["c", "d"]])
    data = [{"range": "'Leads'!A1:B1", "values": [["x", ""]]}, {"range": "'Leads'!A4", "values": [["y"]]}]
    answer = control.post(f"{API}/values:batchUpdate", json={"valueInputOption": "RAW", "data": data}, headers=AUTH)
    assert answer.json()["totalUpdatedCells"] == 3 and answer.json()["totalUpdatedSheets"] == 1
    assert control.get(values_url("Leads"), headers=AUTH).json()["values"] == [["x"], ["c", "d"], [], ["y"]]
    cleared = control.post(values_url("Leads", ":clear"), headers=AUTH).json()
    assert cleared["clearedRange"] == "Leads!A1:Z1000"
    assert "values" not in control.get(values_url("Leads"), headers=AUTH).json()


def test_structure_batch_update_replies_in_order_and_is_all_or_nothing(control: httpx.Client) -> None:
    grid = {"sheetId": 0, "startRowIndex": 1, "endRowIndex": 50, "startColumnIndex": 9, "endColumnIndex": 10}
    rule = {"condition": {"type": "ONE_OF_LIST", "values": [{"userEnteredValue": "Отказ"}]}, "showCustomUi": True}
    chart = {"spec": {"title": "KPI"}, "position": {"overlayPosition": {"anchorCell": {"sheetId": 0}}}}
    requests = [
        {"addSheet": {"properties": {"title": "Dashboard", "gridProperties": {"rowCount": 20, "columnCount": 5}}}},
        {"duplicateSheet": {"sourceSheetId": 0, "newSheetName": "2026-11"}},
        {"updateSheetProperties": {"properties": {"sheetId": 0, "title": "Active"}, "fields": "title"}},
        {"setDataValidation": {"range": grid, "rule": rule}},
        {
            "repeatCell": {
                "range": {**grid, "endRowIndex": 2},
                "cell": {"userEnteredValue": {"stringValue": "В процессе"}},
                "fields": "userEnteredValue",
            }
        },
        {"addChart": {"chart": chart}},
    ]
    answer = control.post(f"{API}:batchUpdate", json={"requests": requests}, headers=AUTH).json()
    replies = answer["replies"]
    assert [next(iter(r), None) for r in replies] == ["addSheet", "duplicateSheet", None, None, None, "addChart"]
    assert replies[0]["addSheet"]["properties"]["gridProperties"] == {"rowCount": 20, "columnCount": 5}
    assert replies[1]["duplicateSheet"]["properties"]["title"] == "2026-11"
    assert control.get(values_url("Active!J2"), headers=AUTH).json()["values"] == [["В процессе"]]
    meta = control.get(API, headers=AUTH).json()
    assert [s["properties"]["title"] for s in meta["sheets"]] == ["Active", "2026-11", "Staff", "Dashboard"]
    bad = [{"addSheet": {"properties": {"title": "Never"}}}, {"fooBar": {}}]
    refused = control.post(f"{API}:batchUpdate", json={"requests": bad}, headers=AUTH)
    assert refused.status_code == 400 and refused.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert 'Unknown name "fooBar"' in refused.json()["error"]["message"]
    assert "Never" not in [s["properties"]["title"] for s in control.get(API, headers=AUTH).json()["sheets"]]
    hide_all = [
        {
            "updateSheetProperties": {
                "properties": {"sheetId": s["properties"]["sheetId"], "hidden": True},
                "fields": "hidden",
            }
        }
        for s in meta["sheets"]
    ]
    hidden = control.post(f"{API}:batchUpdate", json={"requests": hide_all}, headers=AUTH).json()["error"]
    assert hidden["message"].endswith("You can't hide all the sheets in a document.")


@pytest.mark.parametrize(
    ("path", "headers", "status", "google_status"),
    [
        (values_url("Nope!A1"), AUTH, 400, "INVALID_ARGUMENT"),
        ("/sheets/v4/spreadsheets/unknown-id", AUTH, 404, "NOT_FOUND"),
        (API, {}, 401, "UNAUTHENTICATED"),
        (API, {"Authorization": "Bearer wrong"}, 401, "UNAUTHENTICATED"),
    ],
)
def test_errors_use_googles_envelope(
    control: httpx.Client, path: str, headers: dict[str, str], status: int, google_status: str
) -> None:
    answer = control.get(path, headers=headers)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["code"] == status and error["status"] == google_status
    if status == 400:
        assert error["message"] == "Unable to parse range: Nope!A1"
    if status == 404:
        assert error["message"] == "Requested entity was not found."


def test_quota_60_reads_and_60_writes_per_minute_counted_apart(sandbox: Any, control: httpx.Client) -> None:
    for _ in range(60):
        assert control.get(values_url("Sheet1!A1"), headers=AUTH).status_code == 200
    over = control.get(values_url("Sheet1!A1"), headers=AUTH)
    assert over.status_code == 429 and "retry-after" not in over.headers
    error = over.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    info = next(d for d in error["details"] if d["@type"].endswith("ErrorInfo"))
    assert info["reason"] == "RATE_LIMIT_EXCEEDED"
    assert info["metadata"]["quota_limit"] == "ReadRequestsPerMinutePerUser"
    assert info["metadata"]["quota_limit_value"] == "60" and "quota_metric" in info["metadata"]
    assert any(d["@type"].endswith("Help") for d in error["details"])
    write = {"values": [["x"]]}
    for _ in range(60):  # reads exhausted, writes still have their own 60
        ok = control.put(values_url("Sheet1!A2"), params={"valueInputOption": "RAW"}, json=write, headers=AUTH)
        assert ok.status_code == 200
    refused = control.put(values_url("Sheet1!A2"), params={"valueInputOption": "RAW"}, json=write, headers=AUTH)
    assert refused.status_code == 429
    assert refused.json()["error"]["details"][0]["metadata"]["quota_limit"] == "WriteRequestsPerMinutePerUser"
    sandbox.sandbox.clock.advance(61)  # a sliding minute later both budgets are back
    assert control.get(values_url("Sheet1!A1"), headers=AUTH).status_code == 200
    assert control.put(values_url("Sheet1!A2"), params={"valueInputOption": "RAW"}, json=write, headers=AUTH).is_success


def test_operator_edits(control: httpx.Client) -> None:
    seed(control, [["id", "status", "order"], ["11", "В процессе"], ["12", "В процессе"], ["13", "В процессе"]])
    grid = {"sheetId": 0, "startRowIndex": 1, "endRowIndex": 4, "startColumnIndex": 1, "endColumnIndex": 2}
    rule = {"condition": {"type": "ONE_OF_LIST", "values": [{"userEnteredValue": "Отказ"}]}}
    validation = {"requests": [{"setDataValidation": {"range": grid, "rule": rule}}]}
    control.post(f"{API}:batchUpdate", json=validation, headers=AUTH).raise_for_status()
    edit = f"/_sandbox/sheets/spreadsheets/{SPREADSHEET_ID}/edit"
    control.post(edit, json={"sheet": "Leads", "op": "set", "cell": "C3", "value": "0777"}).raise_for_status()
    control.post(edit, json={"sheet": "Leads", "op": "delete_row", "row": 2}).raise_for_status()
    control.post(edit, json={"sheet": "Leads", "op": "set", "cell": "E4", "value": "Отказ"}).raise_for_status()
    cells = control.get(f"/_sandbox/sheets/spreadsheets/{SPREADSHEET_ID}/cells", params={"sheet": "Leads"}).json()
    assert sorted(cells["validations"]) == ["B2", "B3"]  # the deleted row's dropdown went, the others moved up
    rows = control.get(values_url("Leads"), headers=AUTH).json()["values"]
    # typed into a number-formatted cell, «0777» became 777; row 2 is gone; E is the wrong column
    assert rows == [
        ["id", "status", "order"],
        ["12", "В процессе", "777"],
        ["13", "В процессе"],
        ["", "", "", "", "Отказ"],
    ]


def test_a_value_that_is_not_a_list_of_rows_is_refused_as_google_words_it(control: httpx.Client) -> None:
    """api-samples/gsheets/error_400_invalid_value.json: `{"values": "X"}` → 400 with the value as JSON."""
    answer = control.put(
        values_url("Sheet1!A2"), params={"valueInputOption": "RAW"}, json={"values": "X"}, headers=AUTH
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == "Invalid value at 'data.values' (type.googleapis.com/google.protobuf.ListValue), \"X\""
