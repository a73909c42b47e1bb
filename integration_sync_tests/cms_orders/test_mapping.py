"""The transformer's golden cases (`ShopOrder` and `cms_orders.mapping`): integer ids, money as
decimals, canonical statuses, properties, Cyrillic and Kazakh text, and bytes that are not UTF-8."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from integration_sync.defs.cms_orders.mapping import (
    deal_fields,
    effective_status,
    order_contact,
    product_fields,
    product_rows,
    quarantine_reason,
    split_name,
    user_contact,
)
from integration_sync.webhooks.bitrix_order import ShopOrder, decode_body


def raw(**changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "ID": "1234",
        "ACCOUNT_NUMBER": "1234",
        "STATUS_ID": "N",
        "PRICE": 35000.5,
        "CURRENCY": "KZT",
        "USER_ID": "57",
        "PAYED": "N",
        "CANCELED": "N",
        "DATE_INSERT": "30.11.2026 23:30:00",
        "DATE_UPDATE": "2026-11-30T23:31:00+05:00",
        "PROPERTIES": {"NAME": "Гүлнұр Әбдіхалықова", "PHONE": "8 (701) 123-45-67", "EMAIL": " Gulnur@Mail.KZ "},
        "BASKET": [
            {"PRODUCT_ID": "104", "NAME": "Пионы «Ақ шағала»", "QUANTITY": 1, "PRICE": "28000.00"},
            {"PRODUCT_ID": 955, "NAME": "Букет по фото клиента", "QUANTITY": "2", "PRICE": 3750.25},
        ],
    }
    order.update(changes)
    return order


def test_ids_money_and_dates_are_canonical() -> None:
    order = ShopOrder.model_validate(raw())
    assert order.ID == 1234 and order.USER_ID == 57 and order.BASKET[0].PRODUCT_ID == 104
    assert Decimal("35000.5") == order.PRICE and Decimal("3750.25") == order.BASKET[1].PRICE
    dumped = order.model_dump(mode="json")
    assert dumped["PRICE"] == "35000.50" and dumped["BASKET"][1]["PRICE"] == "3750.25"
    # a date without an offset is Kazakhstan time; 23:30 there is still the 30th (UTC 18:30)
    assert order.DATE_INSERT.astimezone(UTC) == datetime(2026, 11, 30, 18, 30, tzinfo=UTC)
    assert order.order_day() == date(2026, 11, 30)
    assert dumped["DATE_UPDATE"] == "2026-11-30T18:31:00Z"


def test_equal_content_is_one_version_however_formatted() -> None:
    a = ShopOrder.model_validate(raw())
    b = ShopOrder.model_validate(raw(ID=1234, PRICE="35000.50", USER_ID=57))
    assert a.version() == b.version()
    assert ShopOrder.model_validate(raw(STATUS_ID="P")).version() != a.version()


@pytest.mark.parametrize(
    ("changes", "status"),
    [({}, "N"), ({"STATUS_ID": "F"}, "F"), ({"CANCELED": "Y"}, "D"), ({"STATUS_ID": "P", "CANCELED": "y"}, "D")],
)
def test_a_cancelled_order_is_d_whatever_its_letter(changes: dict[str, Any], status: str) -> None:
    assert effective_status(ShopOrder.model_validate(raw(**changes))) == status


@pytest.mark.parametrize(
    "bad",
    [{"ID": "12a"}, {"ID": True}, {"PRICE": "-5"}, {"PRICE": "abc"}, {"DATE_INSERT": "yesterday"}, {"ID": 1.5}],
)
def test_what_cannot_be_read_is_refused_with_the_field(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        ShopOrder.model_validate(raw(**bad))
    assert next(iter(bad)) in str(caught.value)


def test_the_buyer_is_split_and_normalized() -> None:
    contact = order_contact(ShopOrder.model_validate(raw()), "KZ")
    assert contact == {
        "NAME": "Гүлнұр",
        "LAST_NAME": "Әбдіхалықова",
        "PHONE": ["+77011234567"],
        "EMAIL": ["gulnur@mail.kz"],
    }
    assert split_name("  Анна  ") == ("Анна", "") and split_name(None) == ("", "")
    assert order_contact(ShopOrder.model_validate(raw(PROPERTIES={})), "KZ") is None


def test_a_user_with_the_name_in_one_field_is_split() -> None:
    user = {"ID": 57, "NAME": "Ирина Ким", "LAST_NAME": "", "EMAIL": "", "PERSONAL_PHONE": "+7 777 000 11 22"}
    assert user_contact(user, "KZ") == {
        "NAME": "Ирина",
        "LAST_NAME": "Ким",
        "PHONE": ["+77770001122"],
        "EMAIL": [],
        "ORIGINATOR_ID": "bitrix_cms",
        "ORIGIN_ID": "user:57",
    }


def test_cp1251_text_is_read_and_marked() -> None:
    body = json.dumps({"order": raw()}, ensure_ascii=False).encode()
    body = body.replace("Гүлнұр Әбдіхалықова".encode(), "Ирина Цой".encode("cp1251"))
    data, recoded = decode_body(body)
    assert recoded == ["order.PROPERTIES.NAME"]
    assert ShopOrder.model_validate(data["order"]).PROPERTIES.NAME == "Ирина Цой"


def test_the_deal_rows_and_product_follow_the_order() -> None:
    order = ShopOrder.model_validate(raw(PAYED="Y", PROPERTIES={"ADDRESS": "Алматы, ул. Абая 1", "DELIVERY": "Курьер"}))
    fields = deal_fields(order, "Заказ №")
    assert fields["TITLE"] == "Заказ №1234" and fields["OPPORTUNITY"] == "35000.50"
    assert fields["IS_MANUAL_OPPORTUNITY"] == "Y" and fields["CURRENCY_ID"] == "KZT"
    assert fields["COMMENTS"] == "Адрес: Алматы, ул. Абая 1\nДоставка: Курьер\nОплачен: да"
    assert product_rows(order) == [
        {"PRODUCT_KEY": "104", "PRODUCT_NAME": "Пионы «Ақ шағала»", "PRICE": "28000.00", "QUANTITY": 1.0},
        {"PRODUCT_KEY": "955", "PRODUCT_NAME": "Букет по фото клиента", "PRICE": "3750.25", "QUANTITY": 2.0},
    ]
    assert product_fields({"ID": 111, "NAME": "Шары", "PRICE": "6000", "ACTIVE": "N"}) == {
        "NAME": "Шары",
        "PRICE": "6000.00",
        "CURRENCY_ID": "KZT",
        "ACTIVE": "N",
        "XML_ID": "cms:111",
    }


@pytest.mark.parametrize(
    ("changes", "duplicate_of", "reason"),
    [
        ({}, None, None),
        ({"BASKET": []}, None, "empty basket"),
        ({"PRICE": 0, "BASKET": [{"PRODUCT_ID": 101, "QUANTITY": 1, "PRICE": 0}]}, None, "zero price"),
        ({}, 1001, "ACCOUNT_NUMBER 1234 is also order 1001"),
    ],
)
def test_unfit_orders_are_quarantined_with_their_reason(
    changes: dict[str, Any], duplicate_of: int | None, reason: str | None
) -> None:
    found = quarantine_reason(ShopOrder.model_validate(raw(**changes)), duplicate_of)
    assert (found is None) if reason is None else (found is not None and reason in found)
