"""amoCRM custom-field values: building them for writes (``enum_id`` only for select fields, which
amoCRM refuses with ``enum_code``), reading them back, and the phone and e-mail forms amoCRM's own
``query`` search needs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from integration_sync.connectors.amocrm_models import (  # noqa: F401  (read_* re-exported for callers)
    AmoModel,
    _field_key,
    read_enum_ids,
    read_field_values,
)


def _as_mapping(item: Any) -> Mapping[str, Any]:
    """Wire form of a model or a dict being serialized for a write."""
    if isinstance(item, BaseModel):
        return item.model_dump(exclude_none=True)
    return item if isinstance(item, Mapping) else {}


def field_value(field: int | str, *values: Any, enum_code: str | None = None) -> dict[str, Any]:
    """Write form ``{field_id|field_code, values: [{value}, …]}`` (``enum_code`` e.g. ``MOB`` for a
    PHONE value). An id given as a digit string is sent as ``field_id``."""
    items: list[dict[str, Any]] = []
    for value in values:
        item: dict[str, Any] = {"value": value}
        if enum_code:
            item["enum_code"] = enum_code
        items.append(item)
    return {**_field_key(field), "values": items}


def enum_field_value(field: int | str, *enum_ids: int) -> dict[str, Any]:
    """Write form of a select/multiselect field: ``values: [{enum_id}, …]`` (never ``enum``)."""
    return {**_field_key(field), "values": [{"enum_id": int(enum_id)} for enum_id in enum_ids]}


def clear_field(field: int | str) -> dict[str, Any]:
    """``values: null`` clears the field."""
    return {**_field_key(field), "values": None}


_WRITE_VALUE_KEYS = ("value", "enum_id", "enum_code")
_SELECT_WRITE_KEYS = ("enum_id",)


def to_write_form(custom_fields_values: Iterable[Any] | None) -> list[dict[str, Any]]:
    """Read form → write form: keeps field_id/field_code and value/enum_id/enum_code (only enum_id
    for a select field), drops ``enum``, ``field_name`` and ``field_type`` (sending ``enum`` is a 400
    FieldNotExpected)."""
    written: list[dict[str, Any]] = []
    for item in custom_fields_values or []:
        mapping = _as_mapping(item)
        out: dict[str, Any] = {}
        if mapping.get("field_id") is not None:
            out["field_id"] = mapping["field_id"]
        elif mapping.get("field_code"):
            out["field_code"] = mapping["field_code"]
        else:
            continue
        values = mapping.get("values")
        # a select (single) field takes enum_id only: amoCRM refuses its enum_code (FieldNotExpected)
        keys = _SELECT_WRITE_KEYS if mapping.get("field_type") == "select" else _WRITE_VALUE_KEYS
        if values is None:
            out["values"] = None
        else:
            out["values"] = [
                {k: v for k, v in _as_mapping(value).items() if k in keys and v is not None} for value in values
            ]
        written.append(out)
    return written


def sanitize_for_write(body: Any) -> Any:
    """A copy of a request body whose ``custom_fields_values`` are in write form (at any depth)."""
    if isinstance(body, BaseModel):
        body = body.model_dump(by_alias=True, exclude_none=True)
    if isinstance(body, Mapping):
        out: dict[str, Any] = {}
        for key, value in body.items():
            if key == "custom_fields_values" and isinstance(value, list | tuple):
                out[key] = to_write_form(value)
            else:
                out[key] = sanitize_for_write(value)
        return out
    if isinstance(body, list | tuple):
        return [sanitize_for_write(item) for item in body]
    return body


# -- phone and email matching -------------------------------------------------------------------


PhoneKey = Callable[[str], str | None]
"""The project's one phone rule (`sync.normalize.normalize_phone`, E.164), handed in by the caller:
the connector searches and compares with it, and owns no rule of its own."""


def phone_query_forms(phone: str) -> list[str]:
    """The strings to search for one phone given in E.164 (``+77011234567``): amoCRM's ``query``
    does not normalize phones, so ``+7…``, ``8…`` and bare ``7…`` are different searches."""
    digits = phone.strip().removeprefix("+")
    if not digits.isdigit():
        return []
    if len(digits) == 11 and digits.startswith("7"):
        return [f"+{digits}", f"8{digits[1:]}", digits]
    return [f"+{digits}", digits]


def normalize_email(value: Any) -> str:
    return str(value or "").strip().lower()


# -- the client ---------------------------------------------------------------------------------
