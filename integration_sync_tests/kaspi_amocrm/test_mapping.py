"""Kaspi → amoCRM mapping rules, table-driven."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from integration_sync.defs.kaspi_amocrm.mapping import (
    LeadSettings,
    customer_name,
    desired_order,
    kaspi_phone,
    kazakhstan_day,
    note_text,
    order_items,
    parse_amount,
    stage_for,
)

SETTINGS = LeadSettings(
    pipeline_id=7000001,
    status_id=70000011,
    responsible_user_id=1001,
    catalog_id=5111,
    order_code_field_id=801,
    contact_address_field_id=901,
    lead_delivery_address_field_id=802,
    order_date_field_id=803,
)
# 2026-11-20 23:30 in Kazakhstan (18:30 UTC): still the 20th there, already the 21st nowhere
CREATED_MS = 1_795_199_400_000


def order(**overrides: Any) -> dict[str, Any]:
    base = {
        "code": "512345678",
        "totalPrice": 23980,
        "paymentMode": "PAY_WITH_CREDIT",
        "creationDate": CREATED_MS,
        "state": "NEW",
        "status": "APPROVED_BY_BANK",
        "customer": {"id": "c1", "firstName": "Айгерим", "lastName": "Нурланова", "cellPhone": "7011234567"},
        "deliveryAddress": {"formattedAddress": "Алматы, ул. Абая, 10", "town": "Алматы"},
        "deliveryMode": "DELIVERY_LOCAL",
        "isKaspiDelivery": True,
        "plannedDeliveryDate": CREATED_MS + 2 * 86_400_000,
        "deliveryCostForSeller": 990,
    }
    return {**base, **overrides}


ENTRIES = [
    {"code": "SKU-2", "name": "Чехол", "quantity": 2, "base_price": 1990, "total_price": 3980},
    {"code": "SKU-1", "name": "Наушники", "quantity": 1, "base_price": 20000, "total_price": 20000},
]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("7011234567", "+77011234567"),  # Kaspi's 10 digits without +7
        ("+77011234567", "+77011234567"),
        ("87011234567", "+77011234567"),  # 8 trunk prefix
        ("8 701 123 45 67", "+77011234567"),
        ("+7 (701) 123-45-67", "+77011234567"),
        ("+79161234567", "+79161234567"),  # a Russian number keeps its country
        ("+998 90 123 45 67", "+998901234567"),  # Uzbekistan
        ("", None),
        ("12345", None),
        ("не указан", None),
        (None, None),
    ],
)
def test_kaspi_phone(raw: Any, expected: str | None) -> None:
    assert kaspi_phone(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (23980, Decimal(23980)),
        ("23980.50", Decimal("23980.50")),
        ("1 990,00", Decimal("1990.00")),
        ("x", None),
        (None, None),
        (True, None),
    ],
)
def test_parse_amount(raw: Any, expected: Decimal | None) -> None:
    assert parse_amount(raw) == expected


@pytest.mark.parametrize(
    ("status", "stage"),
    [
        ("APPROVED_BY_BANK", 70000011),
        ("ACCEPTED_BY_MERCHANT", 70000011),
        ("COMPLETED", 142),
        ("CANCELLED", 143),
        ("RETURNED", 143),
        ("KASPI_DELIVERY_RETURN_REQUESTED", 70000011),
        (None, 70000011),
    ],
)
def test_default_status_map(status: str | None, stage: int) -> None:
    assert stage_for(status, SETTINGS) == stage


def test_status_map_is_configurable() -> None:
    settings = LeadSettings(1, 2, 3, 4, status_map={"ACCEPTED_BY_MERCHANT": 55, "COMPLETED": 142})
    assert (stage_for("ACCEPTED_BY_MERCHANT", settings), stage_for("RETURNED", settings)) == (55, 2)


def test_partition_day_is_kazakhstan_time() -> None:
    assert kazakhstan_day(order()) == "2026-11-20"
    assert kazakhstan_day(order(creationDate=CREATED_MS + 45 * 60_000)) == "2026-11-21"


def test_note_text_golden() -> None:
    items, _ = order_items(ENTRIES)
    assert note_text(order(), items, "+77011234567") == (
        "Заказ Kaspi №512345678\n"
        "Дата: 2026-11-20 23:30 (Казахстан, UTC+5)\n"
        "Статус: APPROVED_BY_BANK\n"
        "Покупатель: Айгерим Нурланова, +77011234567\n"
        "Товары:\n"
        "  SKU-1 — Наушники × 1 = 20 000 ₸\n"
        "  SKU-2 — Чехол × 2 = 3 980 ₸\n"
        "Итого: 23 980 ₸ (2 поз., 3 шт.)\n"
        "Доставка: DELIVERY_LOCAL; Kaspi Доставка; Алматы, ул. Абая, 10; плановая дата 2026-11-22;"
        " стоимость для продавца 990 ₸\n"
        "Оплата: PAY_WITH_CREDIT"
    )


def test_desired_order_fills_the_optional_fields_when_configured() -> None:
    record = desired_order(order(), ENTRIES, SETTINGS)
    assert record.key == "512345678" and record.invalid_reason is None
    lead = record.payload["lead"]
    assert (lead["name"], lead["price"], lead["pipeline_id"], lead["status_id"]) == (
        "Kaspi №512345678",
        23980,
        7000001,
        70000011,
    )
    assert lead["custom_fields"] == {
        "801": "512345678",
        "802": "Алматы, ул. Абая, 10",
        "803": "2026-11-20T23:30:00+05:00",
    }
    assert record.payload["contact"] == {
        "name": "Айгерим Нурланова",
        "phone": "+77011234567",
        "custom_fields": {"901": "Алматы, ул. Абая, 10"},
    }
    assert [i["code"] for i in record.payload["items"]] == ["SKU-1", "SKU-2"]
    bare = desired_order(order(), ENTRIES, LeadSettings(7000001, 70000011, 1001, 5111))
    assert bare.payload["lead"]["custom_fields"] == {} and bare.payload["contact"]["custom_fields"] == {}


def test_only_a_status_change_changes_the_hash() -> None:
    first = desired_order(order(), ENTRIES, SETTINGS)
    # a state move (NEW → PICKUP) without a status change sends nothing
    assert first.hash == desired_order(order(state="PICKUP"), ENTRIES, SETTINGS).hash
    completed = desired_order(order(status="COMPLETED"), ENTRIES, SETTINGS)
    assert completed.payload["lead"]["status_id"] == 142 and completed.hash != first.hash


@pytest.mark.parametrize(
    ("overrides", "entries", "reason"),
    [
        ({"code": None}, ENTRIES, "no valid order code"),
        ({"totalPrice": "много"}, ENTRIES, "totalPrice is not a number"),
        ({"creationDate": "вчера"}, ENTRIES, "no valid creationDate"),
        ({"customer": {"firstName": "Без телефона"}}, ENTRIES, "no valid customer phone"),
        ({"customer": None}, ENTRIES, "no valid customer phone"),
        ({}, [{"name": "no code", "quantity": 1, "base_price": 1, "total_price": 1}], "no product code"),
        ({}, [{"code": "X", "quantity": 0, "base_price": 1, "total_price": 1}], "no valid quantity"),
        ({}, [{"code": "X", "quantity": 1, "base_price": "?", "total_price": 1}], "no valid price"),
    ],
)
def test_malformed_orders_are_invalid_with_a_clear_reason(
    overrides: dict[str, Any], entries: list[dict[str, Any]], reason: str
) -> None:
    record = desired_order(order(**overrides), entries, SETTINGS)
    assert record.invalid_reason is not None and reason in record.invalid_reason


@pytest.mark.parametrize(
    ("customer", "expected"),
    [
        ({"id": "c", "name": "Айгерим Нурланова", "cellPhone": "7011234567"}, "Айгерим Нурланова"),  # real: name only
        ({"name": "  Айгерим   Нурланова "}, "Айгерим Нурланова"),
        ({"name": None, "firstName": "Айгерим", "lastName": "Нурланова"}, "Айгерим Нурланова"),
        ({"name": "Айгерим Н.", "firstName": "Айгерим", "lastName": "Нурланова"}, "Айгерим Н."),
        ({"firstName": "Айгерим"}, "Айгерим"),
        ({"cellPhone": "7011234567"}, "Покупатель Kaspi"),
        ({"name": ""}, "Покупатель Kaspi"),
    ],
)
def test_customer_name_uses_name_when_present(customer: dict[str, Any], expected: str) -> None:
    assert customer_name(order(customer=customer)) == expected


def test_a_name_only_customer_names_the_contact_and_the_note() -> None:
    customer = {"id": "c1", "name": "Айгерим Нурланова", "cellPhone": "7011234567"}
    desired = desired_order(
        order(customer=customer, assembled=True, kaspiDelivery={"waybill": None}), ENTRIES, SETTINGS
    )
    assert desired.invalid_reason is None
    assert desired.payload["contact"]["name"] == "Айгерим Нурланова"
    assert "Покупатель: Айгерим Нурланова, +77011234567" in desired.payload["note"]
