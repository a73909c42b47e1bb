"""Pydantic models of the platform's payment webhook payload (``{"course_order": {...}}``).

Unknown fields are ignored; strings are trimmed. Required: a non-empty ``payment_id``, ``status``,
``created_at`` (``YYYY-MM-DD HH:MM:SS`` in Moscow time) and at least one item with a finite,
non-negative numeric ``cost``. The paid sum is the sum of the items' costs (``amount`` is unused).
``cost`` and ``amount`` are at most 10^9 and an order has at most 1,000 items (see `limits`).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from integration_sync.webhooks.inbox import payment_key
from integration_sync.webhooks.limits import MAX_ITEMS, MAX_MONEY

try:
    MOSCOW: timezone | ZoneInfo = ZoneInfo("Europe/Moscow")
except Exception:  # no tz database: Moscow has been UTC+3 since 2014
    MOSCOW = timezone(timedelta(hours=3), "MSK")

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, coerce_numbers_to_str=True)


def _moscow(value: Any) -> Any:
    """Parse ``YYYY-MM-DD HH:MM:SS`` (naive = Moscow; an explicit offset is converted to Moscow)."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a 'YYYY-MM-DD HH:MM:SS' string")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("must be a 'YYYY-MM-DD HH:MM:SS' string") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=MOSCOW)
    return parsed.astimezone(MOSCOW)


class Subject(_Model):
    name: str | None = None
    project: str | None = None


class Course(_Model):
    name: str | None = None
    subject: Subject | None = None


class OrderItem(_Model):
    cost: Annotated[Decimal, Field(ge=0, le=MAX_MONEY, allow_inf_nan=False)]
    number_lessons: int | None = None
    course: Course | None = None
    package_id: int | str | None = None

    @field_validator("cost", mode="before")
    @classmethod
    def _numeric(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise ValueError("cost must be a number")
        return value


class User(_Model):
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    email: str | None = None
    telegram_id: str | None = None
    telegram_tag: str | None = None


class Utm(_Model):
    source: str | None = None
    medium: str | None = None
    compaign: str | None = None
    term: str | None = None
    content: str | None = None
    ym: str | None = None


class CourseOrder(_Model):
    status: NonEmpty
    amount: Decimal | None = None
    created_at: datetime
    updated_at: datetime | None = None
    code: str | None = None
    payment_id: NonEmpty
    invoice_id: str | None = None
    payment_method: str | None = None
    currency: str | None = None
    course_order_items: list[OrderItem] = Field(min_length=1, max_length=MAX_ITEMS)
    user: User | None = None
    utm: Utm | None = None
    domain: str | None = None

    @field_validator("created_at", "updated_at", mode="before")
    @classmethod
    def _parse_dates(cls, value: Any) -> Any:
        return _moscow(value)

    @field_validator("amount", mode="before")
    @classmethod
    def _lenient_amount(cls, value: Any) -> Any:
        """``amount`` is unused: keep it when it is a finite number, otherwise drop it; one past the
        money bound is refused (the platform never sends it)."""
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return None
        try:
            number = Decimal(str(value).strip())
        except ArithmeticError:
            return None
        if not number.is_finite():
            return None
        if abs(number) > MAX_MONEY:
            raise ValueError(f"amount must be at most {MAX_MONEY}")
        return number

    @property
    def total_cost(self) -> Decimal:
        return sum((item.cost for item in self.course_order_items), Decimal(0))

    @property
    def event_date(self) -> date:
        """The payment's date in Moscow (the inbox's partition date)."""
        return self.created_at.astimezone(MOSCOW).date()


class PaymentWebhook(_Model):
    course_order: CourseOrder

    @property
    def event_key(self) -> str:
        return payment_key(self.course_order.payment_id)
