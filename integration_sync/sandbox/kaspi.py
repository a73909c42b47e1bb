"""Kaspi.kz Shop API v2 emulator (JSON:API) under ``/kaspi/shop/api/v2``.

Routes: ``GET /orders``, ``/orders/{id}``, ``/orders/{id}/entries``, ``/orderentries/{id}``,
``/orderentries/{id}/product`` (master product) and ``/masterproducts/{id}/merchantProduct``
(the merchant's SKU). Shapes are copied from the merchant guide's samples
(/work/shared/api-samples/kaspi); rules from /work/shared/api-facts.md:

- ``X-Auth-Token`` required (missing or wrong -> 401, ``kaspi_auth_error_status``); answers are
  ``application/vnd.api+json``; errors are ``{"errors": [{"title": ...}]}``;
- ``GET /orders``: ``page[number]`` (0-based) and ``page[size]`` (<= ``kaspi_page_size_max``),
  ``filter[orders][creationDate][$ge]`` required ("Required filter [orders][creationDate][$ge] is
  empty"), ``[$le]`` optional (default now), both epoch ms; a window wider than
  ``kaspi_max_window_days`` is a 400 (``width``: $le - $ge; ``lookback``: now - $ge); filters
  ``state``, ``status``, ``code``, ``deliveryType``; ``include[orders]=user`` adds the customers;
  sorted by creationDate ascending (stable); ``meta{pageCount, totalCount}``;
- an order's id is base64 of its code; ``GET /orders/{code}`` is a 404 "Resource not found";
- order ``totalPrice`` is the sum of its entries' ``totalPrice``: delivery is NOT included (the
  guide's sample: 2 x 2000 = 4000 with ``deliveryCost`` 500); ~10% of entries carry no ``offer``.

Assumptions, configurable because the vendor does not publish them: a leaky bucket of 10 req/s,
burst 20, answering 429 without ``Retry-After`` (community clients stay near 6 req/s); page sizes
over the maximum are refused (``kaspi_page_size_over="clamp"`` clamps instead); ``page[number]`` and
``page[size]`` are required; ``Content-Type: application/vnd.api+json`` is required on requests
(415) and an ``Accept`` that excludes it is refused (406); a request without ``User-Agent`` hangs
``kaspi_no_user_agent_delay_s`` and then loses its connection (seen in real traffic); a lookup by
``filter[orders][code]`` still needs ``$ge``; unknown ``state``/``status`` values and ``include``
targets are 400s; an inverted window ($ge > $le) is an empty page. Error titles end with a period,
as Kaspi's do; those other than the missing-``$ge`` one are our wording. Read-only: the
status-changing ``POST /orders`` is not emulated (orders move through
``POST /_sandbox/kaspi/orders/{code}/status``).
"""

from __future__ import annotations

import asyncio
import copy
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from integration_sync.sandbox.core import (
    Clock,
    DroppedResponse,
    JsonDict,
    JsonResponse,
    LeakyBucket,
    Service,
    json_dumps,
    read_json,
)
from integration_sync.sandbox.kaspi_data import (
    CATALOG,
    DAY_MS,
    FINAL_STATUSES,
    PICKUP_MODES,
    RETURN_STATUSES,
    STATES,
    STATUSES,
    Entry,
    Order,
    OrderFactory,
    Product,
    generate_orders,
    order_id,
    state_for,
)

KASPI_AUTH_VALUE: Final = "sandbox-kaspi-token"
KASPI_API_PATH: Final = "/shop/api/v2"
JSONAPI: Final = "application/vnd.api+json"
ERR_GE_REQUIRED: Final = "Required filter [orders][creationDate][$ge] is empty."
ERR_NOT_FOUND: Final = "Resource not found."
F_GE: Final = "filter[orders][creationDate][$ge]"
F_LE: Final = "filter[orders][creationDate][$le]"
F_STATE: Final = "filter[orders][state]"
F_STATUS: Final = "filter[orders][status]"
F_CODE: Final = "filter[orders][code]"
F_DELIVERY_TYPE: Final = "filter[orders][deliveryType]"
INCLUDE_ORDERS: Final = "include[orders]"

Serve = Callable[[Request, Mapping[str, str]], JsonDict]


class KaspiError(Exception):
    """An error answer: HTTP status and the JSON:API error title."""

    def __init__(self, status: int, title: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title


class JsonApiResponse(JsonResponse):
    media_type = JSONAPI


def error_response(status: int, title: str) -> Response:
    # real Kaspi error titles end with a period ("... filter.")
    title = title if title.endswith(".") else title + "."
    return JsonApiResponse({"errors": [{"title": title}]}, status_code=status)


@dataclass
class KaspiSettings:
    """The knobs a reset reads from the sandbox config."""

    max_window_days: int = 14
    window_mode: str = "width"
    page_size_max: int = 100
    page_size_over: str = "reject"
    require_paging: bool = True
    rate: float = 10.0
    burst: int = 20
    auth_error_status: int = 401
    strict_media_types: bool = True
    no_user_agent_delay_s: float = 30.0
    code_lookup_without_date: bool = False
    repeat_customers: float = 0.3
    offer_missing_share: float = 0.1

    @classmethod
    def from_volumes(cls, volumes: Mapping[str, Any]) -> KaspiSettings:
        d = cls()
        return cls(
            max_window_days=int(volumes.get("kaspi_max_window_days", d.max_window_days)),
            window_mode=str(volumes.get("kaspi_window_mode", d.window_mode)),
            page_size_max=int(volumes.get("kaspi_page_size_max", d.page_size_max)),
            page_size_over=str(volumes.get("kaspi_page_size_over", d.page_size_over)),
            require_paging=bool(volumes.get("kaspi_require_paging", d.require_paging)),
            rate=float(volumes.get("kaspi_rate", d.rate)),
            burst=int(volumes.get("kaspi_burst", d.burst)),
            auth_error_status=int(volumes.get("kaspi_auth_error_status", d.auth_error_status)),
            strict_media_types=bool(volumes.get("kaspi_strict_media_types", d.strict_media_types)),
            no_user_agent_delay_s=float(volumes.get("kaspi_no_user_agent_delay_s", d.no_user_agent_delay_s)),
            code_lookup_without_date=bool(volumes.get("kaspi_code_lookup_without_date", d.code_lookup_without_date)),
            repeat_customers=float(volumes.get("kaspi_repeat_customers", d.repeat_customers)),
            offer_missing_share=float(volumes.get("kaspi_offer_missing_share", d.offer_missing_share)),
        )


@dataclass
class RawOrder:
    """A document appended verbatim through the control route (for bad-input tests)."""

    doc: Any
    seq: int
    appended_ms: int
    entries: list[Any]

    @property
    def attributes(self) -> Mapping[str, Any]:
        attrs = self.doc.get("attributes") if isinstance(self.doc, dict) else None
        return attrs if isinstance(attrs, dict) else {}

    @property
    def id(self) -> str | None:
        value = self.doc.get("id") if isinstance(self.doc, dict) else None
        return value if isinstance(value, str) else None

    @property
    def created(self) -> int:
        value = self.attributes.get("creationDate")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        return self.appended_ms


def _int_param(params: Mapping[str, str], name: str, minimum: int) -> int | None:
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    if not text.lstrip("-").isdigit():
        raise KaspiError(400, f"Invalid value of parameter {name}: {raw}")
    value = int(text)
    if value < minimum:
        raise KaspiError(400, f"Invalid value of parameter {name}: {raw}")
    return value


def _media_ok(value: str) -> bool:
    return value.split(";", 1)[0].strip().lower() == JSONAPI


def _accepts_jsonapi(accept: str) -> bool:
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in (JSONAPI, "*/*", "application/*"):
            return True
    return False


class KaspiService(Service):
    """One merchant's Kaspi Shop API v2."""

    name = "kaspi"

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.settings = KaspiSettings()
        self.bucket = LeakyBucket(self.settings.rate, self.settings.burst, clock)
        self.seed = 1
        self.factory = OrderFactory(1, self.settings.offer_missing_share)
        self.orders: list[Order] = []
        self.raw: list[RawOrder] = []
        self.by_code: dict[str, Order] = {}
        self.by_id: dict[str, Order] = {}
        self.entries_by_id: dict[str, tuple[Order, Entry]] = {}
        self.products_by_master: dict[str, Product] = {p.master_id: p for p in CATALOG}
        self._seq = 0
        self._created_batches = 0

    # ------------------------------------------------------------------ lifecycle
    def reset(self, seed: int, volumes: Mapping[str, Any]) -> None:
        settings = KaspiSettings.from_volumes(volumes)
        days = volumes.get("kaspi_days")
        days = int(volumes.get("days", 30) if days is None else days)
        anchor = float(int(self.clock.start_epoch if self.clock.pinned else self.clock.now()))
        factory, orders = generate_orders(
            seed,
            int(volumes.get("kaspi_orders", 300)),
            days,
            anchor,
            settings.repeat_customers,
            settings.offer_missing_share,
        )
        with self.lock:
            self.settings = settings
            self.seed = seed
            self.bucket = LeakyBucket(settings.rate, settings.burst, self.clock)
            self.factory = factory
            self.orders = []
            self.raw = []
            self.by_code = {}
            self.by_id = {}
            self.entries_by_id = {}
            self._seq = 0
            self._created_batches = 0
            for order in orders:
                self._add(order)
            self.reset_counters()
        self.configure_faults(None)

    def _add(self, order: Order) -> None:
        order.seq = self._seq
        self._seq += 1
        self.orders.append(order)
        self.by_code[order.code] = order
        self.by_id[order.id] = order
        for entry in order.entries:
            self.entries_by_id[entry.id] = (order, entry)

    def entities(self) -> dict[str, int]:
        return {"orders": len(self.orders) + len(self.raw)}

    def fault_response(self, status: int, body: Any, method: str) -> Response:
        if body is not None:
            return super().fault_response(status, body, method)
        if status >= 500:
            html = (
                f"<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center>"
                "<hr><center>nginx</center></body></html>"
            )
            return Response(html.encode(), status_code=status, media_type="text/html")
        if status == 429:
            return error_response(429, "Too Many Requests")
        return error_response(status, "Injected error")

    # ------------------------------------------------------------------ rendering
    @staticmethod
    def _base(request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}/kaspi{KASPI_API_PATH}"

    def render_order(self, order: Order, base: str) -> JsonDict:
        link = f"{base}/orders/{order.id}"
        return {
            "type": "orders",
            "id": order.id,
            "attributes": copy.deepcopy(order.attributes),
            "relationships": {
                "user": {
                    "links": {"self": f"{link}/relationships/user", "related": f"{link}/user"},
                    "data": {"type": "customers", "id": order.customer.id},
                },
                "entries": {"links": {"self": f"{link}/relationships/entries", "related": f"{link}/entries"}},
            },
            "links": {"self": link},
        }

    @staticmethod
    def render_customer(order: Order, base: str) -> JsonDict:
        c = order.customer
        return {
            "type": "customers",
            "id": c.id,
            # the same shape as the order's customer (often `name` only)
            "attributes": {k: v for k, v in c.as_attributes().items() if k != "id"},
            "relationships": {},
            "links": {"self": f"{base}/customers/{c.id}"},
        }

    @staticmethod
    def render_entry(entry: Entry, base: str) -> JsonDict:
        p = entry.product
        link = f"{base}/orderentries/{entry.id}"
        attributes: JsonDict = {"unitType": p.unit_type}
        if p.unit_type == "MEASURABLE_PIECES":
            attributes["minAllowedWeight"] = p.weight
        attributes.update(
            quantity=entry.quantity,
            totalPrice=entry.total_price,
            weight=entry.weight,
            entryNumber=entry.entry_number,
            category={"code": p.category_code, "title": p.category_title},
            deliveryCost=entry.delivery_cost,
            basePrice=entry.base_price,
            isImeiRequired=p.imei,
        )
        if entry.with_offer:
            attributes["offer"] = {"code": p.sku, "name": p.merchant_name}
        return {
            "type": "orderentries",
            "id": entry.id,
            "attributes": attributes,
            "relationships": {
                "deliveryPointOfService": {
                    "links": {
                        "self": f"{link}/relationships/deliveryPointOfService",
                        "related": f"{link}/deliveryPointOfService",
                    },
                    "data": {"type": "pointofservices", "id": entry.point_of_service_id},
                },
                "product": {
                    "links": {"self": f"{link}/relationships/product", "related": f"{link}/product"},
                    "data": {"type": "masterproducts", "id": p.master_id},
                },
            },
            "links": {"self": link},
        }

    @staticmethod
    def render_master(p: Product, base: str) -> JsonDict:
        link = f"{base}/masterproducts/{p.master_id}"
        return {
            "type": "masterproducts",
            "id": p.master_id,
            "attributes": {"code": p.master_code, "name": p.name, "category": p.category_title},
            "relationships": {
                "merchantProduct": {
                    "links": {"self": f"{link}/relationships/merchantProduct", "related": f"{link}/merchantProduct"},
                    "data": None,
                }
            },
            "links": {"self": link},
        }

    @staticmethod
    def render_merchant(p: Product, base: str) -> JsonDict:
        return {
            "type": "merchantproducts",
            "id": p.merchant_id,
            "attributes": {"code": p.sku, "name": p.merchant_name},
            "relationships": {},
            "links": {"self": f"{base}/merchantproducts/{p.merchant_id}"},
        }

    # ------------------------------------------------------------------ HTTP
    def routes(self) -> list[BaseRoute]:
        api = KASPI_API_PATH
        return [
            Route(f"{api}/orders", self._handler("orders", self.list_orders), methods=["GET"]),
            Route(f"{api}/orders/{{oid}}", self._handler("orders/{id}", self.get_order), methods=["GET"]),
            Route(
                f"{api}/orders/{{oid}}/entries", self._handler("orders/{id}/entries", self.get_entries), methods=["GET"]
            ),
            Route(f"{api}/orderentries/{{eid}}", self._handler("orderentries/{id}", self.get_entry), methods=["GET"]),
            Route(
                f"{api}/orderentries/{{eid}}/product",
                self._handler("orderentries/{id}/product", self.get_entry_product),
                methods=["GET"],
            ),
            Route(
                f"{api}/masterproducts/{{pid}}/merchantProduct",
                self._handler("masterproducts/{id}/merchantProduct", self.get_merchant_product),
                methods=["GET"],
            ),
            Route(f"{api}/{{rest:path}}", self._handler("unknown", self.not_found), methods=["GET", "POST", "PUT"]),
        ]

    def _handler(self, method: str, serve: Serve) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            self.count_request(method)
            fault = await self.apply_faults(method)
            if fault is not None:
                return fault
            settings = self.settings
            if not request.headers.get("user-agent") and settings.no_user_agent_delay_s > 0:
                await asyncio.sleep(settings.no_user_agent_delay_s)
                return DroppedResponse(b'{"errors":[]}', media_type=JSONAPI)
            if request.headers.get("x-auth-token") != KASPI_AUTH_VALUE:
                return error_response(settings.auth_error_status, "Unauthorized")
            if not self.bucket.try_acquire():
                self.count_throttled()
                return error_response(429, "Too Many Requests")
            if settings.strict_media_types:
                if not _media_ok(request.headers.get("content-type", "")):
                    return error_response(415, f"Unsupported Media Type: use Content-Type {JSONAPI}")
                accept = request.headers.get("accept")
                if accept is not None and not _accepts_jsonapi(accept):
                    return error_response(406, f"Not Acceptable: accept {JSONAPI}")
            params = dict(parse_qsl(request.url.query, keep_blank_values=True))
            try:
                body: JsonDict = serve(request, params)
            except KaspiError as exc:
                return error_response(exc.status, exc.title)
            if self.faults.take_commit_then_drop(method):
                return DroppedResponse(json_dumps(body), media_type=JSONAPI, hold_s=self.faults.drop_hold_s)
            return JsonApiResponse(body)

        return handle

    def not_found(self, request: Request, params: Mapping[str, str]) -> JsonDict:
        raise KaspiError(404, ERR_NOT_FOUND)

    # ------------------------------------------------------------------ GET /orders
    def list_orders(self, request: Request, params: Mapping[str, str]) -> JsonDict:
        settings = self.settings
        number = _int_param(params, "page[number]", 0)
        size = _int_param(params, "page[size]", 1)
        if settings.require_paging:
            for name, value in (("page[number]", number), ("page[size]", size)):
                if value is None:
                    raise KaspiError(400, f"Required parameter {name} is empty")
        number = number or 0
        size = size or 20
        if size > settings.page_size_max:
            if settings.page_size_over == "clamp":
                size = settings.page_size_max
            else:
                raise KaspiError(400, f"Page size must not exceed {settings.page_size_max}")
        code = params.get(F_CODE) or None
        now_ms = int(self.clock.now() * 1000)
        ge = _int_param(params, F_GE, 0)
        le = _int_param(params, F_LE, 0)
        if ge is None and not (code and settings.code_lookup_without_date):
            raise KaspiError(400, ERR_GE_REQUIRED)
        if ge is not None:
            limit_ms = settings.max_window_days * DAY_MS
            end = now_ms if le is None or settings.window_mode == "lookback" else le
            width = end - ge
            if width > limit_ms:
                raise KaspiError(
                    400, f"Period of filter [orders][creationDate] must not exceed {settings.max_window_days} days"
                )
        upper = now_ms if le is None else le
        state = params.get(F_STATE) or None
        if state is not None and state not in STATES:
            raise KaspiError(400, f"Invalid value of filter [orders][state]: {state}")
        status = params.get(F_STATUS) or None
        if status is not None and status not in STATUSES:
            raise KaspiError(400, f"Invalid value of filter [orders][status]: {status}")
        delivery_type = params.get(F_DELIVERY_TYPE) or None
        if delivery_type is not None and delivery_type not in ("PICKUP", "DELIVERY"):
            raise KaspiError(400, f"Invalid value of filter [orders][deliveryType]: {delivery_type}")
        include = params.get(INCLUDE_ORDERS)
        with_users = False
        if include:
            targets = {t.strip() for t in include.split(",") if t.strip()}
            if targets - {"user"}:
                raise KaspiError(400, f"Invalid include: {include}")
            with_users = "user" in targets

        def matches(created: int, attrs: Mapping[str, Any]) -> bool:
            if ge is not None and not ge <= created <= upper:
                return False
            if state is not None and attrs.get("state") != state:
                return False
            if status is not None and attrs.get("status") != status:
                return False
            if code is not None and str(attrs.get("code")) != code:
                return False
            if delivery_type is not None:
                pickup = attrs.get("deliveryMode") in PICKUP_MODES
                return pickup == (delivery_type == "PICKUP")
            return True

        base = self._base(request)
        with self.lock:
            rows: list[tuple[int, int, Order | RawOrder]] = [
                (int(o.attributes["creationDate"]), o.seq, o)
                for o in self.orders
                if matches(int(o.attributes["creationDate"]), o.attributes)
            ]
            rows += [(r.created, r.seq, r) for r in self.raw if matches(r.created, r.attributes)]
            rows.sort(key=lambda row: (row[0], row[1]))
            total = len(rows)
            page = rows[number * size : (number + 1) * size]
            data: list[Any] = []
            included: list[JsonDict] = []
            seen: set[str] = set()
            for _created, _seq, item in page:
                if isinstance(item, RawOrder):
                    data.append(copy.deepcopy(item.doc))
                    continue
                data.append(self.render_order(item, base))
                if with_users and item.customer.id not in seen:
                    seen.add(item.customer.id)
                    included.append(self.render_customer(item, base))
        return {"data": data, "included": included, "meta": {"pageCount": math.ceil(total / size), "totalCount": total}}

    # ------------------------------------------------------------------ single resources
    def _order(self, oid: str) -> Order | RawOrder:
        with self.lock:
            order = self.by_id.get(oid)
            if order is not None:
                return order
            for raw in self.raw:
                if raw.id == oid:
                    return raw
        raise KaspiError(404, ERR_NOT_FOUND)

    def get_order(self, request: Request, params: Mapping[str, str]) -> JsonDict:
        order = self._order(str(request.path_params["oid"]))
        base = self._base(request)
        if isinstance(order, RawOrder):
            return {"data": copy.deepcopy(order.doc), "included": []}
        included = [self.render_customer(order, base)] if params.get(INCLUDE_ORDERS) == "user" else []
        with self.lock:
            return {"data": self.render_order(order, base), "included": included}

    def get_entries(self, request: Request, params: Mapping[str, str]) -> JsonDict:
        order = self._order(str(request.path_params["oid"]))
        if isinstance(order, RawOrder):
            return {"data": copy.deepcopy(order.entries), "included": []}
        base = self._base(request)
        return {"data": [self.render_entry(e, base) for e in order.entries], "included": []}

    def _entry(self, eid: str) -> Entry:
        with self.lock:
            found = self.entries_by_id.get(eid)
        if found is None:
            raise KaspiError(404, ERR_NOT_FOUND)
        return found[1]

    def get_entry(self, request: Request, params: Mapping[str, str]) -> JsonDict:
        entry = self._entry(str(request.path_params["eid"]))
        return {"data": self.render_entry(entry, self._base(request)), "included": []}

    def get_entry_product(self, request: Request, params: Mapping[str, str]) -> JsonDict:
        entry = self._entry(str(request.path_params["eid"]))
        return {"data": self.render_master(entry.product, self._base(request)), "included": []}

    def get_merchant_product(self, request: Request, params: Mapping[str, str]) -> JsonDict:
        product = self.products_by_master.get(str(request.path_params["pid"]))
        if product is None:
            raise KaspiError(404, ERR_NOT_FOUND)
        return {"data": self.render_merchant(product, self._base(request)), "included": []}

    # ------------------------------------------------------------------ control
    def control_routes(self) -> list[BaseRoute]:
        return [
            Route("/orders", self.control_dump, methods=["GET"]),
            Route("/orders", self.control_create, methods=["POST"]),
            Route("/orders/raw", self.control_raw, methods=["POST"]),
            Route("/orders/{code}", self.control_get, methods=["GET"]),
            Route("/orders/{code}/status", self.control_status, methods=["POST"]),
        ]

    def create_orders(self, count: int, created_at: int | None, repeat_share: float) -> list[str]:
        """``count`` new orders (APPROVED_BY_BANK), all created at ``created_at`` ms (default now)."""
        with self.lock:
            batch = self._created_batches
            self._created_batches += 1
            created = int(self.clock.now() * 1000) if created_at is None else created_at
            rng = random.Random(f"kaspi-created:{self.seed}:{batch}")
            top = max((int(o.code) for o in self.orders), default=580_000_000)
            codes = []
            for _ in range(count):
                top += rng.randint(1, 4000)
                customer = self.factory.pick_customer(rng, repeat_share)
                order = self.factory.make_order(rng, str(top), created, customer, status="APPROVED_BY_BANK")
                self._add(order)
                codes.append(order.code)
            return codes

    def set_status(self, code: str, status: str, state: str | None, force: bool, base: str) -> JsonDict:
        """Move an order to ``status`` (and the state that goes with it unless ``state`` is given)."""
        if status not in STATUSES:
            raise KaspiError(400, f"unknown status {status}")
        if state is not None and state not in STATES:
            raise KaspiError(400, f"unknown state {state}")
        with self.lock:
            order = self.by_code.get(code)
            if order is None:
                raise KaspiError(404, "order not found")
            current = order.attributes["status"]
            if not force:
                if current in ("CANCELLED", "RETURNED"):
                    raise KaspiError(409, f"order {code} is {current}: final")
                if current == "COMPLETED" and status not in RETURN_STATUSES:
                    raise KaspiError(409, f"order {code} is COMPLETED: only a return can follow")
            order.attributes["status"] = status
            order.attributes["state"] = state or (
                order.attributes["state"] if status == "CANCELLING" else state_for(status, order.attributes)
            )
            return self._dump_order(order, base)

    def _dump_order(self, order: Order, base: str) -> JsonDict:
        return {
            **self.render_order(order, base),
            "entries": [self.render_entry(e, base) for e in order.entries],
            "final": order.attributes["status"] in FINAL_STATUSES,
        }

    async def control_dump(self, request: Request) -> Response:
        base = self._base(request)
        with self.lock:
            rows: list[tuple[int, int, Any]] = [
                (int(o.attributes["creationDate"]), o.seq, self.render_order(o, base)) for o in self.orders
            ]
            rows += [(r.created, r.seq, copy.deepcopy(r.doc)) for r in self.raw]
        rows.sort(key=lambda row: (row[0], row[1]))
        return JsonResponse([doc for _c, _s, doc in rows])

    async def control_get(self, request: Request) -> Response:
        with self.lock:
            order = self.by_code.get(str(request.path_params["code"]))
            if order is None:
                return JsonResponse({"error": "order not found"}, status_code=404)
            return JsonResponse(self._dump_order(order, self._base(request)))

    async def control_create(self, request: Request) -> Response:
        try:
            body = await read_json(request)
        except ValueError:
            body = None
        body = {} if body is None else body
        if not isinstance(body, dict):
            return JsonResponse({"error": "body must be a JSON object"}, status_code=400)
        count, created_at, repeat = body.get("count", 1), body.get("created_at"), body.get("repeat_customers", 0.3)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 10_000:
            return JsonResponse({"error": "count must be an integer 0..10000"}, status_code=400)
        if created_at is not None and (isinstance(created_at, bool) or not isinstance(created_at, int)):
            return JsonResponse({"error": "created_at must be epoch milliseconds"}, status_code=400)
        if isinstance(repeat, bool) or not isinstance(repeat, int | float) or not 0 <= repeat <= 1:
            return JsonResponse({"error": "repeat_customers must be between 0 and 1"}, status_code=400)
        codes = self.create_orders(count, created_at, float(repeat))
        return JsonResponse({"codes": codes, "ids": [order_id(c) for c in codes]})

    async def control_status(self, request: Request) -> Response:
        try:
            body = await read_json(request)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            return JsonResponse({"error": 'body must be {"status": ..., "state"?: ...}'}, status_code=400)
        state = body.get("state")
        if state is not None and not isinstance(state, str):
            return JsonResponse({"error": "state must be a string"}, status_code=400)
        try:
            code = str(request.path_params["code"])
            order = self.set_status(code, body["status"], state, bool(body.get("force")), self._base(request))
        except KaspiError as exc:
            return JsonResponse({"error": exc.title}, status_code=exc.status)
        return JsonResponse(order)

    async def control_raw(self, request: Request) -> Response:
        try:
            body = await read_json(request)
        except ValueError:
            body = None
        entries: Mapping[str, Any] = {}
        if isinstance(body, dict) and isinstance(body.get("orders"), list):
            entries = body.get("entries") or {}
            body = body["orders"]
        if not isinstance(body, list) or not isinstance(entries, Mapping):
            return JsonResponse(
                {"error": 'body must be a list of order documents or {"orders": [...], "entries": {id: [...]}}'},
                status_code=400,
            )
        with self.lock:
            now_ms = int(self.clock.now() * 1000)
            for doc in body:
                raw = RawOrder(doc=doc, seq=self._seq, appended_ms=now_ms, entries=[])
                self._seq += 1
                listed = entries.get(raw.id or "") if raw.id else None
                raw.entries = list(listed) if isinstance(listed, list) else []
                self.raw.append(raw)
            total = len(self.raw)
        return JsonResponse({"raw_orders": total})
