"""Pure mapping rules: an ABCP user → the Bitrix24 contact and «Пользователи» deal it should have.

No I/O here. The payload is what the sync engine hashes and diffs, so everything Bitrix24 should
hold for a user is in it, and nothing that changes without the user changing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from integration_sync.sync.engine import Desired
from integration_sync.sync.normalize import normalize_email, normalize_phone

MOSCOW = ZoneInfo("Europe/Moscow")
ORIGINATOR_ID = "integration_sync"
ABCP_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

_SPACES = re.compile(r"[\s\u00a0\u202f\u2009']")
_MONEY = re.compile(r"^[+-]?(\d+)([.,]\d+)?$")
_USER_ID = re.compile(r"^\d{1,20}$")
# How a record's JSON kind is named in reasons (the same words as the ingest's SQL check).
_JSON_KINDS: dict[type, str] = {
    str: "string",
    int: "number",
    float: "number",
    list: "array",
    type(None): "null",
    bool: "boolean",
}


@dataclass(frozen=True)
class DealSettings:
    """Where deals go and which UF fields hold the ABCP values (the seed's B24_* / UF_* settings)."""

    category_id: int
    stage_id: str
    uf_user_id: str
    uf_inn: str
    uf_saldo: str
    title_prefix: str = "ABCP Регистрация:"
    default_region: str = "RU"


def parse_money(value: Any) -> float | None:
    """ABCP money in any of its formats ("-1 582,00", "4 630,00", "4630.00", 4630) → float, else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    text = _SPACES.sub("", value)
    if not _MONEY.match(text):
        return None
    return float(text.replace(",", "."))


def saldo_value(value: Any) -> float | str | None:
    """The seed's rule: a parseable saldo is sent as a number, anything else as the raw string."""
    parsed = parse_money(value)
    if parsed is not None:
        return parsed
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_abcp_datetime(raw: Any) -> datetime | None:
    """ABCP's "YYYY-MM-DD HH:MM:SS" (Moscow, no zone) → an aware datetime, or None."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        return datetime.strptime(raw.strip(), ABCP_DATE_FORMAT).replace(tzinfo=MOSCOW)
    except ValueError:
        return None


def registration_day(user: Mapping[str, Any]) -> date | None:
    """The Moscow calendar day a user registered on: the partition the user belongs to."""
    moment = parse_abcp_datetime(user.get("registrationDate"))
    return moment.date() if moment else None


def user_key(user: Any) -> tuple[str | None, str | None]:
    """(userId, None) for a usable record, else (whatever id there is, the reason it is unusable)."""
    if not isinstance(user, Mapping):
        return None, f"not an object: {_JSON_KINDS.get(type(user), type(user).__name__)}"
    raw_id = user.get("userId")
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        return None, "no userId"
    user_id = str(raw_id).strip()
    if not _USER_ID.match(user_id):
        return user_id, f"userId is not numeric: {user_id[:40]!r}"
    return user_id, None


def _text(user: Mapping[str, Any], key: str) -> str:
    """A field as text: real users send some values as numbers (kept) or lists (not text: "")."""
    value = user.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value.strip() if isinstance(value, str) else ""


def deal_title(user: Mapping[str, Any], prefix: str) -> str:
    """TITLE = organizationName, else "{prefix} {userId}"."""
    organization = _text(user, "organizationName")
    return organization or f"{prefix} {_text(user, 'userId')}".strip()


def contact_fields(user: Mapping[str, Any], region: str = "RU") -> dict[str, Any]:
    """The contact as Bitrix24 should hold it; phones and emails normalized and de-duplicated."""
    phones: list[str] = []
    for key in ("mobile", "phone"):
        phone = normalize_phone(user.get(key), region)
        if phone and phone not in phones:
            phones.append(phone)
    email = normalize_email(user.get("email"))
    name = _text(user, "name")
    surname = _text(user, "surname")
    if not name and not surname:
        name = _text(user, "organizationName") or f"ABCP {_text(user, 'userId')}"
    return {
        "NAME": name,
        "SECOND_NAME": _text(user, "secondName"),
        "LAST_NAME": surname,
        "PHONE": phones,
        "EMAIL": [email] if email else [],
        "ORIGINATOR_ID": ORIGINATOR_ID,
        "ORIGIN_ID": _text(user, "userId"),
    }


def deal_fields(user: Mapping[str, Any], settings: DealSettings) -> dict[str, Any]:
    """The deal fields this integration owns (stage and pipeline are set once, at creation)."""
    return {
        "TITLE": deal_title(user, settings.title_prefix),
        settings.uf_user_id: _text(user, "userId"),
        settings.uf_inn: _text(user, "inn"),
        settings.uf_saldo: saldo_value(user.get("saldo")),
        "ORIGINATOR_ID": ORIGINATOR_ID,
        "ORIGIN_ID": _text(user, "userId"),
    }


def deal_create_fields(settings: DealSettings) -> dict[str, Any]:
    """Fields sent only when the deal is created; managers move the stage afterwards."""
    return {"CATEGORY_ID": settings.category_id, "STAGE_ID": settings.stage_id}


def desired_user(user: Any, settings: DealSettings) -> Desired:
    """One ABCP user → the engine's desired record (or an invalid one with its reason)."""
    key, reason = user_key(user)
    if reason is not None or key is None or not isinstance(user, Mapping):
        fallback = "invalid:" + hashlib.sha256(repr(user).encode()).hexdigest()[:16]
        return Desired(key=key or fallback, payload={}, invalid_reason=reason or "unusable record")
    payload = {
        "contact": contact_fields(user, settings.default_region),
        "deal": deal_fields(user, settings),
        "deal_create": deal_create_fields(settings),
    }
    return Desired(key=key, payload=payload)
