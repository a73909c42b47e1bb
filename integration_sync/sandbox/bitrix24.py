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

Seen in recorded real traffic and reproduced: numbers inside status and category lists (``"SORT":
10``), ``operating``/``operating_reset_at`` in every command's ``result_time``, ``crm.category.list``
answering ``{"categories": [...]}`` with ``total``/``next`` beside it. The fault key
``batch_command_error: {count, methods?, skip?, error?, error_description?}`` fails chosen commands
inside an HTTP 200 batch (``result_error``); the fault state reports how many ``fired``.

The schema lives in ``bitrix24_schema``, parameters, filters and tables in ``bitrix24_query``, the
read-only portal methods in ``bitrix24_methods``, deals and their stage history in ``bitrix24_history``,
the catalog and product rows in ``bitrix24_products``. This class is the ABCP dealer's portal; another
portal subclasses it with its own identity, pipelines and volume keys (``bitrix24_shop``).

Unconfirmed (marked where used): the nested-batch error code, ``crm.deal.update`` with a foreign
STAGE_ID (ignored here), a deal CONTACT_ID that is not an existing contact (dropped here), phone
numbers without a country code (not matched to +7 numbers here), email format validation (none).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from integration_sync.sandbox.bitrix24_history import DealMethods, new_history
from integration_sync.sandbox.bitrix24_methods import PortalMethods
from integration_sync.sandbox.bitrix24_products import ProductMethods, ProductRowMethods, new_products
from integration_sync.sandbox.bitrix24_query import (
    EntityTable,
    OperatingMeter,
    _Skip,
    as_php_array,
    coerce,
    entity_id,
    is_id_ascending,
    normalize_phone,
    order_ids,
    parse_filter,
    resolve_array_param,
    select_ids,
    substitute_refs,
)
from integration_sync.sandbox.bitrix24_schema import (
    B24_USER_ID,
    B24_WEBHOOK_CODE,
    BATCH_MAX,
    CONTACT_FIELDS,
    DEAL_FIELDS,
    DEAL_USERFIELDS,
    ERR_BATCH_LENGTH,
    ERR_BATCH_NESTED,
    ERR_INVALID_CREDENTIALS,
    ERR_METHOD_NOT_FOUND,
    ERR_OPERATION_TIME,
    ERR_QUERY_LIMIT,
    HTML_500,
    MULTI_FIELDS,
    PAGE_SIZE,
    UF_ABCP_INN,
    UF_ABCP_SALDO,
    UF_ABCP_USER_ID,
    USERS_CATEGORY_ID,
    USERS_STAGE_NEW,
    B24Error,
    CommandErrorFault,
    MethodResult,
)
from integration_sync.sandbox.core import (
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

__all__ = [
    "B24_USER_ID",
    "B24_WEBHOOK_CODE",
    "UF_ABCP_INN",
    "UF_ABCP_SALDO",
    "UF_ABCP_USER_ID",
    "USERS_CATEGORY_ID",
    "USERS_STAGE_NEW",
    "Bitrix24Service",
    "normalize_phone",
    "substitute_refs",
]

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


class Bitrix24Service(DealMethods, PortalMethods, ProductMethods, ProductRowMethods, Service):
    """One Bitrix24 portal reached through its inbound webhook (the ABCP dealer's; other portals subclass
    it with their own identity, pipelines and volume keys)."""

    name = "bitrix24"
    user_id = B24_USER_ID
    webhook_code = B24_WEBHOOK_CODE
    currency = "RUB"
    volume_prefix = "bitrix24"

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.config = PortalConfig()
        self.commands: Counter[str] = Counter()
        self.bucket = LeakyBucket(self.config.rate, self.config.burst, clock)
        self.meter = OperatingMeter(clock, self.config.operating_budget_s)
        self.contacts = self._new_contacts()
        self.deals = self._new_deals()
        self.history = new_history()
        self.products = new_products()
        self.next_fm_id = 1
        self.command_fault: CommandErrorFault | None = None
        self.injected: Counter[str] = Counter()
        self.extra_categories: dict[int, str] = {}
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
            "crm.status.entity.items": self.status_entity_items,
            "crm.category.list": self.category_list,
            "crm.deal.productrows.set": self.deal_productrows_set,
            "crm.deal.productrows.get": self.deal_productrows_get,
            "crm.stagehistory.list": self.stagehistory_list,
            "crm.product.add": self.product_add,
            "crm.product.update": self.product_update,
            "crm.product.list": self.product_list,
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
        def limit(name: str, default: float) -> float:  # this portal's own key, else the common one
            value = volumes.get(f"{self.volume_prefix}_{name}")
            return float(volumes.get(f"bitrix24_{name}", default) if value is None else value)

        own = self.volume_prefix
        config = PortalConfig(
            rate=limit("rate", 2.0) * float(volumes.get("bitrix24_rate_multiplier", 1.0)),
            burst=int(limit("burst", 50)),
            operating_budget_s=limit("operating_budget_s", 480.0),
            operating_cost_s=limit("operating_cost_s", 0.0),
            contact_userfields=tuple(volumes.get(f"{own}_contact_userfields") or ()),
            seed_contacts=int(3 if volumes.get(f"{own}_contacts") is None else volumes[f"{own}_contacts"]),
            seed_people=list(volumes.get(f"{own}_seed_people") or []),
        )
        with self.lock:
            self.config = config
            self.bucket = LeakyBucket(config.rate, config.burst, self.clock)
            self.meter = OperatingMeter(self.clock, config.operating_budget_s)
            self.contacts = self._new_contacts()
            self.deals = self._new_deals()
            self.history = new_history()
            self.products = new_products()
            self.next_fm_id = 1
            self.reset_counters()
            self.commands = Counter()
            self.injected = Counter()
            self.extra_categories = {}
            self._seed_contacts(seed)
            self.seed_extra(seed)
        self.configure_faults(None)

    def seed_extra(self, seed: int) -> None:
        """More seeded data for another portal's profile (nothing on this one)."""

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
            if self.injected:  # faults that fired: error statuses, batch command errors
                out["injected"] = dict(self.injected)
        return out

    def apply_fault_extras(self, extra: Mapping[str, Any]) -> None:
        unknown = set(extra) - {"batch_command_error"}
        if unknown:
            raise ValueError(f"unknown fault keys for bitrix24: {sorted(unknown)}")
        spec = extra.get("batch_command_error")
        fault = CommandErrorFault.parse(spec) if spec else None
        if fault is not None and isinstance(extra, dict):
            extra["batch_command_error"] = fault.state  # so the fault state reports what fired
        with self.lock:
            self.command_fault = fault

    def fault_response(self, status: int, body: Any, method: str) -> Response:
        with self.lock:
            self.injected[f"status_{status}"] += 1
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
            Route("/categories", self.control_add_categories, methods=["POST"]),
            Route("/deals/{id:int}/stage", self.control_move_deal, methods=["POST"]),
        ]

    async def handle(self, request: Request) -> Response:
        method = str(request.path_params["method"]).strip("/").lower()
        if method.endswith(".json"):
            method = method[: -len(".json")]
        self.count_request(method)
        fault = await self.apply_faults(method)
        if fault is not None:
            return fault
        if request.path_params["user_id"] != self.user_id or request.path_params["code"] != self.webhook_code:
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
            return DroppedResponse(json_dumps(body), status_code=status, hold_s=self.faults.drop_hold_s)
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
                elif self.command_fault is not None and (error := self.command_fault.take(method)) is not None:
                    self.injected["batch_command_error"] += 1
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
                        maps["time"][key] = self._time(start_wall, elapsed, method)
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

    def _existing(self, table: EntityTable, params: Mapping[str, Any], not_found: str) -> tuple[int, JsonDict]:
        """The id of `params` and a copy of its row, as the `*.get`/`*.update` methods refuse a bad one."""
        rid = entity_id(params)
        if rid <= 0:
            raise B24Error("ID is not defined or invalid.")
        if rid not in table.rows:
            raise B24Error(not_found)
        return rid, dict(table.rows[rid])

    def _get(self, table: EntityTable, params: Mapping[str, Any]) -> MethodResult:
        rid, _ = self._existing(table, params, "Not found")
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
        rid, row = self._existing(self.contacts, params, "Contact is not found")
        fields = self._fields_param(params)
        table = self.contacts
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
