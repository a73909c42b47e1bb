"""Bitrix24 emulator: parameter and value handling as the ``rest``/``crm`` modules do it, ``$result``
references, the operating-time meter, entity tables with their indexes, and list filters."""

from __future__ import annotations

import bisect
import copy
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from integration_sync.sandbox.bitrix24_schema import (
    MULTI_FIELDS,
    OPERATING_WINDOW_S,
    FieldInfo,
)
from integration_sync.sandbox.core import (
    MOSCOW,
    Clock,
    JsonDict,
    iso_moscow,
    php_intval,
    php_str,
)


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


def param_ci(params: Mapping[str, Any], name: str) -> Any:
    """A top-level parameter matched case-insensitively (``entityId`` = ``ENTITYID``)."""
    wanted = name.lower()
    return next((v for k, v in params.items() if str(k).lower() == wanted and v is not None), None)


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
        self.product_rows: dict[int, list[JsonDict]] = {}  # deals only: crm.deal.productrows.*
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
