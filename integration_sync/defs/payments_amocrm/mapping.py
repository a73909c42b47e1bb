"""Pure rules of the payments → amoCRM flow (no I/O): the pipeline a new lead goes to by UTM, subject
and direction enums, the lead's title and fields, the note text, which lead is a customer's active
one, and which contact fields may be filled.

The paid sum is always the sum of the items' ``cost`` (the payload's ``amount`` is not used), and
"last payment" fields follow the most recent payment by its date, so a retried older payment never
overwrites a newer one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from typing import Any

from integration_sync.connectors.amocrm import LOST_STATUS_ID as LOST
from integration_sync.connectors.amocrm import WON_STATUS_ID as WON
from integration_sync.connectors.amocrm import Contact, Lead, enum_field_value, field_value
from integration_sync.sync.engine import Desired
from integration_sync.sync.normalize import normalize_email, normalize_phone
from integration_sync.targets.amocrm_contacts import ContactKeyRule
from integration_sync.webhooks.models import MOSCOW, CourseOrder, PaymentWebhook

PARTNER_SOURCES = (
    "advcake",
    "flocktory",
    "tutortop",
    "sravni",
    "tbank",
    "reshuege",
    "ris.promo",
    "gdeslon",
    "admitad",
    "pfm",
)
YANDEX_MEDIUMS = ("cpc", "el-ege", "cpm")
UTM_FIELD_CODES = {
    "source": "UTM_SOURCE",
    "medium": "UTM_MEDIUM",
    "compaign": "UTM_CAMPAIGN",  # the platform's spelling
    "term": "UTM_TERM",
    "content": "UTM_CONTENT",
}
MISSING = "—"


@dataclass(frozen=True)
class Stage:
    """Where a new lead is created: a pipeline and its "Автооплаты ООО" status."""

    pipeline_id: int
    status_id: int


@dataclass(frozen=True)
class LeadFields:
    """Lead custom field ids (None: the account has no such field, nothing is written there)."""

    subjects: int | None = None
    direction: int | None = None
    last_payment_amount: int | None = None
    total_paid: int | None = None
    purchase_count: int | None = None
    last_payment_date: int | None = None
    payment_id: int | None = None
    invoice_id: int | None = None


@dataclass(frozen=True)
class PaymentSettings:
    """The seed's AMO_* settings for payments, with its pipeline rules and status exclusions."""

    site: Stage
    yandex: Stage
    partners: Stage
    lead_fields: LeadFields = field(default_factory=LeadFields)
    subject_enums: Mapping[str, int] = field(default_factory=dict)
    direction_enums: Mapping[str, int] = field(default_factory=dict)
    contact_tg_id_field: int | None = None
    contact_tg_username_field: int | None = None
    partner_sources: Sequence[str] = PARTNER_SOURCES
    yandex_mediums: Sequence[str] = YANDEX_MEDIUMS
    extra_excluded_statuses: frozenset[int] = frozenset()
    create_if_not_found: bool = True
    responsible_user_id: int | None = None
    default_country: str = "RU"

    @property
    def contact_rule(self) -> ContactKeyRule:
        """How the account's shared contact index reads a contact's identities."""
        return ContactKeyRule(telegram_field_id=self.contact_tg_id_field, region=self.default_country)

    @property
    def excluded_statuses(self) -> frozenset[int]:
        """Statuses an active lead is never in: won, lost and the three "Автооплаты ООО" stages."""
        autopay = {self.site.status_id, self.yandex.status_id, self.partners.status_id}
        return frozenset({WON, LOST, *autopay, *self.extra_excluded_statuses})


# ---- the new lead's stage ------------------------------------------------------------------------


def _contains_any(value: str | None, needles: Iterable[str]) -> bool:
    text = (value or "").strip().casefold()
    return bool(text) and any(needle.strip().casefold() in text for needle in needles if needle.strip())


def choose_stage(utm_source: str | None, utm_medium: str | None, settings: PaymentSettings) -> tuple[str, Stage]:
    """Partners when utm_source contains a partner name, Yandex when utm_medium contains a Yandex
    medium, the site otherwise (the seed's order of rules)."""
    if _contains_any(utm_source, settings.partner_sources):
        return "partners", settings.partners
    if _contains_any(utm_medium, settings.yandex_mediums):
        return "yandex", settings.yandex
    return "site", settings.site


# ---- enums ---------------------------------------------------------------------------------------


def _key(name: str) -> str:
    return " ".join(name.split()).casefold().replace("ё", "е")


def subject_names(order: CourseOrder) -> list[str]:
    """The order's subject names, each once, in item order."""
    names: list[str] = []
    for item in order.course_order_items:
        subject = item.course.subject if item.course else None
        name = (subject.name or "").strip() if subject else ""
        if name and name not in names:
            names.append(name)
    return names


def subject_enum_ids(names: Sequence[str], mapping: Mapping[str, int]) -> tuple[list[int], list[str]]:
    """Enum ids of the subjects (name matched ignoring case, spaces and ё), and the names not mapped."""
    by_key = {_key(name): int(enum_id) for name, enum_id in mapping.items()}
    ids: list[int] = []
    unmapped: list[str] = []
    for name in names:
        enum_id = by_key.get(_key(name))
        if enum_id is None:
            unmapped.append(name)
        elif enum_id not in ids:
            ids.append(enum_id)
    return ids, unmapped


def direction_enum_id(order: CourseOrder, mapping: Mapping[str, int]) -> int | None:
    """ЕГЭ / ОГЭ of the order: the most common project among its items (the first on a tie)."""
    by_key = {_key(name): int(enum_id) for name, enum_id in mapping.items()}
    counts: dict[int, int] = {}
    for item in order.course_order_items:
        subject = item.course.subject if item.course else None
        enum_id = by_key.get(_key(subject.project or "")) if subject else None
        if enum_id is not None:
            counts[enum_id] = counts.get(enum_id, 0) + 1
    return max(counts, key=lambda k: counts[k]) if counts else None


# ---- texts ---------------------------------------------------------------------------------------


def client_name(order: CourseOrder) -> str:
    user = order.user
    if user is None:
        return "Клиент платформы"
    name = " ".join(part for part in (user.first_name, user.last_name) if part and part.strip()).strip()
    return name or user.phone or user.email or "Клиент платформы"


def lead_title(order: CourseOrder) -> str:
    """ "Оплата {предмет} - {имя клиента}" (several subjects joined with commas)."""
    subjects = ", ".join(subject_names(order)) or "курса"
    return f"Оплата {subjects} - {client_name(order)}"


def money(amount: Decimal) -> str:
    """10000 for a whole sum, 10000.5 otherwise (never an exponent)."""
    return format(amount.normalize(), "f") if amount == amount.to_integral_value() else format(amount, "f")


def _or_missing(value: Any) -> str:
    text = "" if value is None else str(value).strip()
    return text or MISSING


def customer_phone(order: CourseOrder, country: str = "RU") -> str | None:
    raw = order.user.phone if order.user else None
    return normalize_phone(raw, country) if raw else None


def note_text(order: CourseOrder, country: str = "RU") -> str:
    """The seed's note, line for line: Moscow time, then UTC, the items, the customer's ids."""
    user = order.user
    paid_at = order.created_at
    courses = []
    for item in order.course_order_items:
        course = item.course.name if item.course and item.course.name else ""
        subject = item.course.subject.name if item.course and item.course.subject and item.course.subject.name else ""
        if course and subject:
            courses.append(f"  {course} ({subject})")
        else:
            courses.append(f"  {course or subject or MISSING}")
    tag = (user.telegram_tag or "").strip().lstrip("@") if user else ""
    phone = customer_phone(order, country) or (user.phone if user else None)
    lines = [
        "Оплата проведена",
        "",
        f"Имя клиента: {client_name(order)}",
        f"Дата/время: {paid_at.astimezone(MOSCOW):%Y-%m-%d %H:%M:%S} (Moscow)",
        f"Дата/время UTC: {paid_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
        f"Статус: {order.status}",
        f"Сумма: {money(order.total_cost)} {_or_missing(order.currency)}",
        f"Метод оплаты: {_or_missing(order.payment_method)}",
        "Курсы:",
        *courses,
        f"Промокод: {_or_missing(order.code)}",
        f"TGID: {_or_missing(user.telegram_id if user else None)} | TG Username: {'@' + tag if tag else MISSING}"
        f" | Телефон: {_or_missing(phone)}",
        f"Источник: {_or_missing(order.utm.source if order.utm else None)}",
        f"Invoice ID: {_or_missing(order.invoice_id)}",
        f"Payment ID: {order.payment_id}",
    ]
    return "\n".join(lines)


def note_marker(payment_id: str) -> str:
    """The note line that proves a payment was applied (the note is the last write)."""
    return f"Payment ID: {payment_id}"


def has_note_for(text: str, payment_id: str) -> bool:
    return note_marker(payment_id) in text.splitlines()


# ---- the desired record --------------------------------------------------------------------------


def desired_payment(webhook: PaymentWebhook, settings: PaymentSettings) -> Desired:
    """One payment as the engine's desired record, keyed by payment_id (invalid without any identity)."""
    order = webhook.course_order
    user = order.user
    phone = customer_phone(order, settings.default_country)
    email = normalize_email(user.email) if user and user.email else None
    telegram_id = (user.telegram_id or "").strip() if user else ""
    names = subject_names(order)
    subjects, unmapped = subject_enum_ids(names, settings.subject_enums)
    rule, stage = choose_stage(
        order.utm.source if order.utm else None, order.utm.medium if order.utm else None, settings
    )
    utm = {}
    if order.utm is not None:
        for attr, code in UTM_FIELD_CODES.items():
            value = (getattr(order.utm, attr) or "").strip()
            if value:
                utm[code] = value
    payload: dict[str, Any] = {
        "payment_id": order.payment_id,
        "invoice_id": order.invoice_id,
        "paid_at": int(order.created_at.timestamp()),
        "amount": money(order.total_cost),
        "customer": {
            "name": client_name(order),
            "first_name": (user.first_name or "").strip() if user else "",
            "last_name": (user.last_name or "").strip() if user else "",
            "phone": phone,
            "email": email,
            "telegram_id": telegram_id or None,
            "telegram_username": ((user.telegram_tag or "").strip().lstrip("@") or None) if user else None,
        },
        "subjects": subjects,
        "unmapped_subjects": unmapped,
        "direction": direction_enum_id(order, settings.direction_enums),
        "new_lead": {
            "name": lead_title(order),
            "price": int(order.total_cost),
            "pipeline_id": stage.pipeline_id,
            "status_id": stage.status_id,
            "rule": rule,
            "utm": utm,
        },
        "note": note_text(order, settings.default_country),
    }
    reason = None
    if not (telegram_id or phone or email):
        reason = "no customer identity: neither a telegram id, a valid phone nor a valid email"
    return Desired(key=order.payment_id, payload=payload, invalid_reason=reason)


def identities(customer: Mapping[str, Any]) -> list[str]:
    """The customer's identity keys in matching priority: Telegram id, phone, email."""
    keys = []
    if customer.get("telegram_id"):
        keys.append(f"tg:{customer['telegram_id']}")
    if customer.get("phone"):
        keys.append(f"phone:{customer['phone']}")
    if customer.get("email"):
        keys.append(f"email:{customer['email']}")
    return keys


def holds_identity(contact: Contact, identity: str, settings: PaymentSettings) -> bool:
    """Whether an amoCRM contact really carries this identity (a `query` hit is only a hint)."""
    return settings.contact_rule.holds(contact, identity)


def contact_identities(contact: Contact, settings: PaymentSettings) -> list[str]:
    """Every identity key an amoCRM contact holds: its Telegram ids, phones (E.164) and emails."""
    return settings.contact_rule.keys_of(contact)


# ---- leads ---------------------------------------------------------------------------------------


def active_lead(leads: Iterable[Lead], contact_id: int, excluded: frozenset[int]) -> Lead | None:
    """The contact's active lead in any pipeline: linked to it, not deleted, not in an excluded
    status, with an update time; the most recently updated wins (then the highest id)."""
    candidates = [
        lead
        for lead in leads
        if contact_id in lead.contact_ids
        and not lead.is_deleted
        and lead.status_id not in excluded
        and (lead.updated_at or 0) > 0
    ]
    return max(candidates, key=lambda lead: (lead.updated_at or 0, lead.id), default=None)


@dataclass(frozen=True)
class PaymentFacts:
    """What the "last payment" fields show."""

    payment_id: str
    invoice_id: str | None
    amount: Decimal
    paid_at: int


def latest(facts: Iterable[PaymentFacts | None]) -> PaymentFacts | None:
    present = [f for f in facts if f is not None]
    return max(present, key=lambda f: (f.paid_at, f.payment_id), default=None)


def _number(value: Decimal) -> int | str:
    return int(value) if value == value.to_integral_value() else money(value)


def payment_fields(
    settings: PaymentSettings,
    *,
    subjects: Sequence[int],
    direction: int | None,
    last: PaymentFacts,
    total_paid: Decimal,
    purchase_count: int,
    utm: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The lead's custom_fields_values for its payments: absolute values, never increments."""
    ids = settings.lead_fields
    values: list[dict[str, Any]] = []
    if ids.subjects and subjects:
        values.append(enum_field_value(ids.subjects, *subjects))
    if ids.direction and direction:
        values.append(enum_field_value(ids.direction, direction))
    if ids.last_payment_amount:
        values.append(field_value(ids.last_payment_amount, _number(last.amount)))
    if ids.total_paid:
        values.append(field_value(ids.total_paid, _number(total_paid)))
    if ids.purchase_count:
        values.append(field_value(ids.purchase_count, purchase_count))
    if ids.last_payment_date:
        values.append(field_value(ids.last_payment_date, last.paid_at))
    if ids.payment_id:
        values.append(field_value(ids.payment_id, last.payment_id))
    if ids.invoice_id and last.invoice_id:
        values.append(field_value(ids.invoice_id, last.invoice_id))
    for code, value in (utm or {}).items():
        values.append(field_value(code, value))
    return values


def lead_baseline(lead: Lead, settings: PaymentSettings) -> tuple[Decimal, int]:
    """Total paid and purchase count a lead held before this project first touched it."""
    ids = settings.lead_fields
    total = _decimal(lead.field_value(ids.total_paid)) if ids.total_paid else Decimal(0)
    count = _decimal(lead.field_value(ids.purchase_count)) if ids.purchase_count else Decimal(0)
    return total, int(count)


def _decimal(value: Any) -> Decimal:
    try:
        number = Decimal(str(value).replace(",", ".").replace(" ", "")) if value not in (None, "") else Decimal(0)
    except ArithmeticError:
        return Decimal(0)
    return number if number.is_finite() else Decimal(0)


# ---- contacts ------------------------------------------------------------------------------------


def new_contact(customer: Mapping[str, Any], settings: PaymentSettings) -> dict[str, Any]:
    """A contact body for a customer amoCRM does not know."""
    values: list[dict[str, Any]] = []
    if customer.get("phone"):
        values.append(field_value("PHONE", customer["phone"], enum_code="MOB"))
    if customer.get("email"):
        values.append(field_value("EMAIL", customer["email"], enum_code="WORK"))
    if settings.contact_tg_id_field and customer.get("telegram_id"):
        values.append(field_value(settings.contact_tg_id_field, customer["telegram_id"]))
    if settings.contact_tg_username_field and customer.get("telegram_username"):
        values.append(field_value(settings.contact_tg_username_field, customer["telegram_username"]))
    body: dict[str, Any] = {"name": customer["name"], "custom_fields_values": values}
    if customer.get("first_name"):
        body["first_name"] = customer["first_name"]
    if customer.get("last_name"):
        body["last_name"] = customer["last_name"]
    if settings.responsible_user_id:
        body["responsible_user_id"] = settings.responsible_user_id
    return body


def contact_fill(contact: Contact, customer: Mapping[str, Any], settings: PaymentSettings) -> list[dict[str, Any]]:
    """Telegram id and username for a contact that has none (a filled value is never overwritten)."""
    values: list[dict[str, Any]] = []
    for field_id, key in (
        (settings.contact_tg_id_field, "telegram_id"),
        (settings.contact_tg_username_field, "telegram_username"),
    ):
        if field_id and customer.get(key) and not any(str(v or "").strip() for v in contact.field_values(field_id)):
            values.append(field_value(field_id, customer[key]))
    return values
