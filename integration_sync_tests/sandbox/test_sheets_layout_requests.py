"""The Sheets emulator's batchUpdate requests that lay a tab out (updateCells, repeatCell formats under a
field mask, frozen rows, developer metadata on a sheet), over real HTTP with plain httpx."""

from __future__ import annotations

from typing import Any

import httpx

from integration_sync.sandbox.sheets import SHEETS_TOKEN, SPREADSHEET_ID

API = f"/sheets/v4/spreadsheets/{SPREADSHEET_ID}"
AUTH = {"Authorization": f"Bearer {SHEETS_TOKEN}"}


def batch(control: httpx.Client, *requests: dict[str, Any]) -> httpx.Response:
    return control.post(f"{API}:batchUpdate", json={"requests": list(requests)}, headers=AUTH)


def cells(control: httpx.Client, title: str) -> dict[str, Any]:
    answer: dict[str, Any] = control.get(
        f"/_sandbox/sheets/spreadsheets/{SPREADSHEET_ID}/cells", params={"sheet": title}
    ).json()
    return answer


def sheets(control: httpx.Client) -> dict[str, Any]:
    return {s["properties"]["title"]: s for s in control.get(API, headers=AUTH).json()["sheets"]}


def test_update_cells_writes_under_its_field_mask(control: httpx.Client) -> None:
    row = {"values": [{"userEnteredValue": {"stringValue": "0134"}}, {}, {"userEnteredValue": {"numberValue": 2}}]}
    start = {"sheetId": 0, "rowIndex": 1, "columnIndex": 0}
    old = {"values": [["x", "old"]]}
    control.put(
        f"{API}/values/Sheet1!A2", params={"valueInputOption": "RAW"}, json=old, headers=AUTH
    ).raise_for_status()
    assert batch(control, {"updateCells": {"rows": [row], "fields": "userEnteredValue", "start": start}}).is_success
    assert cells(control, "Sheet1")["rows"][1] == ["0134", "", 2]  # the empty CellData cleared B2
    grid = {"sheetId": 0, "startRowIndex": 1, "endRowIndex": 2, "startColumnIndex": 0, "endColumnIndex": 1}
    clipped = {"updateCells": {"rows": [row], "fields": "userEnteredValue", "range": grid}}
    assert batch(control, clipped).is_success
    both = {"updateCells": {"rows": [row], "fields": "userEnteredValue", "start": start, "range": grid}}
    unmasked = {"updateCells": {"rows": [row], "start": start}}
    outside = {"updateCells": {"rows": [row], "fields": "userEnteredValue", "start": {**start, "columnIndex": 25}}}
    for bad in (both, unmasked, outside):
        answer = batch(control, bad)
        assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_formats_follow_the_mask_and_frozen_rows_are_kept(control: httpx.Client) -> None:
    header = {"sheetId": 0, "startRowIndex": 0, "endRowIndex": 1, "startColumnIndex": 0, "endColumnIndex": 2}
    bold = {"userEnteredFormat": {"textFormat": {"bold": True, "italic": True}}}
    only_bold = {"repeatCell": {"range": header, "cell": bold, "fields": "userEnteredFormat.textFormat.bold"}}
    grouped = {"repeatCell": {"range": header, "cell": bold, "fields": "userEnteredFormat(textFormat)"}}
    assert batch(control, only_bold).is_success
    assert cells(control, "Sheet1")["formats"]["A1"] == {"textFormat": {"bold": True}}
    assert batch(control, grouped).is_success
    assert cells(control, "Sheet1")["formats"]["B1"] == {"textFormat": {"bold": True, "italic": True}}
    wrong = {"repeatCell": {"range": header, "cell": bold, "fields": "userEnteredFormats.textFormat"}}
    added = {"addSheet": {"properties": {"title": "Never", "gridProperties": {"rowCount": 5, "frozenRowCount": 1}}}}
    refused = batch(control, added, wrong)
    assert refused.status_code == 400 and "Invalid field mask path" in refused.json()["error"]["message"]
    assert "Never" not in sheets(control)  # all or nothing
    assert batch(control, added).is_success
    assert sheets(control)["Never"]["properties"]["gridProperties"] == {
        "rowCount": 5,
        "columnCount": 26,
        "frozenRowCount": 1,
    }
    same_id = {"addSheet": {"properties": {"title": "Twin", "sheetId": 0}}}
    assert batch(control, same_id).status_code == 400


def test_developer_metadata_on_a_sheet(control: httpx.Client) -> None:
    made = {"metadataKey": "k", "metadataValue": "2026-11", "location": {"sheetId": 0}, "visibility": "DOCUMENT"}
    reply = batch(control, {"createDeveloperMetadata": {"developerMetadata": made}}).json()["replies"][0]
    created = reply["createDeveloperMetadata"]["developerMetadata"]
    assert created["location"] == {"locationType": "SHEET", "sheetId": 0} and created["metadataId"] > 0
    assert sheets(control)["Sheet1"]["developerMetadata"] == [created]
    assert "developerMetadata" not in sheets(control)["Staff"]
    for missing in ("metadataKey", "visibility"):
        partial = {k: v for k, v in made.items() if k != missing}
        assert batch(control, {"createDeveloperMetadata": {"developerMetadata": partial}}).status_code == 400
    lookup = {"developerMetadataLookup": {"metadataId": created["metadataId"]}}
    update = {"dataFilters": [lookup], "developerMetadata": {"metadataValue": "2026-12"}, "fields": "metadataValue"}
    assert batch(control, {"updateDeveloperMetadata": update}).is_success
    assert sheets(control)["Sheet1"]["developerMetadata"][0]["metadataValue"] == "2026-12"
    assert batch(control, {"updateDeveloperMetadata": {**update, "fields": "location"}}).status_code == 400
    assert batch(control, {"deleteSheet": {"sheetId": 0}}).is_success  # its metadata goes with it
    assert all("developerMetadata" not in s for s in sheets(control).values())
