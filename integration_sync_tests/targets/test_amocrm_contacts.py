"""The shared amoCRM contact index by identity, against the amoCRM emulator over HTTP, and the
migration of the flows' own indexes into it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.defs.kaspi_amocrm.tables import FLOW as KASPI
from integration_sync.defs.kaspi_amocrm.tables import KASPI_MIGRATIONS
from integration_sync.defs.payments_amocrm.tables import FLOW as PAYMENTS
from integration_sync.defs.payments_amocrm.tables import PAYMENTS_MIGRATIONS
from integration_sync.defs.resources import WarehouseResource
from integration_sync.sandbox import amocrm_schema as schema
from integration_sync.sync.state import ENGINE_MIGRATIONS, read_lookup, read_state, write_lookup, write_state
from integration_sync.sync.warehouse import Warehouse
from integration_sync.targets.amocrm_contacts import AmoContactIndex, ContactKeyRule, legacy_scope
from integration_sync_tests.connectors.sandbox_support import Sandbox

TG = schema.AMO_CONTACT_FIELD_TG_ID
RULE = ContactKeyRule(telegram_field_id=TG, region="RU")
KASPI_RULE = ContactKeyRule(telegram_field_id=TG, region="KZ")
NEW_MIGRATIONS = {"kaspi_0002_shared_contact_index", "payments_0003_shared_contact_index"}


def contact(n: int, *, phone: str | None = None, email: str | None = None, tg: str | None = None) -> dict[str, Any]:
    values: list[dict[str, Any]] = []
    if phone:
        values.append({"field_code": "PHONE", "values": [{"value": phone, "enum_code": "MOB"}]})
    if email:
        values.append({"field_code": "EMAIL", "values": [{"value": email, "enum_code": "WORK"}]})
    if tg:
        values.append({"field_id": TG, "values": [{"value": tg}]})
    body: dict[str, Any] = {"name": f"Клиент {n}"}
    if values:
        body["custom_fields_values"] = values
    return body


def answered(client: AmoCrmClient) -> int:
    """Requests amoCRM served: a 429 retried under a busy machine's timing is not the index's cost."""
    return int(client.stats.requests - client.stats.throttled)


def test_a_formatted_phone_is_found_by_its_e164_form(sb: Sandbox, client: AmoCrmClient, tmp_path: Path) -> None:
    store = WarehouseResource(database=str(tmp_path / "w.duckdb")).warehouse()
    made = client.create_contacts(
        [contact(1, phone="+7 (999) 555-44-33", email=" Ivan@Example.COM ", tg="555"), contact(2, phone="8 999 1")]
    )
    index = AmoContactIndex.load(store, client.root, RULE)
    index.refresh(client)
    first = str(made[0].id)
    assert index.get("phone:+79995554433") == first
    assert index.get("email:ivan@example.com") == first and index.get("tg:555") == first
    assert index.first(["tg:9", "email:ivan@example.com"]) == first
    assert [k for k, v in index.entries.items() if v == str(made[1].id)] == []  # not a possible number


def test_first_read_pages_by_250_then_only_what_changed(sb: Sandbox, client: AmoCrmClient, tmp_path: Path) -> None:
    store = WarehouseResource(database=str(tmp_path / "w.duckdb")).warehouse()
    made = client.create_contacts([contact(n, phone=f"+7999{n:07d}") for n in range(299)])
    time.sleep(1.1)  # the watermark's second (read again next time) holds only the last contact
    made += client.create_contacts([contact(299, phone="+79990000299")])
    index = AmoContactIndex.load(store, client.root, RULE)
    before = answered(client)
    index.refresh(client)
    assert answered(client) - before == 2  # 300 contacts, 250 per page
    assert len(index.entries) == 300 and index.get("phone:+79990000007") == str(made[7].id)
    index.refresh(client)
    assert answered(client) - before == 2  # once per run
    index.save()

    # a later run reads only contacts updated since the watermark (a second later: those of the
    # watermark's own second are read again)
    time.sleep(1.1)
    client.update_contacts(
        [{"id": made[0].id, "custom_fields_values": [contact(0, email="new@x.ru")["custom_fields_values"][0]]}]
    )
    again = AmoContactIndex.load(store, client.root, RULE)
    assert len(again.entries) == 300 and again.watermark == index.watermark > 0
    before = answered(client)
    again.refresh(client)
    assert answered(client) - before == 1
    assert again.get("email:new@x.ru") == str(made[0].id)


def test_an_identity_two_contacts_hold_goes_to_the_lowest_id(sb: Sandbox, client: AmoCrmClient, tmp_path: Path) -> None:
    store = WarehouseResource(database=str(tmp_path / "w.duckdb")).warehouse()
    made = client.create_contacts([contact(1, phone="+79995554433"), contact(2, phone="8 (999) 555-44-33")])
    index = AmoContactIndex.load(store, client.root, RULE)
    index.refresh(client)
    assert index.get("phone:+79995554433") == str(min(c.id for c in made))


def test_shared_by_the_flows_of_an_account_not_across_accounts(
    sb: Sandbox, client: AmoCrmClient, tmp_path: Path
) -> None:
    store = WarehouseResource(database=str(tmp_path / "w.duckdb")).warehouse()
    kaspi = AmoContactIndex.load(store, client.root, KASPI_RULE, adopt=KASPI)
    kaspi.refresh(client)
    kaspi.remember(["phone:+77011234567"], 42)  # a contact the Kaspi flow made
    kaspi.save()

    payments = AmoContactIndex.load(store, client.root, RULE, adopt=PAYMENTS)
    assert payments.get("phone:+77011234567") == "42"
    assert payments.watermark == kaspi.watermark  # one refresh serves both flows
    other = AmoContactIndex.load(store, "https://other.amocrm.ru", RULE, adopt=PAYMENTS)
    assert other.entries == {} and other.watermark == 0


def test_migration_moves_each_flows_index_into_the_shared_one(tmp_path: Path) -> None:
    # a warehouse as today's code left it: each flow's own lookup entries and watermark
    path = tmp_path / "w.duckdb"
    every = (*ENGINE_MIGRATIONS, *KASPI_MIGRATIONS, *PAYMENTS_MIGRATIONS)
    assert {m.id for m in every} >= NEW_MIGRATIONS
    old = Warehouse(path, [m for m in every if m.id not in NEW_MIGRATIONS])
    write_lookup(old, KASPI, "contact_by_phone", {"+77011234567": "11", "+79995554433": "12"})
    write_state(old, KASPI, "contacts_updated_at", "1700000200")
    write_lookup(old, PAYMENTS, "contact_by_identity", {"tg:555": "13", "phone:+79995554433": "14"})
    write_state(old, PAYMENTS, "contacts_updated_at", "1700000100")
    write_lookup(old, KASPI, "element_by_code", {"SKU-1": "900"})

    store = Warehouse(path, every)
    assert set(store.migrate()) == NEW_MIGRATIONS
    account = "https://shop.amocrm.ru"
    payments = AmoContactIndex.load(store, account, RULE, adopt=PAYMENTS)
    assert payments.entries == {"tg:555": "13", "phone:+79995554433": "14"}
    assert payments.watermark == 1700000100  # no re-read of every contact
    kaspi = AmoContactIndex.load(store, account, KASPI_RULE, adopt=KASPI)
    # what was there first stays; the older watermark: contacts changed since either are read again
    assert kaspi.entries == {"tg:555": "13", "phone:+79995554433": "14", "phone:+77011234567": "11"}
    assert kaspi.watermark == 1700000100
    assert AmoContactIndex.load(store, account, KASPI_RULE, adopt=KASPI).entries == kaspi.entries
    for flow in (KASPI, PAYMENTS):
        assert read_lookup(store, legacy_scope(flow), "contact_by_identity") == {}
        assert read_state(store, legacy_scope(flow), "contacts_updated_at") is None
        assert read_state(store, flow, "contacts_updated_at") is None
    assert read_lookup(store, KASPI, "contact_by_phone") == {}
    assert read_lookup(store, KASPI, "element_by_code") == {"SKU-1": "900"}  # the flow's own lookup stays
