"""The shared Bitrix24 CRM helper against the Bitrix24 emulator over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from integration_sync.connectors.bitrix24 import Bitrix24Client
from integration_sync.connectors.errors import TransientError
from integration_sync.sandbox import bitrix24_schema as schema
from integration_sync.targets.bitrix24 import Bitrix24Crm, ContactWrite, DealWrite, KeyLookup
from integration_sync_tests.connectors.sandbox_support import FAST_POLICY, Sandbox, running_sandbox

UF = schema.UF_ABCP_USER_ID
CATEGORY = schema.USERS_CATEGORY_ID


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(abcp_users=0, kaspi_orders=0, bitrix24_contacts=0) as sb:
        yield sb


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[Bitrix24Client]:
    sandbox.reset()
    with Bitrix24Client(sandbox.env["B24_WEBHOOK_URL"], rate=1000.0, burst=1000, policy=FAST_POLICY) as b24:
        yield b24


def dump(sandbox: Sandbox, table: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = sandbox.control("GET", f"bitrix24/{table}")
    return rows


def commands(sandbox: Sandbox) -> dict[str, int]:
    counted: dict[str, int] = sandbox.stats("bitrix24").get("commands", {})
    return counted


def new_deal(n: int, phone: str | None = None) -> DealWrite:
    contact = ContactWrite({"NAME": f"Имя {n}"}, [phone or f"+7900{n:07d}"], [f"u{n}@example.ru"])
    return DealWrite(str(n), {"TITLE": f"Сделка {n}", "CATEGORY_ID": CATEGORY, UF: str(n)}, contact=contact)


def test_contacts_and_deals_go_50_commands_a_batch_the_deal_referencing_its_new_contact(
    sandbox: Sandbox, client: Bitrix24Client
) -> None:
    crm = Bitrix24Crm(client)
    writes = [new_deal(n) for n in range(30)]
    writes.insert(2, new_deal(30, phone="+79000000001"))  # n=1's phone, same batch: its contact by $result
    writes.append(new_deal(31, phone="+79000000002"))  # n=2's phone, next batch: the contact made there
    before = client.stats.requests
    results = {r.key: r for r in crm.write(writes)}
    assert all(r.ok for r in results.values())
    assert client.stats.requests - before == 2  # 62 commands: 49 (the next record takes 2) + 13
    contacts = {c["ID"]: c for c in dump(sandbox, "contacts")}
    assert len(contacts) == 30  # a shared phone makes no second contact
    deals = {d["ID"]: d for d in dump(sandbox, "deals")}
    for result in results.values():
        assert result.deal_id in deals and str(deals[result.deal_id]["CONTACT_ID"]) == result.contact_id
    assert results["30"].contact_id == results["1"].contact_id
    assert results["31"].contact_id == results["2"].contact_id
    phones = contacts[str(results["5"].contact_id)]["PHONE"]
    assert [(p["VALUE"], p["VALUE_TYPE"]) for p in phones] == [("+79000000005", "WORK")]


def test_a_failed_write_rejects_its_record_and_the_records_after_it_are_sent_again(
    sandbox: Sandbox, client: Bitrix24Client
) -> None:
    crm = Bitrix24Crm(client)
    fault = {"count": 1, "methods": ["crm.deal.add"], "skip": 1, "error": "ERROR_CORE", "error_description": "nope"}
    sandbox.faults({"bitrix24": {"batch_command_error": fault}})
    before = client.stats.requests
    results = {r.key: r for r in crm.write([new_deal(n) for n in range(3)])}
    assert results["0"].ok and results["2"].ok
    rejected = results["1"]
    assert not rejected.ok and rejected.error == "ERROR_CORE: nope" and rejected.deal_id is None
    assert rejected.contact_id is not None  # its contact was made before the deal failed: it is known
    assert client.stats.requests - before == 2 and len(dump(sandbox, "deals")) == 2


def test_contacts_match_by_phone_and_email_in_any_format_verified(sandbox: Sandbox, client: Bitrix24Client) -> None:
    anna = client.call(
        "crm.contact.add",
        {"fields": {"NAME": "Анна", "PHONE": [{"VALUE": "8 (900) 123-45-67", "VALUE_TYPE": "MOBILE"}]}},
    )
    boris = client.call(
        "crm.contact.add", {"fields": {"NAME": "Борис", "EMAIL": [{"VALUE": "Boris@Example.RU", "VALUE_TYPE": "WORK"}]}}
    )
    crm = Bitrix24Crm(client)
    phones = ["+79001234567", *(f"+7911{n:07d}" for n in range(24))]  # 25 phones: two findbycomm commands
    before = client.stats.requests
    found = crm.match_contacts(phones, ["boris@example.ru", "nobody@example.ru"])
    assert found == {"+79001234567": str(anna), "boris@example.ru": str(boris)}
    assert client.stats.requests - before == 2  # one findbycomm batch, one read-back batch
    assert commands(sandbox)["crm.duplicate.findbycomm"] == 3


def test_records_are_found_by_their_external_key_50_a_command(sandbox: Sandbox, client: Bitrix24Client) -> None:
    crm = Bitrix24Crm(client)
    assert all(r.ok for r in crm.write([new_deal(n) for n in range(60)]))
    other = DealWrite("x", {"TITLE": "другая воронка", UF: "7"})  # same key in the default pipeline
    assert all(r.ok for r in crm.write([other]))
    before = commands(sandbox).get("crm.deal.list", 0)
    requests = client.stats.requests
    lookup = KeyLookup(
        "crm.deal.list", UF, [str(n) for n in range(60)] + ["missing"], ["TITLE"], {"CATEGORY_ID": CATEGORY}
    )
    (deals,) = crm.lookup([lookup])
    assert sorted(deals, key=int) == [str(n) for n in range(60)]
    assert [row["TITLE"] for row in deals["7"]] == ["Сделка 7"]
    assert commands(sandbox)["crm.deal.list"] - before == 2 and client.stats.requests - requests == 1


def test_a_lookup_failing_inside_a_200_batch_raises(sandbox: Sandbox, client: Bitrix24Client) -> None:
    sandbox.faults({"bitrix24": {"batch_command_error": {"count": 1, "methods": ["crm.contact.list"]}}})
    with pytest.raises(TransientError):
        Bitrix24Crm(client).lookup([KeyLookup("crm.contact.list", "ORIGIN_ID", ["1"], ["PHONE"])])


def test_phones_and_emails_are_appended_only_when_the_contact_lacks_them(
    sandbox: Sandbox, client: Bitrix24Client
) -> None:
    crm = Bitrix24Crm(client)
    (made,) = crm.write([new_deal(1)])
    assert made.contact_id is not None and made.deal_id is not None
    present = crm.contact_comms([made.contact_id])[made.contact_id]
    assert present == {"+79000000001", "u1@example.ru"}
    contact = ContactWrite({}, ["+79000000001", "+79000000002"], ["u1@example.ru"], made.contact_id, present)
    (updated,) = crm.write([DealWrite("1", {}, deal_id=made.deal_id, contact=contact)])
    assert updated.ok and updated.sent
    row = next(c for c in dump(sandbox, "contacts") if c["ID"] == made.contact_id)
    assert [p["VALUE"] for p in row["PHONE"]] == ["+79000000001", "+79000000002"]
    assert [e["VALUE"] for e in row["EMAIL"]] == ["u1@example.ru"]
    present = crm.contact_comms([made.contact_id])[made.contact_id]
    again = ContactWrite({}, ["+79000000002"], ["u1@example.ru"], made.contact_id, present)
    before = client.stats.requests
    (same,) = crm.write([DealWrite("1", {}, deal_id=made.deal_id, contact=again)])
    assert same.ok and not same.sent and client.stats.requests == before


def test_product_rows_go_with_a_new_deal_and_replace_an_existing_deals_rows(
    sandbox: Sandbox, client: Bitrix24Client
) -> None:
    """Guards the `crm.deal.productrows.set` command (a new deal referenced by `$result[...]` in the same
    batch) that the shop-orders flow will use; the portal recalculates the deal's amount from the rows."""
    crm = Bitrix24Crm(client)
    rows = [{"PRODUCT_NAME": "Розы 51 шт", "PRICE": 15000, "QUANTITY": 1}, {"PRODUCT_NAME": "Открытка", "PRICE": 250}]
    before = client.stats.requests
    (made,) = crm.write([DealWrite("o1", {"TITLE": "Заказ 1", "CATEGORY_ID": CATEGORY}, product_rows=rows)])
    assert made.ok and made.deal_id and client.stats.requests - before == 1  # deal and rows in one batch
    got = client.call("crm.deal.productrows.get", {"id": made.deal_id})
    assert [(r["PRODUCT_NAME"], r["PRICE"], r["QUANTITY"]) for r in got] == [
        ("Розы 51 шт", 15000.0, 1.0),
        ("Открытка", 250.0, 1.0),
    ]
    deal = next(d for d in dump(sandbox, "deals") if d["ID"] == made.deal_id)
    assert float(deal["OPPORTUNITY"]) == 15250.0

    (changed,) = crm.write(
        [DealWrite("o1", {}, deal_id=made.deal_id, product_rows=[{"PRODUCT_NAME": "Тюльпаны", "PRICE": 900}])]
    )
    assert changed.ok
    got = client.call("crm.deal.productrows.get", {"id": made.deal_id})
    assert [r["PRODUCT_NAME"] for r in got] == ["Тюльпаны"]  # replaced, not appended

    (bad,) = crm.write([DealWrite("o2", {}, deal_id="999999", product_rows=rows)])
    assert not bad.ok and bad.error and "Not found" in bad.error
