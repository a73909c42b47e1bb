"""Shared pieces of the amoCRM emulator's write path: amoCRM's error bodies (problem+json and
``validation-errors``), field validators, and the codec of ``custom_fields_values`` (write form ->
stored values -> read form).

Write forms: ``[{field_id | field_code, values: [{value} | {enum_id} | {enum_code}]}]``; any other
key (``enum`` included), and ``enum_code`` on a ``select`` field, is FieldNotExpected; ``values: null``
clears a field. Read form adds ``field_name``, ``field_code``, ``field_type``; enum values carry
``enum_id`` (+ ``enum_code`` where the enum has a code). Numeric values read back as strings, dates as Unix seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from integration_sync.sandbox.amocrm_schema import (
    DATE_TYPES,
    ENUM_TYPES,
    MULTI_VALUE_TYPES,
    NUMERIC_TYPES,
    EnumItem,
    FieldDef,
    FieldSet,
)
from integration_sync.sandbox.core import MOSCOW, JsonDict

# --------------------------------------------------------------------------------------- errors
NOT_VALID_CHOICE: Final = "The value you selected is not a valid choice."
NOT_EXPECTED: Final = "This field was not expected."
MISSING: Final = "This field is missing."


def err_choice(path: str) -> JsonDict:
    return {"code": "NotSupportedChoice", "path": path, "detail": NOT_VALID_CHOICE}


def err_unexpected(path: str) -> JsonDict:
    return {"code": "FieldNotExpected", "path": path, "detail": NOT_EXPECTED}


def err_missing(path: str) -> JsonDict:
    return {"code": "FieldMissing", "path": path, "detail": MISSING}


def err_type(path: str, kind: str) -> JsonDict:
    return {"code": "InvalidType", "path": path, "detail": f"This value should be of type {kind}."}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class ApiError(Exception):
    """An error answered as ``application/problem+json``."""

    def __init__(self, status: int, body: JsonDict) -> None:
        super().__init__(str(body.get("detail", "")))
        self.status = status
        self.body = body


def problem(status: int, title: str, detail: str) -> JsonDict:
    return {"title": title, "type": f"https://httpstatus.es/{status}", "status": status, "detail": detail}


def bad_request(detail: str) -> ApiError:
    return ApiError(400, problem(400, "Bad Request", detail))


class ValidationFailed(ApiError):
    def __init__(self, items: list[JsonDict]) -> None:
        super().__init__(
            400,
            {
                "validation-errors": items,
                "title": "Bad Request",
                "type": "https://httpstatus.es/400",
                "status": 400,
                "detail": "Request validation failed",
            },
        )


def request_id_of(item: Any, ordinal: int) -> str:
    if isinstance(item, dict) and item.get("request_id") is not None:
        return str(item["request_id"])
    return str(ordinal)


def validate_batch(items: list[Any], check: Callable[[Any, int, list[JsonDict]], Any]) -> list[Any]:
    """Run ``check`` on every item; refuse the whole batch when any item has errors."""
    failures: list[JsonDict] = []
    plans: list[Any] = []
    for i, item in enumerate(items):
        errors: list[JsonDict] = []
        if not isinstance(item, dict):
            errors.append(err_type("", "array"))
            plan = None
        else:
            plan = check(item, i, errors)
        if errors:
            failures.append({"request_id": request_id_of(item, i), "errors": errors})
        plans.append(plan)
    if failures:
        raise ValidationFailed(failures)
    return plans


class _Missing:
    pass


MISSING_VALUE: Final = _Missing()


def check_keys(item: Mapping[str, Any], allowed: Iterable[str], prefix: str, errors: list[JsonDict]) -> None:
    allowed_set = set(allowed)
    errors.extend(err_unexpected(f"{prefix}{key}") for key in item if key not in allowed_set)


def int_field(
    item: Mapping[str, Any],
    key: str,
    prefix: str,
    errors: list[JsonDict],
    choices: Container[int] | None = None,
    nullable: bool = False,
) -> Any:
    """The int at ``key``, None (nullable), or MISSING_VALUE when absent or invalid (error added)."""
    if key not in item:
        return MISSING_VALUE
    value = item[key]
    if value is None and nullable:
        return None
    if not is_int(value):
        errors.append(err_type(f"{prefix}{key}", "int"))
        return MISSING_VALUE
    if choices is not None and value not in choices:
        errors.append(err_choice(f"{prefix}{key}"))
        return MISSING_VALUE
    return value


def str_field(item: Mapping[str, Any], key: str, prefix: str, errors: list[JsonDict]) -> Any:
    if key not in item:
        return MISSING_VALUE
    if not isinstance(item[key], str):
        errors.append(err_type(f"{prefix}{key}", "string"))
        return MISSING_VALUE
    return item[key]


# ---------------------------------------------------------------------------------- value codec
StoredValues = list[JsonDict]
_NUMERIC = re.compile(r"^-?\d+(\.\d+)?$")
CF_ENTRY_KEYS: Final = frozenset({"field_id", "field_code", "field_name", "field_type", "values"})
TEXT_VALUE_KEYS: Final = frozenset({"value"})
ENUM_VALUE_KEYS: Final = frozenset({"value", "enum_id", "enum_code"})
# real amoCRM refuses enum_code on a select (single) field, even beside enum_id: FieldNotExpected
SELECT_VALUE_KEYS: Final = frozenset({"value", "enum_id"})


def parse_timestamp(value: Any) -> int | None:
    """Unix seconds from an int or an ISO 8601 / ``YYYY-MM-DD[ HH:MM:SS]`` string (naive = Moscow)."""
    if is_int(value):
        return int(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=MOSCOW)
    return int(parsed.timestamp())


def _numeric_string(value: Any) -> str | None:
    if is_int(value):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str) and _NUMERIC.match(value.strip()):
        return value.strip()
    return None


def _enum_value(field: FieldDef, item: Mapping[str, Any], path: str, errors: list[JsonDict]) -> JsonDict | None:
    enum: EnumItem | None = None
    if item.get("enum_id") is not None:
        enum = field.enum_by_id(item["enum_id"]) if is_int(item["enum_id"]) else None
        if enum is None:
            errors.append(err_choice(f"{path}.enum_id"))
            return None
    elif item.get("enum_code") is not None:
        enum = field.enum_by_code(item["enum_code"])
        if enum is None:
            errors.append(err_choice(f"{path}.enum_code"))
            return None
    if field.type == "multitext":
        raw = item.get("value")
        if raw is None or raw == "":
            return None  # a multitext entry without a value stores nothing
        if not isinstance(raw, str):
            errors.append(err_type(f"{path}.value", "string"))
            return None
        enum = enum or field.enums[0]
        return {"value": raw, "enum_id": enum.id, "enum_code": enum.code}
    if enum is None:
        enum = field.enum_by_value(item.get("value"))
        if enum is None:
            errors.append(err_choice(f"{path}.value"))
            return None
    out: JsonDict = {"value": enum.value, "enum_id": enum.id}
    if enum.code is not None:
        out["enum_code"] = enum.code
    return out


def _scalar_value(field: FieldDef, raw: Any, path: str, errors: list[JsonDict]) -> JsonDict | None:
    if raw is None or raw == "":
        return None
    if field.type in NUMERIC_TYPES:
        number = _numeric_string(raw)
        if number is None:
            errors.append(err_type(f"{path}.value", "numeric"))
            return None
        return {"value": number}
    if field.type in DATE_TYPES:
        ts = parse_timestamp(raw)
        if ts is None:
            errors.append(err_type(f"{path}.value", "date"))
            return None
        return {"value": ts}
    if field.type == "checkbox":
        if not isinstance(raw, bool):
            errors.append(err_type(f"{path}.value", "bool"))
            return None
        return {"value": raw}
    if not isinstance(raw, str):
        errors.append(err_type(f"{path}.value", "string"))
        return None
    return {"value": raw}


def decode_custom_fields(fieldset: FieldSet, raw: Any, path: str, errors: list[JsonDict]) -> dict[int, StoredValues]:
    """Validate a write-form ``custom_fields_values`` and return field_id -> stored values.

    An empty list means "clear the field" (``values: null`` / ``[]``). Errors are appended with
    paths like ``custom_fields_values.0.values.1.enum``; the caller refuses the whole request.
    """
    out: dict[int, StoredValues] = {}
    if raw is None:
        return out
    if not isinstance(raw, list):
        errors.append(err_type(path, "array"))
        return out
    for i, entry in enumerate(raw):
        epath = f"{path}.{i}"
        if not isinstance(entry, dict):
            errors.append(err_type(epath, "array"))
            continue
        for key in entry:
            if key not in CF_ENTRY_KEYS:
                errors.append(err_unexpected(f"{epath}.{key}"))
        field: FieldDef | None = None
        if entry.get("field_id") is not None:
            field = fieldset.by_id.get(entry["field_id"]) if is_int(entry["field_id"]) else None
            if field is None:
                errors.append(err_choice(f"{epath}.field_id"))
                continue
        elif entry.get("field_code") is not None:
            field = fieldset.by_code.get(entry["field_code"]) if isinstance(entry["field_code"], str) else None
            if field is None:
                errors.append(err_choice(f"{epath}.field_code"))
                continue
        else:
            errors.append(err_missing(f"{epath}.field_id"))
            continue
        values = entry.get("values", ...)
        if values is ...:
            errors.append(err_missing(f"{epath}.values"))
            continue
        if values is None:
            out[field.id] = []
            continue
        if not isinstance(values, list):
            errors.append(err_type(f"{epath}.values", "array"))
            continue
        if len(values) > 1 and field.type not in MULTI_VALUE_TYPES:
            errors.append({"code": "TooManyValues", "path": f"{epath}.values", "detail": "This field takes one value."})
            continue
        stored: StoredValues = []
        if field.type == "select":
            allowed = SELECT_VALUE_KEYS
        else:
            allowed = ENUM_VALUE_KEYS if field.type in ENUM_TYPES else TEXT_VALUE_KEYS
        for j, item in enumerate(values):
            vpath = f"{epath}.values.{j}"
            if not isinstance(item, dict):
                errors.append(err_type(vpath, "array"))
                continue
            bad = [k for k in item if k not in allowed]
            if bad:
                errors.extend(err_unexpected(f"{vpath}.{k}") for k in bad)
                continue
            value = (
                _enum_value(field, item, vpath, errors)
                if field.type in ENUM_TYPES
                else _scalar_value(field, item.get("value"), vpath, errors)
            )
            if value is not None and value not in stored:
                stored.append(value)
        out[field.id] = stored
    return out


def apply_custom_fields(current: dict[int, StoredValues], changes: Mapping[int, StoredValues]) -> None:
    """Merge decoded changes: each named field's whole value set is replaced; [] clears it."""
    for field_id, values in changes.items():
        if values:
            current[field_id] = [dict(v) for v in values]
        else:
            current.pop(field_id, None)


def render_custom_fields(
    fieldset: FieldSet, stored: Mapping[int, StoredValues], enum_key: str
) -> list[JsonDict] | None:
    """The read form: ``null`` when nothing is filled, else fields in account order."""
    if not stored:
        return None
    out: list[JsonDict] = []
    for field_id in sorted(stored, key=lambda fid: fieldset.order.get(fid, 1 << 30)):
        field = fieldset.by_id[field_id]
        values = []
        for value in stored[field_id]:
            item = dict(value)
            if "enum_code" in item and enum_key != "enum_code":
                item[enum_key] = item.pop("enum_code")
            values.append(item)
        out.append(
            {
                "field_id": field.id,
                "field_name": field.name,
                "field_code": field.code,
                "field_type": field.type,
                "values": values,
            }
        )
    return out


def search_strings(stored: Mapping[int, StoredValues]) -> list[str]:
    """Raw values a ``query`` can hit (no normalization: ``+7999`` and ``8999`` stay different)."""
    return [str(v["value"]) for values in stored.values() for v in values if v.get("value") is not None]
