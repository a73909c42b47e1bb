"""Deterministic seed data of the amoCRM sandbox account (same seed -> same account).

Contacts carry KZ and RU mobile numbers typed the ways people type them (``+7…``, ``8…``,
``+7 (7xx) …``, ``8 7xx …``, ``7…``), emails, addresses and Telegram ids; about two thirds of them
have leads spread over every pipeline, including won/lost (142/143) and the "Автооплаты ООО"
statuses the payments flow must skip. The products catalog holds a few items with SKU and price.
"""

from __future__ import annotations

import random
from typing import Any

from integration_sync.sandbox.amocrm_schema import (
    AMO_CATALOG_ID,
    AMO_CATALOG_PRICE_FIELD_ID,
    AMO_CATALOG_SKU_FIELD_ID,
    AMO_CONTACT_ADDRESS_FIELD_ID,
    AMO_CONTACT_FIELD_TG_ID,
    AMO_CONTACT_FIELD_TG_USERNAME,
    AMO_DIRECTION_EGE,
    AMO_DIRECTION_OGE,
    AMO_LEAD_DELIVERY_ADDRESS_FIELD_ID,
    AMO_LEAD_FIELD_DIRECTION,
    AMO_LEAD_FIELD_PURCHASE_COUNT,
    AMO_LEAD_FIELD_SUBJECTS,
    AMO_LEAD_FIELD_TOTAL_PAID,
    AMO_LEAD_ORDER_CODE_FIELD_ID,
    AMO_LEAD_ORDER_DATE_FIELD_ID,
    AMO_PIPELINE_ID,
    AMO_PIPELINE_PARTNERS,
    AMO_PIPELINE_SITE,
    AMO_PIPELINE_YANDEX,
    AMO_STATUS_AUTOPAY_PARTNERS,
    AMO_STATUS_AUTOPAY_SITE,
    AMO_STATUS_AUTOPAY_YANDEX,
    AMO_STATUS_ID,
    AMO_SUBJECT_ENUMS,
    LOST,
    PIPELINES,
    USERS,
    WON,
)
from integration_sync.sandbox.amocrm_store import Account
from integration_sync.sandbox.core import JsonDict
from integration_sync.sandbox.fakedata import RuFaker, translit

KZ_MOBILE_CODES = ("700", "701", "702", "705", "707", "708", "747", "771", "775", "776", "777", "778")
KZ_CITIES = ("Алматы", "Астана", "Шымкент", "Караганда", "Актобе")
KZ_STREETS = ("проспект Абая", "улица Толе би", "проспект Достык", "улица Кенесары", "проспект Республики")
PRODUCTS = (
    ("Смартфон Samsung Galaxy A15 128GB", "SM-A155F", 89990),
    ("Наушники Apple AirPods Pro 2", "MTJV3", 119990),
    ("Пылесос Dyson V15 Detect", "SV47", 349990),
    ("Чайник Xiaomi Mi Electric Kettle", "MJDSH02", 12990),
    ("Кроссовки Nike Revolution 6", "DC3728", 34990),
    ("Чай Tess черный 100 пакетиков", "TESS-100", 2290),
    ("Телевизор LG 55UR78006LK", "55UR7800", 259990),
    ("Фен Philips BHD308", "BHD308", 15990),
)
# The first leads walk these (pipeline, status) pairs, so every seed covers them.
COVERAGE = (
    (AMO_PIPELINE_ID, AMO_STATUS_ID),
    (AMO_PIPELINE_SITE, 63242010),
    (AMO_PIPELINE_SITE, AMO_STATUS_AUTOPAY_SITE),
    (AMO_PIPELINE_YANDEX, AMO_STATUS_AUTOPAY_YANDEX),
    (AMO_PIPELINE_PARTNERS, AMO_STATUS_AUTOPAY_PARTNERS),
    (AMO_PIPELINE_ID, WON),
    (AMO_PIPELINE_SITE, LOST),
    (AMO_PIPELINE_YANDEX, 80579120),
    (AMO_PIPELINE_ID, 70000013),
    (AMO_PIPELINE_PARTNERS, 80517710),
)


def phone_as_typed(rng: random.Random, national: str) -> str:
    style = rng.randrange(5)
    if style == 0:
        return f"+7{national}"
    if style == 1:
        return f"8{national}"
    if style == 2:
        return f"+7 ({national[:3]}) {national[3:6]}-{national[6:8]}-{national[8:]}"
    if style == 3:
        return f"8 {national[:3]} {national[3:6]} {national[6:8]} {national[8:]}"
    return f"7{national}"


def _apply(account: Account, kind: str, item: JsonDict) -> int:
    errors: list[JsonDict] = []
    if kind == "contact":
        plan = account.check_contact(item, 0, errors, update=False)
        assert not errors, errors
        return account.apply_contact(plan).id
    if kind == "lead":
        plan = account.check_lead(item, 0, errors, update=False)
        assert not errors, errors
        return account.apply_lead(plan).id
    plan = account.check_element(AMO_CATALOG_ID, item, 0, errors, update=False)
    assert not errors, errors
    return account.apply_element(plan).id


def seed_account(account: Account, seed: int, contacts: int, now: float) -> None:
    rng = random.Random(seed * 104729 + 7)
    fake = RuFaker(rng)
    start = int(now) - 90 * 86400
    for name, sku, price in PRODUCTS:
        _apply(
            account,
            "element",
            {
                "name": name,
                "custom_fields_values": [
                    {"field_id": AMO_CATALOG_SKU_FIELD_ID, "values": [{"value": sku}]},
                    {"field_id": AMO_CATALOG_PRICE_FIELD_ID, "values": [{"value": price}]},
                ],
            },
        )
    lead_no = 0
    for i in range(contacts):
        person = fake.person()
        kz = rng.random() < 0.5
        national = rng.choice(KZ_MOBILE_CODES) + fake.digits(7) if kz else fake.mobile_national()
        created = start + i * 3 * 3600 + rng.randrange(3600)
        cf: list[JsonDict] = [
            {
                "field_code": "PHONE",
                "values": [{"value": phone_as_typed(rng, national), "enum_code": rng.choice(("MOB", "WORK", "HOME"))}],
            },
        ]
        if rng.random() < 0.6:
            cf.append({"field_code": "EMAIL", "values": [{"value": fake.email(person, i), "enum_code": "WORK"}]})
        if rng.random() < 0.4:
            address = (
                f"{rng.choice(KZ_CITIES)}, {rng.choice(KZ_STREETS)}, {rng.randint(1, 200)}" if kz else fake.address()
            )
            cf.append({"field_id": AMO_CONTACT_ADDRESS_FIELD_ID, "values": [{"value": address}]})
        if i % 3 == 0:
            cf.append({"field_id": AMO_CONTACT_FIELD_TG_ID, "values": [{"value": str(rng.randint(10**8, 7 * 10**9))}]})
            username = f"{translit(person.first).lower()}_{translit(person.last).lower()}"
            cf.append({"field_id": AMO_CONTACT_FIELD_TG_USERNAME, "values": [{"value": username}]})
        contact_id = _apply(
            account,
            "contact",
            {
                "first_name": person.first,
                "last_name": person.last,
                "responsible_user_id": rng.choice(USERS),
                "created_at": created,
                "updated_at": created + rng.randrange(86400),
                "custom_fields_values": cf,
            },
        )
        for _ in range(rng.choice((0, 1, 1, 2))):
            lead_no += 1
            _apply(account, "lead", _lead_item(rng, lead_no, contact_id, created, person.first))


def _lead_item(rng: random.Random, lead_no: int, contact_id: int, created: int, first_name: str) -> JsonDict:
    if lead_no <= len(COVERAGE):
        pipeline_id, status_id = COVERAGE[lead_no - 1]
    else:
        pipeline = rng.choice(PIPELINES)
        pipeline_id = pipeline.id
        status_id = rng.choice([s.id for s in pipeline.statuses if s.type == 0])
    lead_created = created + rng.randrange(3 * 86400)
    updated = lead_created + rng.randrange(5 * 86400)
    cf: list[JsonDict] = []
    item: dict[str, Any] = {
        "price": rng.randrange(1, 200) * 500,
        "pipeline_id": pipeline_id,
        "status_id": status_id,
        "responsible_user_id": rng.choice(USERS),
        "created_at": lead_created,
        "updated_at": updated,
        "_embedded": {"contacts": [{"id": contact_id}]},
    }
    if pipeline_id == AMO_PIPELINE_ID:
        code = str(500000000 + lead_no * 7919)
        item["name"] = f"Kaspi заказ {code}"
        cf += [
            {"field_id": AMO_LEAD_ORDER_CODE_FIELD_ID, "values": [{"value": code}]},
            {"field_id": AMO_LEAD_ORDER_DATE_FIELD_ID, "values": [{"value": lead_created}]},
            {"field_id": AMO_LEAD_DELIVERY_ADDRESS_FIELD_ID, "values": [{"value": f"Алматы, дом {lead_no}"}]},
        ]
    else:
        subjects = rng.sample(sorted(AMO_SUBJECT_ENUMS), rng.randint(1, 3))
        item["name"] = f"Оплата {subjects[0]} - {first_name}"
        cf += [
            {"field_id": AMO_LEAD_FIELD_SUBJECTS, "values": [{"enum_id": AMO_SUBJECT_ENUMS[s]} for s in subjects]},
            {
                "field_id": AMO_LEAD_FIELD_DIRECTION,
                "values": [{"enum_id": rng.choice((AMO_DIRECTION_EGE, AMO_DIRECTION_OGE))}],
            },
            {"field_id": AMO_LEAD_FIELD_TOTAL_PAID, "values": [{"value": item["price"]}]},
            {"field_id": AMO_LEAD_FIELD_PURCHASE_COUNT, "values": [{"value": 1}]},
        ]
    if status_id in (WON, LOST):
        item["closed_at"] = updated
    item["custom_fields_values"] = cf
    return item
