"""`integration-sync amocrm import-xlsx` against the seller's sandbox account over real HTTP."""

from __future__ import annotations

import json
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest

from integration_sync.cli import main
from integration_sync.defs.amocrm_sheets.import_xlsx_rows import ImportKeyRule, Row, find_columns, parse_row
from integration_sync.sandbox.amocrm_seller import (
    PRODUCT_ENUMS,
    SELLER_FIELD_ORDER_DATE,
    SELLER_FIELD_ORDER_NO,
    SELLER_FIELD_PRODUCT,
    SELLER_PIPELINE_MAIN,
    seller_env,
)
from integration_sync.sync.normalize import normalize_phone

TRIGGER = 91000012  # «ЗАКАЗ БЕЗ НУМЕРАЦИИ» of the main (first «sotuv») pipeline
SENT = 91000013  # «ЗАКАЗ ОТПРАВЛЕН» there
HEADER = [" клиент ", "Телефон", "Компания", "Product", "Дата заказа", "Регион", "Код сотрудника", "Заказ №", "Этап"]
BAD_ROWS = {
    4: "no phone and no contact name",
    5: "not a phone",
    6: "not a Продукт value",
    7: "not a date",
    11: "status",
}


@pytest.fixture()
def env(sandbox: Any, sandbox_env: dict[str, str], data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    values = {
        **sandbox_env,
        **seller_env(sandbox.base_url),
        "INTEGRATION_SYNC_DATA_DIR": str(data_dir),
        "WAREHOUSE_PATH": str(data_dir / "warehouse.duckdb"),
        "IMPORT_BATCH_SIZE": "3",
        "IMPORT_DELAY_SEC": "0",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return values


def amo(control: httpx.Client, kind: str) -> list[dict[str, Any]]:
    return list(control.get(f"/_sandbox/amocrm-seller/{kind}").json())


def posts(control: httpx.Client, path: str) -> int:
    return int(control.get("/_sandbox/stats").json()["amocrm-seller"]["by_method"].get(f"POST {path}", 0))


def known_contact(control: httpx.Client) -> tuple[int, str]:
    """A seeded contact with a phone the import reads as the same number."""
    for contact in amo(control, "contacts"):
        for item in contact.get("custom_fields_values") or []:
            for value in item["values"] if item.get("field_code") == "PHONE" else []:
                if normalize_phone(value["value"], "UZ"):
                    return int(contact["id"]), str(value["value"])
    raise AssertionError("no seeded contact with a phone")


def workbook(path: Path, rows: list[list[Any]], title: str = "Leads") -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = title
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def mixed_rows(existing_phone: str) -> list[list[Any]]:
    return [
        HEADER,  # row 1
        [
            "Aziz Karimov",
            "+998 90 111 22 33",
            "Baraka Market",
            "Krem Aloe Vera",
            date(2026, 11, 20),
            "Toshkent",
            "0134",
        ],
        ["Dilnoza", 998901112244, None, "shampun argan", "21.11.2026", "Samarqand", 144],  # 3: number, case
        [None, None, "ChP Nur", "Krem Aloe Vera"],  # 4: nobody
        ["Jasur", "12345", None, "Krem Aloe Vera"],  # 5: not a phone
        ["Madina", "+998 91 222 33 44", None, "Green tea"],  # 6: unknown product
        ["Otabek", "+998 93 333 44 55", None, "Choy Detox", "yesterday"],  # 7: not a date
        ["Zarina", "+998 94 444 55 66", None, "Choy Detox", datetime(2026, 11, 22, 15, 30), None, None, "IMP-1"],
        [],  # 9: empty
        ["Sardor", None, None, "Massajyor Pro"],  # 10: a name, no phone
        ["Nodira", "+998 95 555 66 77", None, "Choy Detox", None, None, None, None, "No such stage"],  # 11
        ["Gulnora", "8 97 666 77 88", None, "Vitamin D3 2000", None, None, None, None, "заказ отправлен"],  # 12
        ["Known Customer", existing_phone, None, "Choy Detox"],  # 13: the account has this contact
    ]


def run(path: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["amocrm", "import-xlsx", str(path), "--project-dir", str(path.parent), "--json", *extra])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_mixed_file_imports_good_rows_reports_bad_ones_and_a_reimport_creates_nothing(
    env: dict[str, str], control: httpx.Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    contact_id, phone = known_contact(control)
    path = workbook(tmp_path / "leads.xlsx", mixed_rows(phone))
    leads_before, contacts_before = len(amo(control, "leads")), len(amo(control, "contacts"))

    code, result = run(path, capsys=capsys)

    assert code == 1, result  # some rows were bad
    assert {b["row"] for b in result["bad_rows"]} == set(BAD_ROWS), result["bad_rows"]
    for bad in result["bad_rows"]:
        assert BAD_ROWS[bad["row"]] in bad["reason"], bad
    assert (result["read"], result["bad"], result["created"], result["rejected"]) == (11, 5, 6, 0), result
    leads = {lead["id"]: lead for lead in amo(control, "leads")}
    assert len(leads) == leads_before + 6
    assert len(amo(control, "contacts")) == contacts_before + 5  # row 13's contact was found, not made
    new = sorted((lead for lead in leads.values() if "#xlsx-" in lead["name"] or "IMP-1" in lead["name"]), key=str)
    by_name = {lead["name"].split(" — ")[0]: lead for lead in new}
    aziz = by_name["Aziz Karimov"]
    assert (aziz["pipeline_id"], aziz["status_id"]) == (SELLER_PIPELINE_MAIN, TRIGGER)
    fields = {f["field_id"]: f["values"][0] for f in aziz["custom_fields_values"]}
    assert fields[SELLER_FIELD_PRODUCT]["enum_id"] == PRODUCT_ENUMS["Krem Aloe Vera"]
    assert int(fields[SELLER_FIELD_ORDER_DATE]["value"]) == 1795114800  # 2026-11-20 00:00 in Tashkent (UTC+5)
    assert by_name["Gulnora"]["status_id"] == SENT  # the row's own stage, by name
    known = next(lead for lead in new if lead["name"].startswith("Known Customer"))
    assert [c["id"] for c in known["_embedded"]["contacts"]] == [contact_id]
    ordered = next(lead for lead in new if "IMP-1" in lead["name"])
    assert {f["field_id"]: f["values"][0]["value"] for f in ordered["custom_fields_values"]}[
        SELLER_FIELD_ORDER_NO
    ] == "IMP-1"

    # the same leads in another file, another order: nothing new
    rows = mixed_rows(phone)
    again = workbook(tmp_path / "again.xlsx", [rows[0], *reversed(rows[1:])], title="Other")
    code, result = run(again, capsys=capsys)
    assert (result["created"], result["already_there"], result["bad"]) == (0, 6, 5), result
    assert code == 1
    assert len(amo(control, "leads")) == leads_before + 6


def test_a_lost_warehouse_doubles_nothing(
    env: dict[str, str], control: httpx.Client, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, phone = known_contact(control)
    rows = [r for i, r in enumerate(mixed_rows(phone), start=1) if i not in BAD_ROWS]
    path = workbook(tmp_path / "good.xlsx", rows)
    leads_before = len(amo(control, "leads"))
    code, result = run(path, capsys=capsys)
    assert (code, result["created"]) == (0, 6), result

    for item in data_dir.glob("warehouse.duckdb*"):
        item.unlink()
    code, result = run(path, "--dry-run", capsys=capsys)
    assert (code, result["would_create"], result["already_there"]) == (0, 0, 6), result
    code, result = run(path, capsys=capsys)

    assert (code, result["created"], result["already_there"]) == (0, 0, 6), result
    assert len(amo(control, "leads")) == leads_before + 6


def test_dry_run_creates_nothing_and_leads_go_in_batches(
    env: dict[str, str],
    control: httpx.Client,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows: list[list[Any]] = [HEADER]
    rows += [[f"Client {n}", f"+998 90 700 {n:02d} {n:02d}", None, "Choy Detox"] for n in range(8)]
    path = workbook(tmp_path / "eight.xlsx", rows)
    leads_before = len(amo(control, "leads"))

    code, result = run(path, "--dry-run", capsys=capsys)
    assert (code, result["would_create"], result["created"]) == (0, 8, 0), result
    assert result["plan"][0]["row"] == 2 and result["plan"][0]["fields"]["contact.phone"] == "+998907000000"
    assert len(amo(control, "leads")) == leads_before
    assert posts(control, "leads/complex") + posts(control, "leads") == 0

    monkeypatch.setenv("IMPORT_DELAY_SEC", "1")
    started = time.monotonic()
    code, result = run(path, capsys=capsys)
    elapsed = time.monotonic() - started

    assert (code, result["created"]) == (0, 8), result
    assert len(amo(control, "leads")) == leads_before + 8
    assert posts(control, "leads/complex") == 3  # IMPORT_BATCH_SIZE=3: 3 + 3 + 2
    assert elapsed >= 2.0, elapsed  # IMPORT_DELAY_SEC between the three batches


def test_text_cli_summary_and_configuration_errors(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = workbook(tmp_path / "one.xlsx", [["Title of the report"], HEADER, ["Ali", "+998 90 123 45 67", None, "Tea"]])
    code = main(["amocrm", "import-xlsx", str(path), "--dry-run", "--project-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("dry run: read 1, bad 1, would create 0, already there 0, rejected 0")
    assert "row 3: «Tea» is not a Продукт value" in out
    assert "columns not imported: Компания (companies are not written yet)" in out

    assert main(["amocrm", "import-xlsx", str(path), "--sheet", "Nope", "--project-dir", str(tmp_path)]) == 2
    assert "has no sheet 'Nope'" in capsys.readouterr().err
    (tmp_path / "not.xlsx").write_text("a,b\n")
    assert main(["amocrm", "import-xlsx", str(tmp_path / "not.xlsx"), "--project-dir", str(tmp_path)]) == 2
    monkeypatch.setenv("PIPELINE_KEYWORD", "no-such-pipeline")
    assert main(["amocrm", "import-xlsx", str(path), "--project-dir", str(tmp_path)]) == 2
    assert "PIPELINE_KEYWORD" in capsys.readouterr().err


def test_rows_keys_and_the_key_on_a_lead() -> None:
    columns = find_columns(iter([(1, ("Phone", "Name", "Order date", "Order no"))]))
    row = parse_row(2, ("+998 90 123 45 67", "  Ali   Valiyev ", 46000.0, None), columns)
    assert isinstance(row, Row)
    assert (row.phone, row.name, row.order_date) == ("+998901234567", "Ali Valiyev", date(2025, 12, 9))
    same = parse_row(40, ("998901234567", "ali valiyev", date(2025, 12, 9), None), columns)
    assert isinstance(same, Row) and same.key == row.key  # file-independent: not the row number
    numbered = parse_row(3, ("+998 90 123 45 67", "Ali", None, "  Z-7 "), columns)
    assert isinstance(numbered, Row) and numbered.key == "no:Z-7"

    from integration_sync.connectors.amocrm import Lead

    rule = ImportKeyRule(kind="k", pipeline_id=1, field_id=SELLER_FIELD_ORDER_NO)
    assert rule.key_of(Lead(id=1, name=f"Ali — Tea #xlsx-{row.key[2:]}")) == row.key
    by_field = Lead.model_validate(
        {
            "id": 2,
            "name": "x",
            "custom_fields_values": [{"field_id": SELLER_FIELD_ORDER_NO, "values": [{"value": "Z-7"}]}],
        }
    )
    assert rule.key_of(by_field) == "no:Z-7"
    assert rule.key_of(Lead(id=3, name="Buyurtma #1001")) is None


def test_rows_amocrm_rejects_are_reported_with_their_row_numbers(
    env: dict[str, str], control: httpx.Client, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    # a wrong field map: «Регион» pointed at the date field, so amoCRM refuses a row with a region
    monkeypatch.setenv("SHEETS_FIELD_IDS_JSON", json.dumps({"Регион": SELLER_FIELD_ORDER_DATE}))
    rows: list[list[Any]] = [HEADER]
    rows += [[f"Client {n}", f"+998 90 800 {n:02d} {n:02d}", None, "Choy Detox", None, None] for n in range(4)]
    rows[3][5] = "Toshkent"  # row 4
    path = workbook(tmp_path / "four.xlsx", rows)
    leads_before = len(amo(control, "leads"))

    code, result = run(path, capsys=capsys)

    assert (code, result["created"], result["rejected"], result["bad"]) == (1, 3, 1, 0), result
    assert [r["row"] for r in result["rejected_rows"]] == [4]
    assert len(amo(control, "leads")) == leads_before + 3


def test_a_lost_answer_is_settled_by_looking_up_the_leads(
    env: dict[str, str], control: httpx.Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows: list[list[Any]] = [HEADER]
    rows += [[f"Client {n}", f"+998 90 900 {n:02d} {n:02d}", None, "Choy Detox"] for n in range(5)]
    path = workbook(tmp_path / "five.xlsx", rows)
    leads_before = len(amo(control, "leads"))
    fault = {"count": 1, "methods": ["POST leads/complex"], "skip": 1}  # the second batch: made, answer lost
    control.post("/_sandbox/faults", json={"amocrm-seller": {"commit_then_drop": fault}}).raise_for_status()

    code, result = run(path, capsys=capsys)

    assert control.post("/_sandbox/faults", json={}).json()["amocrm-seller"]["commit_then_drop"]["fired"] == 1
    assert (code, result["created"], result["rejected"]) == (0, 5, 0), result
    assert len(amo(control, "leads")) == leads_before + 5
