"""Bitrix24 REST emulator (cloud portal, inbound webhook): CRM contacts and deals, duplicate search,
pipelines, user fields and ``batch``, with the portal's limits.

Behaviour taken from the vendor's docs, samples (/work/shared/api-samples/bitrix24) and the
public source of the ``rest`` and ``crm`` modules:

- auth by ``/rest/{user_id}/{code}/``: wrong pair -> 401 INVALID_CREDENTIALS; unknown method ->
  404 ERROR_METHOD_NOT_FOUND "Method not found!"; method errors -> 400 ``{"error": "",
  "error_description": ...}``;
- leaky bucket per portal (503 QUERY_LIMIT_EXCEEDED, nothing executed) and per-method operating
  time over a 10-minute window (429 OPERATION_TIME_LIMIT);
- top-level parameters resolved like ``CCrmRestHelper`` (``fields``, ``FIELDS``, ``Fields``);
  unknown and read-only fields are dropped silently; deal UF fields must exist on the portal;
- lists: 50 rows a page, ``start`` floored to a page and clamped to the last page (CDBResult
  navigation), ``next`` only while more pages exist, ``start=-1`` -> no ``total``/``next``;
- ``crm.deal.add``: an unknown CATEGORY_ID silently becomes 0 and a STAGE_ID outside the
  category silently becomes the category's first stage (``CCrmDeal::Add``); ``crm.deal.update``
  ignores CATEGORY_ID;
- ``crm.duplicate.findbycomm``: non-string/empty values are skipped and only the first 20
  distinct values are searched (no error past 20), phones compared after ``NormalizePhone``
  (digits; a leading 8 of a >= 10-digit number becomes 7), emails case-insensitively;
- ``batch``: commands beyond the 50th each fail with ERROR_BATCH_LENGTH_EXCEEDED, ``$result[key]
  [FIELD]...`` is substituted like ``CRestUtil::processBatchElement`` (a whole-value reference to
  a missing key yields the nearest resolved ancestor; an embedded one is left as literal text).

Unconfirmed (marked where used): the nested-batch error code, ``crm.deal.update`` with a foreign
STAGE_ID (ignored here), a deal CONTACT_ID that is not an existing contact (dropped here), phone
numbers without a country code (not matched to +7 numbers here), email format validation (none).
"""

from __future__ import annotations

import bisect
import copy
import json
import math
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from integration_sync.sandbox.core import (
    MOSCOW,
    Clock,
    DroppedResponse,
    JsonDict,
    JsonResponse,
    LeakyBucket,
    Service,
    iso_moscow,
    json_dumps,
    parse_php_query,
    php_intval,
    php_json_map,
    php_str,
    php_truthy,
)
from integration_sync.sandbox.fakedata import RuFaker

B24_USER_ID: Final = "1"
B24_WEBHOOK_CODE: Final = "sandboxb24webhookcode"
USERS_CATEGORY_ID: Final = 5
USERS_STAGE_NEW: Final = "C5:NEW"
UF_ABCP_USER_ID: Final = "UF_CRM_ABCP_USER_ID"
UF_ABCP_INN: Final = "UF_CRM_ABCP_INN"
UF_ABCP_SALDO: Final = "UF_CRM_ABCP_SALDO"

PAGE_SIZE: Final = 50
BATCH_MAX: Final = 50
FINDBYCOMM_MAX: Final = 20
OPERATING_WINDOW_S: Final = 600.0

ERR_QUERY_LIMIT: Final = {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
ERR_OPERATION_TIME: Final = {
    "error": "OPERATION_TIME_LIMIT",
    "error_description": "Method is blocked due to operation time limit.",
}
ERR_INVALID_CREDENTIALS: Final = {"error": "INVALID_CREDENTIALS", "error_description": "Invalid request credentials"}
ERR_METHOD_NOT_FOUND: Final = {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
ERR_BATCH_LENGTH: Final = {"error": "ERROR_BATCH_LENGTH_EXCEEDED", "error_description": "Max batch length exceeded"}
ERR_BATCH_NESTED: Final = {  # unconfirmed code for a batch inside a batch (forbidden since rest 24.0.0)
    "error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
    "error_description": "Method is not allowed for batch usage",
}
HTML_500: Final = (
    b"<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head><body>"
    b"<h1>Internal Server Error</h1></body></html>"
)


class B24Error(Exception):
    """A method failure answered as ``{"error", "error_description"}`` with an HTTP status."""

    def __init__(self, description: str, error: str = "", status: int = 400) -> None:
        super().__init__(description)
        self.description = description
        self.error = error
        self.status = status

    def body(self) -> JsonDict:
        return {"error": self.error, "error_description": self.description}


@dataclass
class MethodResult:
    result: Any
    total: int | None = None
    next: int | None = None


# ------------------------------------------------------------------------------------------ schema
@dataclass(frozen=True)
class FieldInfo:
    type: str = "str"  # str | int | id | char | money | date | datetime
    read_only: bool = False
    immutable: bool = False


@dataclass(frozen=True)
class UserField:
    id: int
    name: str
    label: str
    type: str = "string"
    sort: int = 100


_RO = FieldInfo("str", read_only=True)
_UTM = {f"UTM_{p}": FieldInfo() for p in ("SOURCE", "MEDIUM", "CAMPAIGN", "CONTENT", "TERM")}
CONTACT_FIELDS: Final[dict[str, FieldInfo]] = {
    "ID": FieldInfo("int", read_only=True),
    "HONORIFIC": FieldInfo(),
    "NAME": FieldInfo(),
    "SECOND_NAME": FieldInfo(),
    "LAST_NAME": FieldInfo(),
    "PHOTO": _RO,
    "BIRTHDATE": FieldInfo("date"),
    "TYPE_ID": FieldInfo(),
    "SOURCE_ID": FieldInfo(),
    "SOURCE_DESCRIPTION": FieldInfo(),
    "POST": FieldInfo(),
    "COMMENTS": FieldInfo(),
    "OPENED": FieldInfo("char"),
    "EXPORT": FieldInfo("char"),
    "HAS_PHONE": FieldInfo("char", read_only=True),
    "HAS_EMAIL": FieldInfo("char", read_only=True),
    "HAS_IMOL": FieldInfo("char", read_only=True),
    "ASSIGNED_BY_ID": FieldInfo("id"),
    "CREATED_BY_ID": FieldInfo("id", read_only=True),
    "MODIFY_BY_ID": FieldInfo("id", read_only=True),
    "DATE_CREATE": FieldInfo("datetime", read_only=True),
    "DATE_MODIFY": FieldInfo("datetime", read_only=True),
    "COMPANY_ID": FieldInfo("id"),
    "LEAD_ID": FieldInfo("id"),
    "ORIGINATOR_ID": FieldInfo(),
    "ORIGIN_ID": FieldInfo(),
    "ORIGIN_VERSION": FieldInfo(),
    **_UTM,
    "LAST_ACTIVITY_TIME": FieldInfo("datetime", read_only=True),
}
DEAL_FIELDS: Final[dict[str, FieldInfo]] = {
    "ID": FieldInfo("int", read_only=True),
    "TITLE": FieldInfo(),
    "TYPE_ID": FieldInfo(),
    "CATEGORY_ID": FieldInfo("int", immutable=True),
    "STAGE_ID": FieldInfo(),
    "STAGE_SEMANTIC_ID": _RO,
    "IS_NEW": FieldInfo("char", read_only=True),
    "IS_RECURRING": FieldInfo("char"),
    "IS_RETURN_CUSTOMER": FieldInfo("char"),
    "IS_REPEATED_APPROACH": FieldInfo("char"),
    "PROBABILITY": FieldInfo("int"),
    "CURRENCY_ID": FieldInfo(),
    "OPPORTUNITY": FieldInfo("money"),
    "IS_MANUAL_OPPORTUNITY": FieldInfo("char"),
    "TAX_VALUE": FieldInfo("money"),
    "COMPANY_ID": FieldInfo("id"),
    "CONTACT_ID": FieldInfo("id"),
    "QUOTE_ID": FieldInfo("id"),
    "BEGINDATE": FieldInfo("date"),
    "CLOSEDATE": FieldInfo("date"),
    "OPENED": FieldInfo("char"),
    "CLOSED": FieldInfo("char"),
    "COMMENTS": FieldInfo(),
    "ASSIGNED_BY_ID": FieldInfo("id"),
    "CREATED_BY_ID": FieldInfo("id", read_only=True),
    "MODIFY_BY_ID": FieldInfo("id", read_only=True),
    "MOVED_BY_ID": FieldInfo("id", read_only=True),
    "DATE_CREATE": FieldInfo("datetime", read_only=True),
    "DATE_MODIFY": FieldInfo("datetime", read_only=True),
    "MOVED_TIME": FieldInfo("datetime", read_only=True),
    "SOURCE_ID": FieldInfo(),
    "SOURCE_DESCRIPTION": FieldInfo(),
    "LEAD_ID": FieldInfo("id"),
    "ADDITIONAL_INFO": FieldInfo(),
    "LOCATION_ID": FieldInfo(),
    "ORIGINATOR_ID": FieldInfo(),
    "ORIGIN_ID": FieldInfo(),
    **_UTM,
    "LAST_ACTIVITY_TIME": FieldInfo("datetime", read_only=True),
}
MULTI_FIELDS: Final = ("PHONE", "EMAIL", "WEB", "IM")
DEAL_USERFIELDS: Final = (
    UserField(7001, UF_ABCP_USER_ID, "ID клиента ABCP", sort=100),
    UserField(7003, UF_ABCP_INN, "ИНН", sort=110),
    UserField(7005, UF_ABCP_SALDO, "Баланс ABCP", sort=120),
)
CATEGORIES: Final = {0: "Общая", USERS_CATEGORY_ID: "Пользователи"}
# (STATUS_ID, NAME, SORT, semantics P/S/F, colour)
STAGES: Final[dict[int, tuple[tuple[str, str, int, str, str], ...]]] = {
    0: (
        ("NEW", "Новая", 10, "P", "#39A8EF"),
        ("PREPARATION", "Подготовка документов", 20, "P", "#2FC6F6"),
        ("PREPAYMENT_INVOICE", "Счёт на предоплату", 30, "P", "#55D0E0"),
        ("EXECUTING", "В работе", 40, "P", "#47E4C2"),
        ("FINAL_INVOICE", "Финальный счёт", 50, "P", "#FFA900"),
        ("WON", "Сделка успешна", 60, "S", "#7BD500"),
        ("LOSE", "Сделка провалена", 70, "F", "#FF5752"),
        ("APOLOGY", "Анализ причины провала", 80, "F", "#FF5752"),
    ),
    USERS_CATEGORY_ID: (
        ("C5:NEW", "Новый пользователь", 10, "P", "#39A8EF"),
        ("C5:PREPARATION", "В работе", 20, "P", "#2FC6F6"),
        ("C5:WON", "Активен", 30, "S", "#7BD500"),
        ("C5:LOSE", "Отказ", 40, "F", "#FF5752"),
    ),
}
OTHER_STATUSES: Final = {
    "SOURCE": (("CALL", "Звонок"), ("EMAIL", "Электронная почта"), ("WEB", "Веб-сайт"), ("OTHER", "Другое")),
    "CONTACT_TYPE": (("CLIENT", "Клиенты"), ("SUPPLIER", "Поставщики"), ("PARTNER", "Партнёры")),
    "DEAL_TYPE": (("SALE", "Продажа"), ("COMPLEX", "Комплексная продажа"), ("GOODS", "Продажа товара")),
}
SEMANTICS: Final = {"P": "process", "S": "success", "F": "failure"}


# ------------------------------------------------------------------------------------------ values
def normalize_phone(value: str) -> str:
    """Digits of a phone as Bitrix's NormalizePhone leaves them (extension dropped)."""
    text = value.strip()
    text = re.split(r"[#,;]|доб|ext", text, maxsplit=1, flags=re.IGNORECASE)[0]
    if len(text) >= 10 and text.startswith("+8"):
        text = "00" + text[1:]
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) >= 10:
        if digits[:2] in ("80", "81", "82"):
            pass
        elif digits.startswith("00"):
            digits = digits[2:]
        elif digits.startswith("011"):
            digits = digits[3:]
        elif digits.startswith("8"):
            digits = "7" + digits[1:]
        elif digits.startswith("0"):
            digits = digits[1:]
    return digits


def normalize_email(value: str) -> str:
    return value.strip().lower()


def parse_datetime(value: Any) -> float | None:
    """ISO 8601, ``YYYY-MM-DD[ HH:MM:SS]`` or ``DD.MM.YYYY[ HH:MM:SS]``; naive means Moscow."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    text = php_str(value).strip()
    if not text:
        return None
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        for fmt in ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y"):
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=MOSCOW)
    return parsed.timestamp()


class _Skip:
    pass


SKIP: Final = _Skip()


def coerce(info: FieldInfo, value: Any) -> str | _Skip | None:
    """Incoming value -> stored string (Bitrix answers every scalar as a string)."""
    if isinstance(value, dict | list):
        return SKIP
    if value is None:
        return None
    kind = info.type
    if kind == "id":
        number = php_intval(value)
        return str(number) if number > 0 else None
    if kind == "int":
        return str(php_intval(value))
    if kind == "money":
        try:
            return f"{float(php_str(value).replace(' ', '').replace(',', '.')):.2f}"
        except ValueError:
            return "0.00"
    if kind == "char":
        return "Y" if php_str(value).strip().upper() in ("Y", "1", "TRUE") else "N"
    if kind in ("date", "datetime"):
        ts = parse_datetime(value)
        return iso_moscow(ts) if ts is not None else None
    return php_str(value)


# ---------------------------------------------------------------------------------------- parameters
def resolve_param(params: Mapping[str, Any], name: str) -> Any:
    """CCrmRestHelper::resolveParam: lower, UPPER, Capitalized (null counts as unset)."""
    for key in (name.lower(), name.upper(), name.lower().capitalize()):
        if params.get(key) is not None:
            return params[key]
    return None


def resolve_array_param(params: Mapping[str, Any], name: str) -> Any:
    """CCrmRestHelper::resolveArrayParam: UPPER, lower, Capitalized, arCapitalized."""
    cap = name.lower().capitalize()
    for key in (name.upper(), name.lower(), cap, f"ar{cap}"):
        if params.get(key) is not None:
            return params[key]
    return None


def entity_id(params: Mapping[str, Any]) -> int:
    value = params.get("ID") if params.get("ID") is not None else params.get("id")
    return php_intval(value) if not isinstance(value, dict | list) else 0


def as_php_array(value: Any) -> dict[str, Any] | None:
    """A PHP array as a dict with string keys, or None when the value is not an array."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return None


# ---------------------------------------------------------------------------------------- batch refs
_REF_SEGMENT = re.compile(r"\[([^\]]+)\]")


def _php_isset(node: Any, key: str) -> tuple[bool, Any]:
    if isinstance(node, dict):
        value = node.get(key)
        return value is not None, value
    if isinstance(node, list) and key.isdigit() and int(key) < len(node):
        value = node[int(key)]
        return value is not None, value
    if isinstance(node, str) and key.isdigit() and int(key) < len(node):
        return True, node[int(key)]
    return False, None


def substitute_refs(value: Any, results: Mapping[str, Any]) -> Any:
    """Replace ``$result[key][FIELD]`` (and $next/$total/$time/$error) like CRestUtil does."""
    if isinstance(value, dict):
        return {k: substitute_refs(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_refs(v, results) for v in value]
    if not isinstance(value, str) or "$" not in value:
        return value
    names = "|".join(re.escape(k) for k in results)
    query: Any = value
    for match in re.finditer(rf"\$({names})([^\s]*)", value, flags=re.IGNORECASE):
        segments = _REF_SEGMENT.findall(match.group(2))
        if not segments:
            continue
        node: Any = results[match.group(1).lower()]
        for seg in segments:
            found, child = _php_isset(node, seg)
            if not found:
                break
            node = child
        if match.group(0) == value:
            query = copy.deepcopy(node)
        else:
            if isinstance(node, int | float) and not isinstance(node, bool):
                node = php_str(node)  # is_numeric -> (string) cast
            if not isinstance(node, str) or not isinstance(query, str):
                continue
            query = query.replace(match.group(0), node)
    return query


# -------------------------------------------------------------------------------------- operating time
class OperatingMeter:
    """Server time used per method over a sliding 10-minute window (running totals, O(1) reads)."""

    def __init__(self, clock: Clock, budget_s: float) -> None:
        self.clock = clock
        self.budget_s = budget_s
        self._spent: dict[str, deque[tuple[float, float]]] = {}
        self._totals: dict[str, float] = {}

    def _window(self, method: str) -> deque[tuple[float, float]]:
        entries = self._spent.setdefault(method, deque())
        horizon = self.clock.now() - OPERATING_WINDOW_S
        while entries and entries[0][0] <= horizon:
            self._totals[method] -= entries.popleft()[1]
        if not entries:
            self._totals[method] = 0.0  # drop accumulated float error
        return entries

    def used(self, method: str) -> float:
        self._window(method)
        return max(self._totals.get(method, 0.0), 0.0)

    def blocked(self, method: str) -> bool:
        return self.used(method) > self.budget_s

    def charge(self, method: str, cost: float) -> None:
        self._window(method).append((self.clock.now(), cost))
        self._totals[method] = self._totals.get(method, 0.0) + cost

    def reset_at(self, method: str) -> float:
        entries = self._window(method)
        return (entries[0][0] if entries else self.clock.now()) + OPERATING_WINDOW_S


# ------------------------------------------------------------------------------------------ entities
def _index_key(info: FieldInfo | None, value: Any) -> str | None:
    if value is None or isinstance(value, dict | list) or php_str(value).strip() == "":
        return None
    if info is not None and info.type in ("int", "id"):
        return str(php_intval(value))
    text = php_str(value).strip().lower()
    return text if text else None


class EntityTable:
    """Rows of one CRM entity with equality indexes on the fields lookups use."""

    def __init__(
        self,
        fields: Mapping[str, FieldInfo],
        userfields: Iterable[str],
        indexed: Iterable[str],
        multifields: bool = False,
    ) -> None:
        self.fields = dict(fields)
        self.multifields = multifields
        self.userfields = list(userfields)
        self.rows: dict[int, JsonDict] = {}
        self.order: list[int] = []  # ids ascending (ids only grow, rows are never deleted)
        self.fm: dict[int, dict[str, list[JsonDict]]] = {}
        self.next_id = 1
        self.index: dict[str, dict[str, set[int]]] = {name: {} for name in indexed}
        self.fm_index: dict[str, dict[str, set[int]]] = {"PHONE": {}, "EMAIL": {}} if multifields else {}

    def info(self, name: str) -> FieldInfo | None:
        if name in self.fields:
            return self.fields[name]
        if name in self.userfields:
            return FieldInfo()
        return None

    def _index_row(self, rid: int, add: bool) -> None:
        row = self.rows[rid]
        for name, idx in self.index.items():
            key = _index_key(self.info(name), row.get(name))
            if key is None:
                continue
            if add:
                idx.setdefault(key, set()).add(rid)
            else:
                bucket = idx.get(key)
                if bucket:
                    bucket.discard(rid)
        for ftype, idx in self.fm_index.items():
            for item in self.fm.get(rid, {}).get(ftype, []):
                key = fm_key(ftype, item["VALUE"])
                if not key:
                    continue
                if add:
                    idx.setdefault(key, set()).add(rid)
                elif key in idx:
                    idx[key].discard(rid)

    def put(self, rid: int, row: JsonDict, fm: dict[str, list[JsonDict]] | None = None) -> None:
        if rid in self.rows:
            self._index_row(rid, add=False)
        else:
            self.order.append(rid)
        self.rows[rid] = row
        if fm is not None:
            self.fm[rid] = fm
        self._index_row(rid, add=True)

    def lookup(self, name: str, value: Any) -> set[int] | None:
        """Ids whose ``name`` equals ``value`` when the field is indexed, else None."""
        if name == "ID":
            rid = php_intval(value)
            return {rid} if rid in self.rows else set()
        if name in self.fm_index:
            return set(self.fm_index[name].get(fm_key(name, php_str(value)), set()))
        if name in MULTI_FIELDS:
            return None
        if name not in self.index:
            return None
        key = _index_key(self.info(name), value)
        return set(self.index[name].get(key, set())) if key is not None else None


def fm_key(ftype: str, value: str) -> str:
    return normalize_phone(value) if ftype == "PHONE" else normalize_email(value)


# --------------------------------------------------------------------------------------- list queries
FILTER_PREFIXES: Final = (
    ("=%", "like"),
    ("%=", "like"),
    ("!%", "not_contains"),
    ("!@", "not_in"),
    ("!=", "ne"),
    (">=", "ge"),
    ("<=", "le"),
    (">", "gt"),
    ("<", "lt"),
    ("=", "eq"),
    ("!", "ne"),
    ("@", "in"),
    ("%", "contains"),
)


@dataclass
class Condition:
    field: str
    op: str
    value: Any
    kind: str = "str"


def parse_filter(table: EntityTable, raw: Mapping[str, Any]) -> list[Condition]:
    conditions = []
    for key, value in raw.items():
        op, name = "eq", key
        for prefix, prefix_op in FILTER_PREFIXES:
            if key.startswith(prefix):
                op, name = prefix_op, key[len(prefix) :]
                break
        if name in MULTI_FIELDS and table.multifields:
            kind = f"fm:{name}"
        else:
            info = table.info(name)
            if info is None:
                continue  # unknown filter fields are ignored, as CCrm*::GetListEx does
            kind = info.type
        if isinstance(value, dict):
            value = list(value.values())
        if op == "eq" and isinstance(value, list):
            op = "in"
        elif op == "ne" and isinstance(value, list):
            op = "not_in"
        conditions.append(Condition(name, op, value, kind))
    return conditions


def _cmp_value(kind: str, value: Any) -> Any:
    if value is None or (isinstance(value, str) and value == ""):
        return None
    if kind in ("int", "id"):
        return php_intval(value)
    if kind == "money":
        try:
            return float(php_str(value).replace(",", "."))
        except ValueError:
            return None
    if kind in ("date", "datetime"):
        return parse_datetime(value)
    return php_str(value).lower()


def _like(pattern: str, text: str) -> bool:
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern.lower())
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


def condition_matches(table: EntityTable, rid: int, cond: Condition) -> bool:
    if cond.kind.startswith("fm:"):
        ftype = cond.field
        values = [fm_key(ftype, item["VALUE"]) for item in table.fm.get(rid, {}).get(ftype, [])]
        wanted = cond.value if isinstance(cond.value, list) else [cond.value]
        keys = {fm_key(ftype, php_str(v)) for v in wanted}
        if cond.op in ("eq", "in"):
            return any(v in keys for v in values)
        if cond.op in ("ne", "not_in"):
            return not any(v in keys for v in values)
        if cond.op == "contains":
            return any(
                php_str(cond.value).lower() in item["VALUE"].lower() for item in table.fm.get(rid, {}).get(ftype, [])
            )
        return False
    actual = _cmp_value(cond.kind, table.rows[rid].get(cond.field))
    if cond.op in ("in", "not_in"):
        options = cond.value if isinstance(cond.value, list) else [cond.value]
        hit = bool(actual in {_cmp_value(cond.kind, v) for v in options})
        return hit if cond.op == "in" else not hit
    wanted = _cmp_value(cond.kind, cond.value)
    if cond.op == "eq":
        return bool(actual == wanted)
    if cond.op == "ne":
        return bool(actual != wanted)
    if cond.op in ("contains", "not_contains", "like"):
        text = actual if isinstance(actual, str) else php_str(actual) if actual is not None else ""
        needle = php_str(cond.value).lower()
        if cond.op == "like":
            return _like(needle, text)
        return bool(needle in text) == (cond.op == "contains")
    if actual is None or wanted is None:
        return False
    try:
        if cond.op == "gt":
            return bool(actual > wanted)
        if cond.op == "ge":
            return bool(actual >= wanted)
        if cond.op == "lt":
            return bool(actual < wanted)
        if cond.op == "le":
            return bool(actual <= wanted)
    except TypeError:
        return False
    return False


def _id_bounds(conditions: list[Condition]) -> tuple[float, float]:
    low, high = -math.inf, math.inf
    for cond in conditions:
        if cond.field != "ID" or isinstance(cond.value, list | dict):
            continue
        value = php_intval(cond.value)
        if cond.op == "gt":
            low = max(low, value + 1)
        elif cond.op == "ge":
            low = max(low, value)
        elif cond.op == "lt":
            high = min(high, value - 1)
        elif cond.op == "le":
            high = min(high, value)
    return low, high


def select_ids(table: EntityTable, conditions: list[Condition], limit: int | None = None) -> list[int]:
    """Ids matching every condition, ascending; stops after ``limit`` matches when given."""
    candidates: set[int] | None = None
    for cond in conditions:
        if cond.op not in ("eq", "in"):
            continue
        options = cond.value if isinstance(cond.value, list) else [cond.value]
        found: set[int] = set()
        usable = True
        for option in options:
            ids = table.lookup(cond.field, option)
            if ids is None:
                usable = False
                break
            found |= ids
        if usable and (candidates is None or len(found) < len(candidates)):
            candidates = found
    if candidates is not None:
        pool: Iterable[int] = sorted(candidates)
    else:
        low, high = _id_bounds(conditions)
        first = bisect.bisect_left(table.order, low) if low > -math.inf else 0
        last = bisect.bisect_right(table.order, high) if high < math.inf else len(table.order)
        pool = table.order[first:last]
    matched: list[int] = []
    for rid in pool:
        if all(condition_matches(table, rid, c) for c in conditions):
            matched.append(rid)
            if limit is not None and len(matched) >= limit:
                break
    return matched


def is_id_ascending(order: Mapping[str, Any]) -> bool:
    """True when ``order`` sorts like the ascending ids ``select_ids`` already returns."""
    items = list(order.items())
    return not items or (len(items) == 1 and items[0][0] == "ID" and php_str(items[0][1]).strip().upper() != "DESC")


def order_ids(table: EntityTable, ids: list[int], order: Mapping[str, Any]) -> list[int]:
    if is_id_ascending(order):
        return ids
    result = sorted(ids)
    for name, direction in reversed(list(order.items())):
        info = table.info(name)
        if info is None:
            continue
        desc = php_str(direction).strip().upper() == "DESC"

        def key(rid: int, name: str = name, kind: str = info.type) -> tuple[int, Any]:
            value = _cmp_value(kind, table.rows[rid].get(name))
            return (0, 0) if value is None else (1, value)

        result.sort(key=key, reverse=desc)
    return result


# ------------------------------------------------------------------------------------------- service
MethodHandler = Callable[[Mapping[str, Any]], MethodResult]


@dataclass
class PortalConfig:
    rate: float = 2.0
    burst: int = 50
    operating_budget_s: float = 480.0
    operating_cost_s: float = 0.0
    contact_userfields: tuple[str, ...] = ()
    seed_contacts: int = 3
    seed_people: list[JsonDict] = field(default_factory=list)


class Bitrix24Service(Service):
    """One Bitrix24 portal reached through its inbound webhook."""

    name = "bitrix24"

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.config = PortalConfig()
        self.commands: Counter[str] = Counter()
        self.bucket = LeakyBucket(self.config.rate, self.config.burst, clock)
        self.meter = OperatingMeter(clock, self.config.operating_budget_s)
        self.contacts = self._new_contacts()
        self.deals = self._new_deals()
        self.next_fm_id = 1
        self.methods: dict[str, MethodHandler] = {
            "crm.contact.add": self.contact_add,
            "crm.contact.update": self.contact_update,
            "crm.contact.get": self.contact_get,
            "crm.contact.list": self.contact_list,
            "crm.deal.add": self.deal_add,
            "crm.deal.update": self.deal_update,
            "crm.deal.get": self.deal_get,
            "crm.deal.list": self.deal_list,
            "crm.duplicate.findbycomm": self.duplicate_findbycomm,
            "crm.deal.userfield.list": self.deal_userfield_list,
            "crm.dealcategory.list": self.dealcategory_list,
            "crm.dealcategory.stage.list": self.dealcategory_stage_list,
            "crm.status.list": self.status_list,
        }

    def _new_contacts(self) -> EntityTable:
        return EntityTable(
            CONTACT_FIELDS,
            self.config.contact_userfields,
            ("ORIGIN_ID", "ORIGINATOR_ID", *self.config.contact_userfields),
            multifields=True,
        )

    def _new_deals(self) -> EntityTable:
        ufs = [uf.name for uf in DEAL_USERFIELDS]
        return EntityTable(
            DEAL_FIELDS, ufs, ("CONTACT_ID", "CATEGORY_ID", "STAGE_ID", "ORIGIN_ID", "ORIGINATOR_ID", *ufs)
        )

    # ------------------------------------------------------------------ lifecycle
    def reset(self, seed: int, volumes: Mapping[str, Any]) -> None:
        rate = float(volumes.get("bitrix24_rate", 2.0)) * float(volumes.get("bitrix24_rate_multiplier", 1.0))
        config = PortalConfig(
            rate=rate,
            burst=int(volumes.get("bitrix24_burst", 50)),
            operating_budget_s=float(volumes.get("bitrix24_operating_budget_s", 480.0)),
            operating_cost_s=float(volumes.get("bitrix24_operating_cost_s", 0.0)),
            contact_userfields=tuple(volumes.get("bitrix24_contact_userfields", ())),
            seed_contacts=int(volumes.get("bitrix24_contacts", 3)),
            seed_people=list(volumes.get("bitrix24_seed_people", [])),
        )
        with self.lock:
            self.config = config
            self.bucket = LeakyBucket(config.rate, config.burst, self.clock)
            self.meter = OperatingMeter(self.clock, config.operating_budget_s)
            self.contacts = self._new_contacts()
            self.deals = self._new_deals()
            self.next_fm_id = 1
            self.reset_counters()
            self.commands = Counter()
            self._seed_contacts(seed)
        self.configure_faults(None)

    def _seed_contacts(self, seed: int) -> None:
        fake = RuFaker(seed * 7919 + 17)
        created = self.clock.now() - 86400 * 90
        people = list(self.config.seed_people)[: self.config.seed_contacts]
        while len(people) < self.config.seed_contacts:
            someone = fake.person()
            people.append(
                {
                    "NAME": someone.first,
                    "SECOND_NAME": someone.middle,
                    "LAST_NAME": someone.last,
                    "PHONE": fake.phone(),
                    "EMAIL": fake.email(someone),
                }
            )
        for i, person in enumerate(people):
            fields: JsonDict = {k: person.get(k) for k in ("NAME", "SECOND_NAME", "LAST_NAME")}
            fields["TYPE_ID"] = "CLIENT"
            fields["SOURCE_ID"] = "CALL"
            if person.get("PHONE"):
                fields["PHONE"] = [{"VALUE": person["PHONE"], "VALUE_TYPE": "MOBILE"}]
            if person.get("EMAIL"):
                fields["EMAIL"] = [{"VALUE": person["EMAIL"], "VALUE_TYPE": "WORK"}]
            self._contact_insert(fields, created + i * 3600)

    def entities(self) -> dict[str, int]:
        return {"contacts": len(self.contacts.rows), "deals": len(self.deals.rows)}

    def stats(self) -> JsonDict:
        out = super().stats()
        with self.lock:
            out["commands"] = dict(self.commands)
        return out

    def fault_response(self, status: int, body: Any, method: str) -> Response:
        if body is not None:
            return super().fault_response(status, body, method)
        if status == 503:
            return JsonResponse(ERR_QUERY_LIMIT, status_code=503)
        if status == 429:
            return JsonResponse(ERR_OPERATION_TIME, status_code=429)
        if status >= 500:
            return Response(HTML_500, status_code=status, media_type="text/html")
        return JsonResponse({"error": "", "error_description": "Injected error"}, status_code=status)

    # ------------------------------------------------------------------ HTTP
    def routes(self) -> list[BaseRoute]:
        return [Route("/rest/{user_id}/{code}/{method:path}", self.handle, methods=["GET", "POST"])]

    def control_routes(self) -> list[BaseRoute]:
        return [
            Route("/contacts", self.control_dump_contacts, methods=["GET"]),
            Route("/deals", self.control_dump_deals, methods=["GET"]),
        ]

    async def handle(self, request: Request) -> Response:
        method = str(request.path_params["method"]).strip("/").lower()
        if method.endswith(".json"):
            method = method[: -len(".json")]
        self.count_request(method)
        fault = await self.apply_faults(method)
        if fault is not None:
            return fault
        if request.path_params["user_id"] != B24_USER_ID or request.path_params["code"] != B24_WEBHOOK_CODE:
            return JsonResponse(ERR_INVALID_CREDENTIALS, status_code=401)
        if not self.bucket.try_acquire():
            self.count_throttled()
            return JsonResponse(ERR_QUERY_LIMIT, status_code=503)
        params = await self._request_params(request)
        if method != "batch" and method not in self.methods:
            return JsonResponse(ERR_METHOD_NOT_FOUND, status_code=404)
        with self.lock:
            if self.meter.blocked(method):
                self.throttled += 1
                return JsonResponse(ERR_OPERATION_TIME, status_code=429)
            start_wall, t0 = self.clock.now(), time.perf_counter()
            status = 200
            try:
                outcome = self._batch(params) if method == "batch" else self._invoke(method, params)
                body: JsonDict = {"result": outcome.result}
                if outcome.next is not None:
                    body["next"] = outcome.next
                if outcome.total is not None:
                    body["total"] = outcome.total
            except B24Error as exc:
                status, body = exc.status, exc.body()
            elapsed = time.perf_counter() - t0
            self.meter.charge(method, elapsed + self.config.operating_cost_s)
            if status == 200:
                body["time"] = self._time(start_wall, elapsed, method)
        if self.faults.take_commit_then_drop(method):
            return DroppedResponse(json_dumps(body), status_code=status)
        return JsonResponse(body, status_code=status)

    async def _request_params(self, request: Request) -> JsonDict:
        params = parse_php_query(request.url.query)
        if request.method != "POST":
            return params
        raw = await request.body()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        post: Any = {}
        if ctype == "application/json":
            try:
                post = json.loads(raw) if raw.strip() else {}
            except ValueError:
                post = {}
        elif raw.strip():
            post = parse_php_query(raw.decode("utf-8", "replace"))
        if isinstance(post, dict):
            params.update(post)
        return params

    def _time(self, start: float, elapsed: float, method: str | None) -> JsonDict:
        out: JsonDict = {
            "start": start,
            "finish": start + elapsed,
            "duration": elapsed,
            "processing": elapsed,
            "date_start": iso_moscow(start),
            "date_finish": iso_moscow(start + elapsed),
        }
        if method is not None:
            out["operating_reset_at"] = int(self.meter.reset_at(method))
            out["operating"] = self.meter.used(method)
        return out

    def _invoke(self, method: str, params: Mapping[str, Any]) -> MethodResult:
        self.commands[method] += 1
        return self.methods[method](params)

    # ------------------------------------------------------------------ batch
    def _batch(self, params: Mapping[str, Any]) -> MethodResult:
        upper = {str(k).upper(): v for k, v in params.items()}
        halt = php_truthy(upper.get("HALT"))
        commands = as_php_array(upper.get("CMD")) or {}
        maps: dict[str, JsonDict] = {"result": {}, "next": {}, "total": {}, "time": {}, "error": {}}
        for count, (key, call) in enumerate(commands.items()):
            error: JsonDict | None = None
            if count >= BATCH_MAX:
                error = dict(ERR_BATCH_LENGTH)
            elif not isinstance(call, str):
                continue
            else:
                method, _, query = call.partition("?")
                method = method.strip().lower()
                query = query.split("#", 1)[0]
                sub_params = substitute_refs(parse_php_query(query), maps)
                if method == "batch":
                    error = dict(ERR_BATCH_NESTED)
                elif method not in self.methods:
                    error = dict(ERR_METHOD_NOT_FOUND)
                elif self.meter.blocked(method):
                    error = dict(ERR_OPERATION_TIME)
                else:
                    start_wall, t0 = self.clock.now(), time.perf_counter()
                    try:
                        outcome = self._invoke(method, sub_params)
                    except B24Error as exc:
                        error = exc.body()
                    elapsed = time.perf_counter() - t0
                    self.meter.charge(method, elapsed + self.config.operating_cost_s)
                    if error is None:
                        maps["result"][key] = outcome.result
                        maps["time"][key] = self._time(start_wall, elapsed, None)
                        if outcome.total is not None:
                            maps["total"][key] = outcome.total
                        if outcome.next is not None:
                            maps["next"][key] = outcome.next
            if error is not None:
                maps["error"][key] = error
                if halt:
                    break
        return MethodResult(
            {
                "result": php_json_map(maps["result"]),
                "result_error": php_json_map(maps["error"]),
                "result_total": php_json_map(maps["total"]),
                "result_next": php_json_map(maps["next"]),
                "result_time": php_json_map(maps["time"]),
            }
        )

    # ------------------------------------------------------------------ shared helpers
    def _fields_param(self, params: Mapping[str, Any]) -> dict[str, Any]:
        fields = as_php_array(resolve_array_param(params, "fields"))
        if fields is None:
            raise B24Error("Parameter 'fields' must be array.")
        return fields

    def _apply_scalars(self, table: EntityTable, row: JsonDict, fields: Mapping[str, Any], update: bool) -> None:
        for name, value in fields.items():
            info = table.info(name)
            if info is None or info.read_only or (update and info.immutable):
                continue
            stored = coerce(info, value)
            if isinstance(stored, _Skip):
                continue
            row[name] = stored

    def _apply_multifields(self, rid: int, fields: Mapping[str, Any], update: bool) -> dict[str, list[JsonDict]]:
        current = {t: [dict(i) for i in items] for t, items in self.contacts.fm.get(rid, {}).items()}
        for ftype in MULTI_FIELDS:
            items = as_php_array(fields.get(ftype))
            if items is None:
                continue
            existing = current.setdefault(ftype, [])
            for item in items.values():
                if not isinstance(item, dict):
                    continue
                raw_value = item.get("VALUE")
                value = "" if raw_value is None or isinstance(raw_value, dict | list) else php_str(raw_value)
                item_id = item.get("ID")
                if update and item_id not in (None, ""):
                    target = next((e for e in existing if e["ID"] == str(php_intval(item_id))), None)
                    if target is None:
                        continue
                    if php_str(item.get("DELETE")).upper() == "Y" or value.strip() == "":
                        existing.remove(target)
                    else:
                        target["VALUE"] = value
                        if item.get("VALUE_TYPE"):
                            target["VALUE_TYPE"] = php_str(item["VALUE_TYPE"])
                    continue
                if value.strip() == "":
                    continue
                existing.append(
                    {
                        "ID": str(self.next_fm_id),
                        "VALUE_TYPE": php_str(item.get("VALUE_TYPE") or "WORK"),
                        "VALUE": value,
                        "TYPE_ID": ftype,
                    }
                )
                self.next_fm_id += 1
        return {t: items for t, items in current.items() if items}

    def _render(self, table: EntityTable, rid: int, select: list[str] | None) -> JsonDict:
        row = table.rows[rid]
        fm = table.fm.get(rid, {})
        if select is None:
            names = [*table.fields, *table.userfields]
            fm_types = [t for t in MULTI_FIELDS if fm.get(t)]
        else:
            names, fm_types = [], []
            for item in select:
                if item == "*":
                    names.extend(table.fields)
                elif item == "UF_*":
                    names.extend(table.userfields)
                elif item in MULTI_FIELDS and table.multifields:
                    if fm.get(item):
                        fm_types.append(item)
                elif table.info(item) is not None:
                    names.append(item)
        out: JsonDict = {}
        for name in names:
            if name not in out:
                out[name] = row.get(name)
        for ftype in fm_types:
            out[ftype] = [dict(item) for item in fm[ftype]]
        return out

    def _list(self, table: EntityTable, params: Mapping[str, Any]) -> MethodResult:
        order = resolve_array_param(params, "order")
        order = {} if order is None else order
        if not isinstance(order, dict | list):
            raise B24Error("Parameter 'order' must be array.")
        raw_filter = resolve_array_param(params, "filter")
        raw_filter = {} if raw_filter is None else raw_filter
        if not isinstance(raw_filter, dict | list):
            raise B24Error("Parameter 'filter' must be array.")
        select_raw = as_php_array(resolve_array_param(params, "select"))
        select = [php_str(v) for v in select_raw.values()] if select_raw else ["*"]
        if "ID" not in select and any(s in MULTI_FIELDS for s in select):
            select.append("ID")  # the identity field is added when multi-fields are selected
        order_map = as_php_array(order) or {}
        conditions = parse_filter(table, as_php_array(raw_filter) or {})
        raw_start = params.get("start", params.get("START", 0))
        start = php_intval(raw_start) if not isinstance(raw_start, dict | list) else 0
        no_count = start < 0 and is_id_ascending(order_map)
        ids = select_ids(table, conditions, limit=PAGE_SIZE if no_count else None)
        ids = order_ids(table, ids, order_map)
        if start < 0:
            return MethodResult([self._render(table, rid, select) for rid in ids[:PAGE_SIZE]])
        pages = max(1, math.ceil(len(ids) / PAGE_SIZE))
        page = min(start // PAGE_SIZE + 1, pages)
        chunk = ids[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        nxt = page * PAGE_SIZE if page < pages else None
        return MethodResult([self._render(table, rid, select) for rid in chunk], total=len(ids), next=nxt)

    def _get(self, table: EntityTable, params: Mapping[str, Any]) -> MethodResult:
        rid = entity_id(params)
        if rid <= 0:
            raise B24Error("ID is not defined or invalid.")
        if rid not in table.rows:
            raise B24Error("Not found")
        return MethodResult(self._render(table, rid, None))

    def _now_iso(self) -> str:
        return iso_moscow(self.clock.now())

    # ------------------------------------------------------------------ contacts
    def _contact_insert(self, fields: Mapping[str, Any], created: float | None = None) -> int:
        table = self.contacts
        rid = table.next_id
        table.next_id += 1
        stamp = iso_moscow(created) if created is not None else self._now_iso()
        row: JsonDict = dict.fromkeys([*table.fields, *table.userfields])
        row.update(
            ID=str(rid),
            OPENED="Y",
            EXPORT="Y",
            TYPE_ID="CLIENT",
            ASSIGNED_BY_ID="1",
            CREATED_BY_ID="1",
            MODIFY_BY_ID="1",
            DATE_CREATE=stamp,
            DATE_MODIFY=stamp,
            HAS_IMOL="N",
        )
        self._apply_scalars(table, row, fields, update=False)
        fm = self._apply_multifields(rid, fields, update=False)
        row["HAS_PHONE"] = "Y" if fm.get("PHONE") else "N"
        row["HAS_EMAIL"] = "Y" if fm.get("EMAIL") else "N"
        table.put(rid, row, fm)
        return rid

    def contact_add(self, params: Mapping[str, Any]) -> MethodResult:
        return MethodResult(self._contact_insert(self._fields_param(params)))

    def contact_update(self, params: Mapping[str, Any]) -> MethodResult:
        rid = entity_id(params)
        if rid <= 0:
            raise B24Error("ID is not defined or invalid.")
        fields = self._fields_param(params)
        table = self.contacts
        if rid not in table.rows:
            raise B24Error("Contact is not found")
        row = dict(table.rows[rid])
        self._apply_scalars(table, row, fields, update=True)
        fm = self._apply_multifields(rid, fields, update=True)
        row["HAS_PHONE"] = "Y" if fm.get("PHONE") else "N"
        row["HAS_EMAIL"] = "Y" if fm.get("EMAIL") else "N"
        row["DATE_MODIFY"] = self._now_iso()
        table.put(rid, row, fm)
        return MethodResult(True)

    def contact_get(self, params: Mapping[str, Any]) -> MethodResult:
        return self._get(self.contacts, params)

    def contact_list(self, params: Mapping[str, Any]) -> MethodResult:
        return self._list(self.contacts, params)

    # ------------------------------------------------------------------ deals
    @staticmethod
    def _stage(category: int, stage_id: str | None) -> tuple[str, str, int, str, str] | None:
        return next((s for s in STAGES.get(category, ()) if s[0] == stage_id), None)

    def _set_stage(self, row: JsonDict, category: int, stage_id: str) -> None:
        stage = self._stage(category, stage_id) or STAGES[category][0]
        row["STAGE_ID"] = stage[0]
        row["STAGE_SEMANTIC_ID"] = stage[3]
        row["CLOSED"] = "N" if stage[3] == "P" else "Y"
        row["IS_NEW"] = "Y" if stage[0] == STAGES[category][0][0] else "N"

    def _contact_ref(self, value: Any) -> str | None:
        """A deal's CONTACT_ID: kept only when it names an existing contact (unconfirmed)."""
        if isinstance(value, dict | list) or value is None:
            return None
        rid = php_intval(value)
        return str(rid) if rid in self.contacts.rows else None

    def deal_add(self, params: Mapping[str, Any]) -> MethodResult:
        fields = self._fields_param(params)
        table = self.deals
        rid = table.next_id
        table.next_id += 1
        now = self._now_iso()
        row: JsonDict = dict.fromkeys([*table.fields, *table.userfields])
        row.update(
            ID=str(rid),
            TYPE_ID="SALE",
            PROBABILITY=None,
            CURRENCY_ID="RUB",
            OPPORTUNITY="0.00",
            IS_MANUAL_OPPORTUNITY="N",
            TAX_VALUE="0.00",
            OPENED="Y",
            IS_RECURRING="N",
            IS_RETURN_CUSTOMER="N",
            IS_REPEATED_APPROACH="N",
            ASSIGNED_BY_ID="1",
            CREATED_BY_ID="1",
            MODIFY_BY_ID="1",
            MOVED_BY_ID="1",
            DATE_CREATE=now,
            DATE_MODIFY=now,
            MOVED_TIME=now,
            BEGINDATE=now,
            SOURCE_ID=None,
        )
        self._apply_scalars(table, row, {k: v for k, v in fields.items() if k != "CONTACT_ID"}, update=False)
        if "CONTACT_ID" in fields:
            row["CONTACT_ID"] = self._contact_ref(fields["CONTACT_ID"])
        category = max(
            php_intval(fields.get("CATEGORY_ID")) if not isinstance(fields.get("CATEGORY_ID"), dict | list) else 0, 0
        )
        if category not in CATEGORIES:
            category = 0  # CCrmDeal::Add: a disabled/unknown category falls back to the default one
        row["CATEGORY_ID"] = str(category)
        self._set_stage(row, category, row.get("STAGE_ID") or "")
        if not (row.get("TITLE") or "").strip():
            row["TITLE"] = f"Сделка #{rid}"
        table.put(rid, row)
        return MethodResult(rid)

    def deal_update(self, params: Mapping[str, Any]) -> MethodResult:
        rid = entity_id(params)
        if rid <= 0:
            raise B24Error("ID is not defined or invalid.")
        fields = self._fields_param(params)
        table = self.deals
        if rid not in table.rows:
            raise B24Error("Deal is not found")
        row = dict(table.rows[rid])
        old_stage = row["STAGE_ID"]
        scalars = {k: v for k, v in fields.items() if k not in ("CONTACT_ID", "STAGE_ID")}
        self._apply_scalars(table, row, scalars, update=True)
        if "CONTACT_ID" in fields:
            row["CONTACT_ID"] = self._contact_ref(fields["CONTACT_ID"])
        category = int(row["CATEGORY_ID"])
        new_stage = fields.get("STAGE_ID")
        if isinstance(new_stage, str) and self._stage(category, new_stage) is not None and new_stage != old_stage:
            self._set_stage(row, category, new_stage)
            row["MOVED_TIME"] = self._now_iso()
        row["DATE_MODIFY"] = self._now_iso()
        table.put(rid, row)
        return MethodResult(True)

    def deal_get(self, params: Mapping[str, Any]) -> MethodResult:
        return self._get(self.deals, params)

    def deal_list(self, params: Mapping[str, Any]) -> MethodResult:
        return self._list(self.deals, params)

    # ------------------------------------------------------------------ duplicates
    def duplicate_findbycomm(self, params: Mapping[str, Any]) -> MethodResult:
        ftype = php_str(resolve_param(params, "type") or "").strip().upper()
        if ftype not in ("EMAIL", "PHONE"):
            if ftype == "":
                raise B24Error("Parameter 'type' is required.", "Communication type is not defined")
            raise B24Error(f"Communication type '{ftype}' is not supported in current context.")
        values = as_php_array(resolve_array_param(params, "values"))
        if not values:
            raise B24Error("Parameter 'values' is required.", "Communication values is not defined")
        entity = ""
        for key in ("ENTITY_TYPE", "entity_type", "EntityType", "arEntityType"):
            if params.get(key) is not None:
                entity = php_str(params[key]).strip().upper()
                break
        if entity == "DEAL":
            raise B24Error("Deal is not supported in current context.")
        if entity in ("LEAD", "COMPANY"):
            return MethodResult([])
        seen: list[str] = []
        found: list[int] = []
        for value in values.values():
            if not isinstance(value, str) or value == "":
                continue
            key = fm_key(ftype, value)
            if key in seen:
                continue
            seen.append(key)
            if key:
                for rid in sorted(self.contacts.fm_index[ftype].get(key, set()))[:FINDBYCOMM_MAX]:
                    if rid not in found:
                        found.append(rid)
            if len(seen) >= FINDBYCOMM_MAX:
                break
        return MethodResult({"CONTACT": found} if found else [])

    # ------------------------------------------------------------------ portal configuration
    def deal_userfield_list(self, params: Mapping[str, Any]) -> MethodResult:
        raw_filter = as_php_array(resolve_array_param(params, "filter")) or {}
        lang = raw_filter.pop("LANG", None)
        rows = []
        for uf in DEAL_USERFIELDS:
            label: Any = uf.label if lang else {"ru": uf.label, "en": uf.label}
            rows.append(
                {
                    "ID": str(uf.id),
                    "ENTITY_ID": "CRM_DEAL",
                    "FIELD_NAME": uf.name,
                    "USER_TYPE_ID": uf.type,
                    "XML_ID": None,
                    "SORT": str(uf.sort),
                    "MULTIPLE": "N",
                    "MANDATORY": "N",
                    "SHOW_FILTER": "E",
                    "SHOW_IN_LIST": "Y",
                    "EDIT_IN_LIST": "Y",
                    "IS_SEARCHABLE": "N",
                    "SETTINGS": {
                        "SIZE": 20,
                        "ROWS": 1,
                        "REGEXP": "",
                        "MIN_LENGTH": 0,
                        "MAX_LENGTH": 0,
                        "DEFAULT_VALUE": "",
                    },
                    "EDIT_FORM_LABEL": label,
                    "LIST_COLUMN_LABEL": label,
                    "LIST_FILTER_LABEL": label,
                    "ERROR_MESSAGE": None,
                    "HELP_MESSAGE": None,
                }
            )
        rows = [r for r in rows if all(php_str(r.get(k)).lower() == php_str(v).lower() for k, v in raw_filter.items())]
        return MethodResult(rows, total=len(rows))

    def dealcategory_list(self, params: Mapping[str, Any]) -> MethodResult:
        rows = [
            {
                "ID": str(cid),
                "CREATED_DATE": "2024-01-15T10:00:00+03:00",
                "NAME": name,
                "IS_LOCKED": "N",
                "SORT": str(500 + cid),
            }
            for cid, name in CATEGORIES.items()
            if cid != 0
        ]
        return MethodResult(rows, total=len(rows))

    def dealcategory_stage_list(self, params: Mapping[str, Any]) -> MethodResult:
        raw_id = resolve_param(params, "id")
        category = php_intval(raw_id) if not isinstance(raw_id, dict | list) else 0
        rows = [{"NAME": s[1], "SORT": str(s[2]), "STATUS_ID": s[0]} for s in STAGES.get(category, ())]
        return MethodResult(rows)

    def _status_rows(self) -> list[JsonDict]:
        rows: list[JsonDict] = []
        row_id = 101
        for category, stages in STAGES.items():
            entity = "DEAL_STAGE" if category == 0 else f"DEAL_STAGE_{category}"
            for status_id, name, sort, sem, color in stages:
                rows.append(
                    {
                        "ID": str(row_id),
                        "ENTITY_ID": entity,
                        "STATUS_ID": status_id,
                        "NAME": name,
                        "NAME_INIT": name if sem != "P" or sort == 10 else "",
                        "SORT": str(sort),
                        "SYSTEM": "Y" if sem != "P" or sort == 10 else "N",
                        "CATEGORY_ID": None if category == 0 else str(category),
                        "COLOR": color,
                        "SEMANTICS": None if sem == "P" else sem,
                        "EXTRA": {"SEMANTICS": SEMANTICS[sem], "COLOR": color},
                    }
                )
                row_id += 2
        for entity, items in OTHER_STATUSES.items():
            for sort, (status_id, name) in enumerate(items, start=1):
                rows.append(
                    {
                        "ID": str(row_id),
                        "ENTITY_ID": entity,
                        "STATUS_ID": status_id,
                        "NAME": name,
                        "NAME_INIT": name,
                        "SORT": str(sort * 10),
                        "SYSTEM": "Y",
                        "CATEGORY_ID": None,
                        "COLOR": None,
                        "SEMANTICS": None,
                    }
                )
                row_id += 2
        return rows

    def status_list(self, params: Mapping[str, Any]) -> MethodResult:
        raw_filter = resolve_array_param(params, "filter")
        if raw_filter is not None and not isinstance(raw_filter, dict | list):
            raise B24Error("Incorrect parameters passed.", "Invalid parameters.")
        conditions = as_php_array(raw_filter) or {}
        rows = [
            r
            for r in self._status_rows()
            if all(php_str(r.get(k)).lower() == php_str(v).lower() for k, v in conditions.items())
        ]
        order = as_php_array(resolve_array_param(params, "order")) or {"SORT": "ASC"}
        for key, direction in reversed(list(order.items())):
            numeric = key in ("SORT", "ID")

            def sort_key(row: JsonDict, key: str = key, numeric: bool = numeric) -> tuple[int, str]:
                return (php_intval(row.get(key)), "") if numeric else (0, php_str(row.get(key)))

            rows.sort(key=sort_key, reverse=php_str(direction).upper() == "DESC")
        return MethodResult(rows[:PAGE_SIZE], total=len(rows), next=PAGE_SIZE if len(rows) > PAGE_SIZE else None)

    # ------------------------------------------------------------------ control dumps
    def dump(self, table: EntityTable) -> list[JsonDict]:
        with self.lock:
            out = []
            for rid in sorted(table.rows):
                row = dict(table.rows[rid])
                if table.multifields:
                    fm = table.fm.get(rid, {})
                    for ftype in MULTI_FIELDS:
                        row[ftype] = [dict(i) for i in fm.get(ftype, [])]
                out.append(row)
            return out

    async def control_dump_contacts(self, request: Request) -> Response:
        return JsonResponse(self.dump(self.contacts))

    async def control_dump_deals(self, request: Request) -> Response:
        return JsonResponse(self.dump(self.deals))
