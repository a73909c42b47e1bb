"""Bitrix24 emulator: deals (`crm.deal.add/update/get/list`) and their stage history
(`crm.stagehistory.list`), mixed into the service.

Every stage a deal enters is a history row, as `DealStageHistoryTable` keeps it: TYPE_ID 1 when the
deal is created, 2 on a move to an in-progress stage, 3 on a move to a final one (5, a pipeline
change, cannot happen here: `crm.deal.update` ignores CATEGORY_ID). Rows answer with integer ID,
TYPE_ID, OWNER_ID and CATEGORY_ID (ORM values, unlike `crm.deal.list`'s strings), wrapped in
``{"items": [...]}`` with ``total``/``next`` beside, 50 a page. Our own `crm.deal.update` and a
manager's move (``POST /_sandbox/{portal}/deals/{id}/stage`` ``{"stage_id"}``) are both recorded;
the manager's move sets MODIFY_BY_ID/MOVED_BY_ID to the manager, not the webhook's user.

Unconfirmed: the error for an entityTypeId other than 1, 2, 5, 31 (ENTITY_TYPE_NOT_SUPPORTED here;
leads and invoices answer an empty list, the portal has none).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import Response

from integration_sync.sandbox.bitrix24_query import EntityTable, as_php_array, param_ci, resolve_array_param
from integration_sync.sandbox.bitrix24_schema import B24Error, FieldInfo, MethodResult
from integration_sync.sandbox.core import JsonDict, JsonResponse, php_intval, php_str, read_json

if TYPE_CHECKING:
    from integration_sync.sandbox.core import Clock

Stage = tuple[str, str, int, str, str]
MANAGER_USER_ID: Final = "7"  # a manager working deals in the portal's UI (the webhook acts as user 1)
HISTORY_FIELDS: Final[dict[str, FieldInfo]] = {
    "ID": FieldInfo("int", read_only=True),
    "TYPE_ID": FieldInfo("int"),
    "OWNER_ID": FieldInfo("int"),
    "CREATED_TIME": FieldInfo("datetime"),
    "CATEGORY_ID": FieldInfo("int"),
    "STAGE_SEMANTIC_ID": FieldInfo(),
    "STAGE_ID": FieldInfo(),
}
HISTORY_ENTITY_TYPES: Final = {1: "LEAD", 2: "DEAL", 5: "INVOICE", 31: "SMART_INVOICE"}


def new_history() -> EntityTable:
    return EntityTable(HISTORY_FIELDS, (), ("OWNER_ID", "CATEGORY_ID"))


def _arg_error(text: str) -> B24Error:
    return B24Error(text, "INVALID_ARG_VALUE")


class DealMethods:
    """`crm.deal.*` and `crm.stagehistory.list` over the service's deals and history tables."""

    deals: EntityTable
    contacts: EntityTable
    history: EntityTable
    categories: Mapping[int, str]
    stages: Mapping[int, tuple[Stage, ...]]
    currency: str
    lock: Any

    if TYPE_CHECKING:
        clock: Clock

        def _fields_param(self, params: Mapping[str, Any]) -> dict[str, Any]: ...
        def _apply_scalars(
            self, table: EntityTable, row: JsonDict, fields: Mapping[str, Any], update: bool
        ) -> None: ...
        def _get(self, table: EntityTable, params: Mapping[str, Any]) -> MethodResult: ...
        def _existing(self, table: EntityTable, params: Mapping[str, Any], not_found: str) -> tuple[int, JsonDict]: ...
        def _list(self, table: EntityTable, params: Mapping[str, Any]) -> MethodResult: ...
        def _now_iso(self) -> str: ...

    # ------------------------------------------------------------------ stages
    def _stage(self, category: int, stage_id: str | None) -> Stage | None:
        return next((s for s in self.stages.get(category, ()) if s[0] == stage_id), None)

    def _set_stage(self, row: JsonDict, category: int, stage_id: str) -> None:
        stage = self._stage(category, stage_id) or self.stages[category][0]
        row["STAGE_ID"] = stage[0]
        row["STAGE_SEMANTIC_ID"] = stage[3]
        row["CLOSED"] = "N" if stage[3] == "P" else "Y"
        row["IS_NEW"] = "Y" if stage[0] == self.stages[category][0][0] else "N"

    def _record_stage(self, deal: JsonDict, type_id: int) -> None:
        table = self.history
        rid = table.next_id
        table.next_id += 1
        row: JsonDict = {
            "ID": rid,
            "TYPE_ID": type_id,
            "OWNER_ID": int(deal["ID"]),
            "CREATED_TIME": self._now_iso(),
            "CATEGORY_ID": int(deal["CATEGORY_ID"]),
            "STAGE_SEMANTIC_ID": deal["STAGE_SEMANTIC_ID"],
            "STAGE_ID": deal["STAGE_ID"],
        }
        table.put(rid, row)

    def _contact_ref(self, value: Any) -> str | None:
        """A deal's CONTACT_ID: kept only when it names an existing contact (unconfirmed)."""
        if isinstance(value, dict | list) or value is None:
            return None
        rid = php_intval(value)
        return str(rid) if rid in self.contacts.rows else None

    # ------------------------------------------------------------------ deals
    def deal_add(self, params: Mapping[str, Any]) -> MethodResult:
        return MethodResult(self._deal_insert(self._fields_param(params)))

    def _deal_insert(self, fields: Mapping[str, Any], by: str = "1") -> int:
        table = self.deals
        rid = table.next_id
        table.next_id += 1
        now = self._now_iso()
        row: JsonDict = dict.fromkeys([*table.fields, *table.userfields])
        row.update(
            ID=str(rid),
            TYPE_ID="SALE",
            PROBABILITY=None,
            CURRENCY_ID=self.currency,
            OPPORTUNITY="0.00",
            IS_MANUAL_OPPORTUNITY="N",
            TAX_VALUE="0.00",
            OPENED="Y",
            IS_RECURRING="N",
            IS_RETURN_CUSTOMER="N",
            IS_REPEATED_APPROACH="N",
            ASSIGNED_BY_ID=by,
            CREATED_BY_ID=by,
            MODIFY_BY_ID=by,
            MOVED_BY_ID=by,
            DATE_CREATE=now,
            DATE_MODIFY=now,
            MOVED_TIME=now,
            BEGINDATE=now,
            SOURCE_ID=None,
        )
        self._apply_scalars(table, row, {k: v for k, v in fields.items() if k != "CONTACT_ID"}, update=False)
        if "CONTACT_ID" in fields:
            row["CONTACT_ID"] = self._contact_ref(fields["CONTACT_ID"])
        raw_category = fields.get("CATEGORY_ID")
        category = max(php_intval(raw_category) if not isinstance(raw_category, dict | list) else 0, 0)
        if category not in self.categories:
            category = 0  # CCrmDeal::Add: a disabled/unknown category falls back to the default one
        row["CATEGORY_ID"] = str(category)
        self._set_stage(row, category, row.get("STAGE_ID") or "")
        if not (row.get("TITLE") or "").strip():
            row["TITLE"] = f"Сделка #{rid}"
        table.put(rid, row)
        self._record_stage(row, 1)
        return rid

    def _move(self, row: JsonDict, stage_id: Any, by: str) -> bool:
        """Moves the deal (a copy being updated) to ``stage_id`` of its category; False when not a move."""
        category = int(row["CATEGORY_ID"])
        if not isinstance(stage_id, str) or self._stage(category, stage_id) is None or stage_id == row["STAGE_ID"]:
            return False
        self._set_stage(row, category, stage_id)
        row["MOVED_TIME"] = self._now_iso()
        row["MOVED_BY_ID"] = by
        return True

    def deal_update(self, params: Mapping[str, Any]) -> MethodResult:
        rid, row = self._existing(self.deals, params, "Deal is not found")
        fields = self._fields_param(params)
        table = self.deals
        scalars = {k: v for k, v in fields.items() if k not in ("CONTACT_ID", "STAGE_ID")}
        self._apply_scalars(table, row, scalars, update=True)
        if "CONTACT_ID" in fields:
            row["CONTACT_ID"] = self._contact_ref(fields["CONTACT_ID"])
        moved = self._move(row, fields.get("STAGE_ID"), "1")
        row["DATE_MODIFY"] = self._now_iso()
        row["MODIFY_BY_ID"] = "1"
        table.put(rid, row)
        if moved:
            self._record_stage(row, 2 if row["STAGE_SEMANTIC_ID"] == "P" else 3)
        return MethodResult(True)

    def deal_get(self, params: Mapping[str, Any]) -> MethodResult:
        return self._get(self.deals, params)

    def deal_list(self, params: Mapping[str, Any]) -> MethodResult:
        return self._list(self.deals, params)

    # ------------------------------------------------------------------ stage history
    def stagehistory_list(self, params: Mapping[str, Any]) -> MethodResult:
        raw_type = param_ci(params, "entityTypeId")
        type_id = php_intval(raw_type) if not isinstance(raw_type, dict | list) else 0
        if type_id not in HISTORY_ENTITY_TYPES:
            raise B24Error(f"Entity type {php_str(raw_type)} is not supported", "ENTITY_TYPE_NOT_SUPPORTED")
        raw_filter = as_php_array(resolve_array_param(params, "filter")) or {}
        for key in raw_filter:
            if key.lstrip("=!<>@%") not in HISTORY_FIELDS:
                raise _arg_error(f"Invalid filter: field '{key.lstrip('=!<>@%')}' is not allowed in filter")
        order = as_php_array(resolve_array_param(params, "order")) or {}
        for key, direction in order.items():
            if key not in HISTORY_FIELDS:
                raise _arg_error(f"Invalid order: field '{key}' is not allowed in order")
            if php_str(direction).upper() not in ("ASC", "DESC"):
                raise _arg_error(
                    f"Invalid order: allowed sort directions are ASC, DESC. But got '{php_str(direction)}' "
                    f"for field '{key}'"
                )
        if type_id != 2:
            return MethodResult({"items": []}, total=0)
        page = self._list(self.history, params)
        return MethodResult({"items": page.result}, total=page.total, next=page.next)

    async def control_move_deal(self, request: Request) -> Response:
        """A manager drags a deal to another stage of its pipeline in the UI."""
        try:
            body = await read_json(request)
        except ValueError:
            body = None
        stage_id = body.get("stage_id") if isinstance(body, dict) else None
        if not isinstance(stage_id, str):
            return JsonResponse({"error": 'body must be {"stage_id": str}'}, status_code=400)
        rid = int(request.path_params["id"])
        with self.lock:
            if rid not in self.deals.rows:
                return JsonResponse({"error": "deal not found"}, status_code=404)
            row = dict(self.deals.rows[rid])
            if self._stage(int(row["CATEGORY_ID"]), stage_id) is None:
                return JsonResponse({"error": f"no stage {stage_id} in the deal's pipeline"}, status_code=400)
            if not self._move(row, stage_id, MANAGER_USER_ID):
                return JsonResponse({"moved": False, "deal": row})
            row["DATE_MODIFY"] = self._now_iso()
            row["MODIFY_BY_ID"] = MANAGER_USER_ID
            self.deals.put(rid, row)
            self._record_stage(row, 2 if row["STAGE_SEMANTIC_ID"] == "P" else 3)
        return JsonResponse({"moved": True, "deal": row})
