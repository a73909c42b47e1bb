"""Bitrix24 emulator: the read-only methods (duplicate search and the portal configuration:
user fields, pipelines, stages, statuses), mixed into the service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from integration_sync.sandbox.bitrix24_query import (
    EntityTable,
    as_php_array,
    fm_key,
    param_ci,
    resolve_array_param,
    resolve_param,
)
from integration_sync.sandbox.bitrix24_schema import (
    CATEGORIES,
    DEAL_USERFIELDS,
    FINDBYCOMM_MAX,
    OTHER_STATUSES,
    PAGE_SIZE,
    SEMANTICS,
    STAGES,
    B24Error,
    MethodResult,
)
from integration_sync.sandbox.core import (
    JsonDict,
    JsonResponse,
    php_intval,
    php_str,
    read_json,
)


class PortalMethods:
    """Methods that read the portal; the service provides the contacts table and added pipelines."""

    contacts: EntityTable
    extra_categories: dict[int, str]
    lock: Any
    # the portal's pipelines and their stages (STATUS_ID, NAME, SORT, semantics, colour)
    categories: Mapping[int, str] = CATEGORIES
    stages: Mapping[int, tuple[tuple[str, str, int, str, str], ...]] = STAGES

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
                "SORT": 500 + cid,  # a JSON number in real answers (the docs show strings)
            }
            for cid, name in self.categories.items()
            if cid != 0
        ]
        return MethodResult(rows, total=len(rows))

    def dealcategory_stage_list(self, params: Mapping[str, Any]) -> MethodResult:
        raw_id = resolve_param(params, "id")
        category = php_intval(raw_id) if not isinstance(raw_id, dict | list) else 0
        rows = [{"NAME": s[1], "SORT": s[2], "STATUS_ID": s[0]} for s in self.stages.get(category, ())]
        return MethodResult(rows)

    def _status_rows(self) -> list[JsonDict]:
        rows: list[JsonDict] = []
        row_id = 101
        for category, stages in self.stages.items():
            entity = "DEAL_STAGE" if category == 0 else f"DEAL_STAGE_{category}"
            for status_id, name, sort, sem, color in stages:
                rows.append(
                    {
                        "ID": str(row_id),
                        "ENTITY_ID": entity,
                        "STATUS_ID": status_id,
                        "NAME": name,
                        "NAME_INIT": name if sem != "P" or sort == 10 else "",
                        "SORT": sort,  # numbers in recorded real traffic (the docs sample shows "10")
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
                        "SORT": sort * 10,
                        "SYSTEM": "Y",
                        "CATEGORY_ID": None,
                        "COLOR": None,
                        "SEMANTICS": None,
                    }
                )
                row_id += 2
        return rows

    def status_entity_items(self, params: Mapping[str, Any]) -> MethodResult:
        """``crm.status.entity.items?entityId=DEAL_STAGE_5``: NAME, SORT (a number), STATUS_ID."""
        entity = php_str(param_ci(params, "entityId") or "").strip().upper()
        if not entity:  # unconfirmed wording
            raise B24Error("The parameter entityId is not defined or invalid.")
        rows = [r for r in self._status_rows() if r["ENTITY_ID"] == entity]
        rows.sort(key=lambda r: php_intval(r["SORT"]))
        return MethodResult([{"NAME": r["NAME"], "SORT": r["SORT"], "STATUS_ID": r["STATUS_ID"]} for r in rows])

    def category_list(self, params: Mapping[str, Any]) -> MethodResult:
        """``crm.category.list?entityTypeId=2``: ``{"categories": [...]}`` with total/next beside it,
        camelCase keys, numbers as numbers, 50 a page. Categories added by the control route are
        listed only (deals cannot go into them)."""
        raw_type = param_ci(params, "entityTypeId")
        if php_intval(raw_type) != 2:  # unconfirmed wording; only deals have pipelines here
            raise B24Error("Smart process not found", "NOT_FOUND")
        names = {**self.categories, **self.extra_categories}
        rows: list[JsonDict] = [
            {
                "id": cid,
                "name": name,
                "sort": 100 if cid == 0 else 500 + cid,
                "entityTypeId": 2,
                "isDefault": "Y" if cid == 0 else "N",
                "originId": "",
                "originatorId": "",
            }
            for cid, name in sorted(names.items())
        ]
        raw_start = resolve_param(params, "start")
        start = max(0, php_intval(raw_start) if not isinstance(raw_start, dict | list) else 0)
        page = rows[start : start + PAGE_SIZE]
        nxt = start + PAGE_SIZE if start + PAGE_SIZE < len(rows) else None
        return MethodResult({"categories": page}, total=len(rows), next=nxt)

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

    async def control_add_categories(self, request: Request) -> Response:
        """``{"names": [...]}``: more deal pipelines for ``crm.category.list`` (to page through)."""
        try:
            body = await read_json(request)
        except ValueError:
            body = None
        names = body.get("names") if isinstance(body, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return JsonResponse({"error": 'body must be {"names": [str, ...]}'}, status_code=400)
        with self.lock:
            for name in names:
                cid = max([*self.categories, *self.extra_categories]) + 2
                self.extra_categories[cid] = name
            total = len(self.categories) + len(self.extra_categories)
        return JsonResponse({"categories": total})
