"""ABCP → Bitrix24 mapping rules, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from integration_sync.defs.abcp_bitrix24.mapping import (
    DealSettings,
    contact_fields,
    deal_title,
    desired_user,
    parse_money,
    registration_day,
    saldo_value,
    user_key,
)
from integration_sync.sync.normalize import normalize_email, normalize_phone

SETTINGS = DealSettings(
    category_id=5,
    stage_id="C5:NEW",
    uf_user_id="UF_CRM_ABCP_USER_ID",
    uf_inn="UF_CRM_ABCP_INN",
    uf_saldo="UF_CRM_ABCP_SALDO",
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("-1 582,00", -1582.0),
        ("4\u00a0630,00", 4630.0),  # no-break space thousands separator
        ("4\u202f630,50", 4630.5),  # narrow no-break space
        ("4630.00", 4630.0),
        ("4630", 4630.0),
        (4630, 4630.0),
        (12.5, 12.5),
        ("+15,5", 15.5),
        ("0", 0.0),
        ("", None),
        ("   ", None),
        (None, None),
        ("n/a", None),
        ("1,2,3", None),
        ("12-34", None),
        (True, None),
        ([], None),
    ],
)
def test_parse_money(raw: Any, expected: float | None) -> None:
    assert parse_money(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("-1 582,00", -1582.0),
        ("4\u00a0630,00", 4630.0),
        ("4630.00", 4630.0),
        ("4630", 4630.0),
        ("", None),
        (None, None),
        ("n/a", "n/a"),  # the seed: an unparseable saldo is sent as the raw string
        (" долг ", "долг"),
    ],
)
def test_saldo_value(raw: Any, expected: float | str | None) -> None:
    assert saldo_value(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+7 (916) 123-45-67", "+79161234567"),
        ("89161234567", "+79161234567"),
        ("8 916 123 45 67", "+79161234567"),
        ("9161234567", "+79161234567"),
        ("+79161234567", "+79161234567"),
        ("+7 727 123 4567", "+77271234567"),  # Kazakhstan shares +7
        ("+44 20 7946 0958", "+442079460958"),
        ("", None),
        ("123", None),
        ("телефон", None),
        (None, None),
    ],
)
def test_normalize_phone(raw: Any, expected: str | None) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" Ivan@Example.RU ", "ivan@example.ru"), ("no-at-sign", None), ("", None), (None, None), ("a@b", None)],
)
def test_normalize_email(raw: Any, expected: str | None) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ({"userId": "7", "organizationName": "ООО Ромашка"}, "ООО Ромашка"),
        ({"userId": "7", "organizationName": "  "}, "ABCP Регистрация: 7"),
        ({"userId": "7", "organizationName": None}, "ABCP Регистрация: 7"),
        ({"userId": "7"}, "ABCP Регистрация: 7"),
    ],
)
def test_deal_title(user: dict[str, Any], expected: str) -> None:
    assert deal_title(user, "ABCP Регистрация:") == expected


@pytest.mark.parametrize(
    ("user", "key", "reason"),
    [
        ({"userId": "8714642"}, "8714642", None),
        ({"userId": " 42 "}, "42", None),
        ({"userId": None}, None, "no userId"),
        ({}, None, "no userId"),
        ({"userId": "abc"}, "abc", "userId is not numeric: 'abc'"),
        ("garbage", None, "not an object: string"),
        ([1, 2], None, "not an object: array"),
    ],
)
def test_user_key(user: Any, key: str | None, reason: str | None) -> None:
    assert user_key(user) == (key, reason)


def test_registration_day_is_the_moscow_calendar_day() -> None:
    assert str(registration_day({"registrationDate": "2026-11-20 23:59:59"})) == "2026-11-20"
    assert registration_day({"registrationDate": "20.11.2026"}) is None
    assert registration_day({}) is None


def test_contact_dedupes_phones_and_falls_back_to_organization_name() -> None:
    user = {
        "userId": "5",
        "mobile": "8 (916) 123-45-67",
        "phone": "+79161234567",
        "email": "bad",
        "organizationName": "ИП Петров",
    }
    fields = contact_fields(user)
    assert fields["PHONE"] == ["+79161234567"]
    assert fields["EMAIL"] == []
    assert fields["NAME"] == "ИП Петров"
    assert (fields["ORIGINATOR_ID"], fields["ORIGIN_ID"]) == ("integration_sync", "5")


def test_desired_user_exactly_as_the_seed_says() -> None:
    user = {
        "userId": "8714642",
        "name": "Иван",
        "secondName": "Петрович",
        "surname": "Сидоров",
        "mobile": "89161234567",
        "email": "IVAN@example.ru",
        "organizationName": "",
        "inn": "7701234567",
        "saldo": "-1 582,00",
    }
    record = desired_user(user, SETTINGS)
    assert record.key == "8714642" and record.invalid_reason is None
    assert record.payload["deal"] == {
        "TITLE": "ABCP Регистрация: 8714642",
        "UF_CRM_ABCP_USER_ID": "8714642",
        "UF_CRM_ABCP_INN": "7701234567",
        "UF_CRM_ABCP_SALDO": -1582.0,
        "ORIGINATOR_ID": "integration_sync",
        "ORIGIN_ID": "8714642",
    }
    assert record.payload["deal_create"] == {"CATEGORY_ID": 5, "STAGE_ID": "C5:NEW"}
    assert record.payload["contact"]["PHONE"] == ["+79161234567"]
    assert record.payload["contact"]["EMAIL"] == ["ivan@example.ru"]
    assert (record.payload["contact"]["NAME"], record.payload["contact"]["LAST_NAME"]) == ("Иван", "Сидоров")


def test_desired_user_hash_changes_only_with_content() -> None:
    user = {"userId": "1", "name": "A", "saldo": "10"}
    assert desired_user(user, SETTINGS).hash == desired_user(dict(user), SETTINGS).hash
    assert desired_user(user, SETTINGS).hash != desired_user({**user, "saldo": "11"}, SETTINGS).hash
    # a field we do not send does not make the user "changed"
    assert desired_user(user, SETTINGS).hash == desired_user({**user, "balance": "99"}, SETTINGS).hash


@pytest.mark.parametrize("bad", [{"userId": ""}, {"name": "no id"}, "text", None, {"userId": "12ab"}])
def test_unusable_records_are_invalid_with_a_reason(bad: Any) -> None:
    record = desired_user(bad, SETTINGS)
    assert record.invalid_reason
    assert record.key


def test_real_users_with_numbers_and_lists_map_without_crashing() -> None:
    """Guards `_text`: a numeric userId/inn is kept as text, a list where a string was expected is ''."""
    user: dict[str, Any] = {
        "userId": 8714642,
        "inn": 7701234567,
        "name": ["Анна"],
        "surname": "Иванова",
        "mobile": ["+79161234567"],
        "email": {"value": "x@y.ru"},
        "organizationName": ["ООО"],
        "saldo": [1],
        "deliveryAddressZones": [{"id": "2"}],
        "regionId": 77,
    }
    desired = desired_user(user, SETTINGS)
    assert desired.invalid_reason is None and desired.key == "8714642"
    deal = desired.payload["deal"]
    assert deal["UF_CRM_ABCP_USER_ID"] == "8714642" and deal["ORIGIN_ID"] == "8714642"
    assert deal["UF_CRM_ABCP_INN"] == "7701234567"
    assert deal["TITLE"] == "ABCP Регистрация: 8714642"
    contact = desired.payload["contact"]
    assert (contact["NAME"], contact["PHONE"], contact["EMAIL"]) == ("", [], [])
