"""The payments flow's pure rules: pipelines by UTM, subjects, direction, the note, active leads."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from integration_sync.connectors.amocrm import Contact, Lead
from integration_sync.defs.payments_amocrm.mapping import (
    LeadFields,
    PaymentFacts,
    PaymentSettings,
    Stage,
    active_lead,
    choose_stage,
    contact_fill,
    contact_identities,
    desired_payment,
    direction_enum_id,
    has_note_for,
    holds_identity,
    identities,
    latest,
    lead_title,
    money,
    note_text,
    payment_fields,
    subject_enum_ids,
)
from integration_sync.webhooks.models import PaymentWebhook
from integration_sync_tests.payments_amocrm.flow import BASE, payment

SETTINGS = PaymentSettings(
    site=Stage(4423755, 63242022),
    yandex=Stage(10089806, 80579130),
    partners=Stage(8598230, 80517738),
    lead_fields=LeadFields(1, 2, 3, 4, 5, 6, 7, 8),
    subject_enums={"Русский": 101, "Математика": 102, "Обществознание": 103},
    direction_enums={"ЕГЭ": 201, "ОГЭ": 202},
    contact_tg_id_field=301,
    contact_tg_username_field=302,
)

GOLDEN_NOTE = """Оплата проведена

Имя клиента: Иван Петров
Дата/время: 2025-01-20 14:49:20 (Moscow)
Дата/время UTC: 2025-01-20T11:49:20Z
Статус: CONFIRMED
Сумма: 10000 RUB
Метод оплаты: SBP
Курсы:
  Годовой 2к25 стандарт (Русский)
  Годовой 2к25 стандарт (Обществознание)
Промокод: PROMO2025
TGID: 123456789 | TG Username: @ivan | Телефон: +79991234567
Источник: platform
Invoice ID: inv_12345
Payment ID: pay_67890"""


def order(data: dict[str, Any] | None = None) -> Any:
    return PaymentWebhook.model_validate(data or BASE).course_order


@pytest.mark.parametrize(
    ("source", "medium", "expected"),
    [
        ("advcake", "cpa", "partners"),
        ("ADVCAKE", "cpc", "partners"),  # the partner rule comes first
        ("ris.promo", None, "partners"),
        ("tbank_cashback", "referral", "partners"),  # "contains", as the seed says
        ("yandex", "cpc", "yandex"),
        ("yandex", "el-ege", "yandex"),
        ("direct", "cpm", "yandex"),
        ("direct", "organic", "site"),
        (None, None, "site"),
        ("", "", "site"),
        ("platform", "direct", "site"),
    ],
)
def test_the_new_lead_pipeline_follows_the_utm_rules(source: str | None, medium: str | None, expected: str) -> None:
    rule, stage = choose_stage(source, medium, SETTINGS)
    assert rule == expected
    assert stage == {"partners": SETTINGS.partners, "yandex": SETTINGS.yandex, "site": SETTINGS.site}[expected]


def test_the_note_is_the_seeds_text_with_moscow_and_utc_times() -> None:
    assert note_text(order()) == GOLDEN_NOTE
    assert has_note_for(GOLDEN_NOTE, "pay_67890") and not has_note_for(GOLDEN_NOTE, "pay_6789")


def test_missing_values_in_the_note_are_dashes() -> None:
    data = payment("p-1")
    data["course_order"].update(code=None, payment_method=None, utm=None)
    data["course_order"]["user"] = {"first_name": "Анна", "phone": "not a phone"}
    text = note_text(order(data))
    assert "Промокод: —" in text and "Метод оплаты: —" in text and "Источник: —" in text
    assert "TGID: — | TG Username: — | Телефон: not a phone" in text


def test_subjects_map_to_enums_ignoring_case_and_report_the_unknown() -> None:
    ids, unmapped = subject_enum_ids(["русский", "Математика ", "Химия", "Русский"], SETTINGS.subject_enums)
    assert ids == [101, 102] and unmapped == ["Химия"]


def test_direction_is_the_most_common_project() -> None:
    data = payment("p-2")
    items = data["course_order"]["course_order_items"]
    items.append({"cost": 1, "course": {"name": "x", "subject": {"name": "Математика", "project": "ОГЭ"}}})
    assert direction_enum_id(order(data), SETTINGS.direction_enums) == 201
    for item in items:
        item["course"]["subject"]["project"] = "огэ"
    assert direction_enum_id(order(data), SETTINGS.direction_enums) == 202


def test_title_amount_and_payload_use_the_items_costs_never_amount() -> None:
    webhook = PaymentWebhook.model_validate(BASE)
    assert lead_title(webhook.course_order) == "Оплата Русский, Обществознание - Иван Петров"
    desired = desired_payment(webhook, SETTINGS)
    assert desired.key == "pay_67890" and desired.invalid_reason is None
    assert desired.payload["amount"] == "10000" and desired.payload["new_lead"]["price"] == 10000
    assert desired.payload["subjects"] == [101, 103] and desired.payload["direction"] == 201
    assert desired.payload["customer"]["phone"] == "+79991234567"
    assert desired.payload["new_lead"]["utm"] == {
        "UTM_SOURCE": "platform",
        "UTM_MEDIUM": "direct",
        "UTM_CAMPAIGN": "summer2025",
    }
    assert money(Decimal("1500.50")) == "1500.50" and money(Decimal("1E+4")) == "10000"


def test_a_payment_without_any_identity_is_invalid() -> None:
    data = payment("p-3", user={"first_name": "Без", "phone": "12", "email": "nope"})
    desired = desired_payment(PaymentWebhook.model_validate(data), SETTINGS)
    assert desired.invalid_reason and "identity" in desired.invalid_reason
    data = payment("p-4", user={"email": "Only@Mail.ru"})
    desired = desired_payment(PaymentWebhook.model_validate(data), SETTINGS)
    assert desired.invalid_reason is None and identities(desired.payload["customer"]) == ["email:only@mail.ru"]


def test_identity_priority_is_telegram_then_phone_then_email() -> None:
    customer = {"telegram_id": "42", "phone": "+79990001122", "email": "a@b.ru"}
    assert identities(customer) == ["tg:42", "phone:+79990001122", "email:a@b.ru"]


def _contact(**values: Any) -> Contact:
    fields: list[dict[str, Any]] = []
    if "phone" in values:
        fields.append({"field_code": "PHONE", "values": [{"value": values["phone"]}]})
    if "email" in values:
        fields.append({"field_code": "EMAIL", "values": [{"value": values["email"]}]})
    if "tg" in values:
        fields.append({"field_id": 301, "values": [{"value": values["tg"]}]})
    if "username" in values:
        fields.append({"field_id": 302, "values": [{"value": values["username"]}]})
    return Contact.model_validate({"id": 1, "custom_fields_values": fields})


def test_a_search_hit_counts_only_when_the_contact_holds_the_identity() -> None:
    contact = _contact(phone="8 (999) 123-45-67", email="Ivan@Example.com", tg="555")
    assert holds_identity(contact, "phone:+79991234567", SETTINGS)
    assert holds_identity(contact, "email:ivan@example.com", SETTINGS)
    assert holds_identity(contact, "tg:555", SETTINGS)
    assert not holds_identity(contact, "tg:5555", SETTINGS)  # query matched a substring
    assert not holds_identity(_contact(phone="+79991234568"), "phone:+79991234567", SETTINGS)


def test_a_contact_s_identities_are_normalized_for_the_index() -> None:
    contact = _contact(phone="+7 (999) 123-45-67", email=" Ivan@Example.com ", tg=" 555 ")
    assert contact_identities(contact, SETTINGS) == ["tg:555", "phone:+79991234567", "email:ivan@example.com"]
    assert contact_identities(_contact(phone="not a phone"), SETTINGS) == []


def test_telegram_fields_are_filled_only_where_empty() -> None:
    customer = {"telegram_id": "42", "telegram_username": "ivan"}
    assert [v["field_id"] for v in contact_fill(_contact(), customer, SETTINGS)] == [301, 302]
    assert [v["field_id"] for v in contact_fill(_contact(tg="41"), customer, SETTINGS)] == [302]
    assert contact_fill(_contact(tg="41", username="old"), customer, SETTINGS) == []


def _lead(lead_id: int, status: int, updated: int, contacts: tuple[int, ...] = (7,), **extra: Any) -> Lead:
    return Lead.model_validate(
        {
            "id": lead_id,
            "status_id": status,
            "pipeline_id": 1,
            "updated_at": updated,
            "_embedded": {"contacts": [{"id": c} for c in contacts]},
            **extra,
        }
    )


def test_the_active_lead_is_the_latest_open_one_of_the_contact_in_any_pipeline() -> None:
    excluded = SETTINGS.excluded_statuses
    assert excluded == {142, 143, 63242022, 80579130, 80517738}
    leads = [
        _lead(1, 70000011, 100),
        _lead(2, 80579120, 300),  # another pipeline, latest open: this one
        _lead(3, 142, 900),  # won
        _lead(4, 143, 900),  # lost
        _lead(5, 63242022, 900),  # "Автооплаты ООО"
        _lead(6, 80517720, 900, contacts=(8,)),  # someone else's
        _lead(7, 80517720, 900, is_deleted=True),
        _lead(8, 80517720, 0),  # never updated
    ]
    assert active_lead(leads, 7, excluded) == leads[1]
    assert active_lead(leads[2:], 7, excluded) is None


def test_payment_fields_are_absolute_values_and_the_latest_payment_wins() -> None:
    older = PaymentFacts("a", "inv-a", Decimal("100"), 1000)
    newer = PaymentFacts("b", None, Decimal("250.5"), 2000)
    assert latest([None, newer, older]) == newer
    values = payment_fields(
        SETTINGS, subjects=[101], direction=201, last=newer, total_paid=Decimal("350.5"), purchase_count=2
    )
    by_id = {v.get("field_id"): v["values"] for v in values}
    assert by_id[1] == [{"enum_id": 101}] and by_id[2] == [{"enum_id": 201}]
    assert by_id[3] == [{"value": "250.5"}] and by_id[4] == [{"value": "350.5"}] and by_id[5] == [{"value": 2}]
    assert by_id[6] == [{"value": 2000}] and by_id[7] == [{"value": "b"}]
    assert 8 not in by_id  # no invoice id: the field is left as it is
