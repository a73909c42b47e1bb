"""The Bitrix CMS shop's order webhook (``{"event": "order.saved", "order": {...}}``): its pydantic wire
model, its inbox key and how a body that is not UTF-8 is read.

Tolerant as real shops are: ids may come as digit strings (→ int), money as a decimal string or a
number (→ Decimal, ≤ 10^9, never negative), dates as ISO 8601 with an offset or, without one (ISO or
``DD.MM.YYYY HH:MM:SS``), in Kazakhstan time (UTC+5); every PROPERTIES key may be missing, BASKET may
be empty; unknown keys are kept. Required: ``order.ID``, ``DATE_INSERT`` and ``DATE_UPDATE``.

Non-UTF-8 text: a Bitrix site running in windows-1251 (or a property stored in it) sends bytes that
are not UTF-8. Refusing them would leave the order neither in Bitrix24 nor quarantined (the goal is
every order one or the other), so `decode_body` reads each string that is valid UTF-8 as is and only
the broken ones as cp1251 (latin-1 where cp1251 has no character), and names those fields: the
receiver stores the order with that mark, and the flow decides (keep, or quarantine with the reason).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from integration_sync.sync.normalize import KAZAKHSTAN
from integration_sync.webhooks.limits import (
    INT64_MAX,
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_MONEY,
    PayloadRefused,
    check_tree,
    load_json,
)

SOURCE = "bitrix_order"
PING_EVENT = "test"
ORDER_EVENT = "order.saved"
_SHOP_DATE = re.compile(r"^(\d{2})\.(\d{2})\.(\d{4})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?$")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_BROKEN = re.compile("[\udc80-\udcff]")


def _shop_id(value: Any) -> Any:
    """An integer id, also from a digit string ("1234"); never a bool, a float or a signed string."""
    if isinstance(value, bool):
        raise ValueError("must be an integer id")
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii() or not text.isdigit() or len(text) > 18:
            raise ValueError("must be an integer id (digits)")
        return int(text)
    if not isinstance(value, int):
        raise ValueError("must be an integer id")
    return value


def _money(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a decimal amount")
    if isinstance(value, str):
        return value.strip().replace(" ", "").replace("\u00a0", "") or None
    if isinstance(value, float):
        return str(value)  # 1500.1 stays 1500.1, not its binary expansion
    return value


def _shop_date(value: Any) -> Any:
    """An aware datetime: ISO 8601 (an offset kept), or ``DD.MM.YYYY[ HH:MM[:SS]]``/naive ISO in UTC+5."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a date string")
    text = value.strip()
    if not text:
        return None
    match = _SHOP_DATE.match(text)
    try:
        if match:
            day, month, year, hour, minute, second = match.groups()
            parsed = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be ISO 8601 or DD.MM.YYYY HH:MM:SS") from None
    return parsed.replace(tzinfo=KAZAKHSTAN) if parsed.tzinfo is None else parsed


def _money_text(value: Decimal) -> str:
    exponent = value.as_tuple().exponent
    return str(value.quantize(Decimal("0.01")) if isinstance(exponent, int) and exponent >= -2 else value)


def _utc_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


ShopId = Annotated[int, BeforeValidator(_shop_id), Field(gt=0, le=INT64_MAX)]
Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    Field(ge=0, le=MAX_MONEY, allow_inf_nan=False),
    PlainSerializer(_money_text, return_type=str),
]
Quantity = Annotated[Decimal, BeforeValidator(_money), Field(ge=0, le=MAX_MONEY, allow_inf_nan=False)]
ShopDate = Annotated[datetime, BeforeValidator(_shop_date), PlainSerializer(_utc_text, return_type=str)]
Text = Annotated[str | None, BeforeValidator(lambda v: str(v) if isinstance(v, int | float) else v)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)


class Properties(_Model):
    """The order's properties by code; any may be missing (a shop adds its own: kept)."""

    NAME: Text = None
    PHONE: Text = None
    EMAIL: Text = None
    ADDRESS: Text = None
    DELIVERY: Text = None
    DELIVERY_DATE: Text = None


class BasketLine(_Model):
    PRODUCT_ID: ShopId | None = None
    NAME: Text = None
    QUANTITY: Quantity = Decimal(1)
    PRICE: Money = Decimal(0)


class ShopOrder(_Model):
    """One order as the shop sends it (the `order` object of the webhook and of the export)."""

    ID: ShopId
    ACCOUNT_NUMBER: Text = None
    STATUS_ID: Annotated[str, Field(min_length=1, max_length=32)] = "N"
    OLD_STATUS_ID: Text = None
    PRICE: Money = Decimal(0)
    CURRENCY: Text = None
    USER_ID: ShopId | None = None
    PAYED: Text = None
    CANCELED: Text = None
    DATE_INSERT: ShopDate
    DATE_UPDATE: ShopDate
    DATE_STATUS: ShopDate | None = None
    PROPERTIES: Properties = Field(default_factory=Properties)
    BASKET: Annotated[list[BasketLine], Field(max_length=MAX_ITEMS)] = Field(default_factory=list)

    def canonical_json(self) -> str:
        """The order normalized (ids int, money with 2 decimals, dates in UTC), keys sorted: equal
        content gives equal text however the shop formatted it."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def version(self) -> str:
        """``DATE_UPDATE`` in UTC + ":" + the first 12 hex of the canonical JSON's sha256 (two saves in
        one second with different content are two versions)."""
        digest = hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()[:12]
        return f"{_utc_text(self.DATE_UPDATE)}:{digest}"

    def event_key(self) -> str:
        return f"{SOURCE}:{self.ID}:{self.version()}"

    def order_day(self) -> date:
        """The day of ``DATE_INSERT`` in Kazakhstan (UTC+5): the order's partition."""
        return self.DATE_INSERT.astimezone(KAZAKHSTAN).date()


class OrderWebhook(_Model):
    """The webhook body: ``order.saved`` (also without ``event``) with its order."""

    event: Annotated[str | None, Field(pattern=f"^{re.escape(ORDER_EVENT)}$")] = None
    is_new: bool | None = None
    sent_at: ShopDate | None = None
    order: ShopOrder


def _recode(text: str) -> str:
    raw = text.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("cp1251")
    except UnicodeDecodeError:  # 0x98 has no cp1251 character
        return raw.decode("latin-1")


def decode_body(body: bytes) -> tuple[Any, list[str]]:
    """The parsed JSON within `limits`' bounds, and the dotted paths of strings that were not UTF-8
    (read as cp1251, see the module docstring). Raises `PayloadRefused`."""
    try:
        return load_json(body), []
    except PayloadRefused as refused:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            raise refused from None
    text = body.decode("utf-8", "surrogateescape")
    if _SURROGATE_ESCAPE.search(text):  # an escaped lone surrogate must not pass for a cp1251 byte
        raise PayloadRefused("string is not valid UTF-8 (lone surrogate)")
    try:
        data = json.loads(text, parse_constant=lambda name: _refuse(f"{name} is not a JSON number"))
    except PayloadRefused:
        raise
    except RecursionError:
        raise PayloadRefused(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise PayloadRefused("body is not JSON") from None
    recoded: list[str] = []
    data = _walk(data, (), recoded)
    check_tree(data)
    return data, recoded


def _refuse(reason: str) -> Any:
    raise PayloadRefused(reason)


def _walk(value: Any, path: tuple[str, ...], recoded: list[str]) -> Any:
    if isinstance(value, str):
        if _BROKEN.search(value):
            recoded.append(".".join(path) or "(body)")
            return _recode(value)
        return value
    if len(path) > MAX_DEPTH:
        raise PayloadRefused(f"nested deeper than {MAX_DEPTH} levels", path)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, child in value.items():
            name = _recode(key) if _BROKEN.search(key) else key
            out[name] = _walk(child, (*path, name), recoded)
        return out
    if isinstance(value, list):
        return [_walk(child, (*path, str(i)), recoded) for i, child in enumerate(value)]
    return value
