"""Bitrix CMS shop emulator under ``/bitrix-shop``: what the shop module of issue 13 does (THE CONTRACT).

- ``POST /bitrix-shop/bitrix/tools/webhook/status`` and ``GET .../export`` (``BITRIX_WEBHOOK_URL``), key in
  ``X-Api-Key`` (401 otherwise); ``status``: 404 unknown order, 422 unknown status, 400 a malformed body,
  ``changed: false`` when already there; ``export``: ``entity=orders|users|products``, ``date_from``/
  ``date_to`` (YYYY-MM-DD, inclusive, UTC+5; on DATE_INSERT / DATE_REGISTER), ``page`` from 1,
  ``page_size`` <= 500 (400 otherwise), ordered by ID; ``pages`` is 0 when nothing matches.
- Every save of an order (a checkout, an admin's status or paid change, our status push) sends
  ``order.saved`` to the subscribed URL from a background thread, signed ``X-Signature: sha256=<hex>``
  (HMAC-SHA256 of the raw body with WEBHOOK_TOKEN), or with ``token`` in the body when
  ``shop_legacy_token``. The body is built at save time; a non-2xx answer is re-sent after 1, 5 and
  30 min, then every 30 min up to ``MAX_ATTEMPTS`` (the shop agent's queue), delays x ``time_scale``.
- Controls under ``/_sandbox/bitrix-shop``: ``POST|DELETE /subscribe {"url"}``, ``GET /deliveries``,
  ``POST /orders {"count"}`` (checkouts), ``GET /orders/{id}``, ``POST /orders/{id}/status
  {"status_id"?, "payed"?}`` (an admin's save), ``POST /ping`` (the seed's ``{"event": "test"}``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
from collections.abc import Mapping
from datetime import date, datetime
from datetime import time as dtime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from integration_sync.sandbox.bitrix_shop_data import (
    KZ,
    PRODUCTS,
    RAW_MARK,
    STATUSES,
    OrderMaker,
    ShopOrder,
    User,
    generate,
    iso_kz,
    move_status,
)
from integration_sync.sandbox.core import Clock, JsonDict, JsonResponse, Service, json_dumps, read_json
from integration_sync.sandbox.outbox import Delivery, Outbox

SHOP_KEY: Final = "sandbox-bitrix-shop-key"
SHOP_WEBHOOK_TOKEN: Final = "sandbox-bitrix-shop-webhook-token"  # noqa: S105 (published, sandbox only)
ENDPOINT: Final = "/bitrix/tools/webhook/"
RETRY_DELAYS_S: Final = (60.0, 300.0, 1800.0)
MAX_ATTEMPTS: Final = 8
ANSWER_TIMEOUT_S: Final = 5.0
IDLE_EXIT_S: Final = 2.0
PAGE_SIZE_MAX: Final = 500


def shop_env(base: str) -> dict[str, str]:
    """The shop's settings for the sandbox served at ``base``."""
    root = f"{base.rstrip('/')}/bitrix-shop"
    return {
        "BITRIX_WEBHOOK_URL": f"{root}{ENDPOINT}",
        "BITRIX_WEBHOOK_KEY": SHOP_KEY,
        "WEBHOOK_TOKEN": SHOP_WEBHOOK_TOKEN,
        "CMS_SHOP_URL": root,
    }


def sign(body: bytes, token: str = SHOP_WEBHOOK_TOKEN) -> str:
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def encode(payload: Mapping[str, Any], raw_name: bytes | None) -> bytes:
    """UTF-8 JSON, with a NAME from the old latin1 days put in as its raw (non-UTF-8) bytes."""
    body = json_dumps(payload)
    if raw_name is not None:
        body = body.replace(json_dumps(RAW_MARK), b'"' + raw_name + b'"')
    return body


def _error(status: int, message: str) -> Response:
    return JsonResponse({"ok": False, "error": message}, status_code=status)


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value) if len(value) == 10 else _bad_date(name)
    except ValueError:
        return _bad_date(name)


def _bad_date(name: str) -> date:
    raise ValueError(f"{name} must be YYYY-MM-DD")


class ShopSender(Outbox):
    """The shop agent: sends queued events, retries after 1, 5, 30 min, then every 30 min, up to
    MAX_ATTEMPTS; a 2xx ends it, and so does a changed or removed receiver address."""

    thread_name = "bitrix-shop-agent"

    def __init__(self) -> None:
        super().__init__(1 / 300, ANSWER_TIMEOUT_S)
        self.url: str | None = None
        self.legacy = False  # the seed's format: the token inside the body, no signature

    def on_reset(self) -> None:
        self.url = None

    def subscribe(self, url: str | None) -> None:
        with self.lock:
            self.url = url
        if url is None:
            self.drop_queue()

    def submit(self, order_id: int | None, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        if not self.legacy:
            headers["X-Signature"] = sign(body)
        with self.lock:
            if self.url is None:
                return  # no receiver configured: the module sends nothing
            self.enqueue(self.url, body, headers, order_id)

    def record(self, delivery: Delivery) -> JsonDict:
        return {"order_id": delivery.context}

    def retry_delay(self, delivery: Delivery, status: int | None) -> float | None:
        if delivery.attempt >= MAX_ATTEMPTS or self.url != delivery.url:
            return None  # given up, or the receiver was changed or removed
        return RETRY_DELAYS_S[min(delivery.attempt, len(RETRY_DELAYS_S)) - 1]


class BitrixShopService(Service):
    """The shop: its orders, users and catalog, the key-protected endpoint and the order webhooks."""

    name = "bitrix-shop"

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.sender = ShopSender()
        self.users: list[User] = []
        self.orders: dict[int, ShopOrder] = {}
        self.legacy_token = False
        self._maker = OrderMaker(random.Random(0), [])

    def reset(self, seed: int, volumes: Mapping[str, Any]) -> None:
        with self.lock:
            days = volumes.get("shop_days")
            days = int(volumes.get("days", 30) if days is None else days)
            # a pinned clock gives the same data whatever time the reset takes (as the ABCP and Kaspi seeds)
            anchor = float(int(self.clock.start_epoch if self.clock.pinned else self.clock.now()))
            self.users, orders = generate(seed, int(volumes.get("shop_orders", 400)), days, anchor)
            self.orders = {o.id: o for o in orders}
            self._maker = OrderMaker(random.Random(f"bitrix-shop-new:{seed}"), self.users)
            self._maker.next_id = max(self.orders, default=self._maker.next_id - 1) + 1
            self.legacy_token = self.sender.legacy = bool(volumes.get("shop_legacy_token", False))
            self.sender.reset(float(volumes.get("shop_hook_time_scale", 1 / 300)))
            self.faults.clear()
        self.reset_counters()

    def entities(self) -> dict[str, int]:
        with self.lock:
            return {"orders": len(self.orders), "users": len(self.users), "products": len(PRODUCTS)}

    # ----------------------------------------------------------------------------------- the module
    def saved(self, order: ShopOrder, is_new: bool) -> None:
        """OnSaleOrderSaved: queue the order as it is now (caller holds the lock)."""
        payload: JsonDict = {"event": "order.saved", "is_new": is_new, "sent_at": iso_kz(self.clock.now())}
        self.sender.submit(order.id, encode(self._stamp({**payload, "order": order.render()}), order.raw_name))

    def _stamp(self, payload: JsonDict) -> JsonDict:
        return {"token": SHOP_WEBHOOK_TOKEN, **payload} if self.legacy_token else payload

    def routes(self) -> list[BaseRoute]:
        return [
            Route(f"{ENDPOINT}status", self.h_status, methods=["POST"]),
            Route(f"{ENDPOINT}export", self.h_export, methods=["GET"]),
        ]

    async def _guard(self, request: Request, method: str) -> Response | None:
        self.count_request(method)
        faulted = await self.apply_faults(method)
        if faulted is not None:
            return faulted
        if not hmac.compare_digest(request.headers.get("x-api-key", "").encode(), SHOP_KEY.encode()):
            return _error(401, "invalid key")
        return None

    async def h_status(self, request: Request) -> Response:
        refused = await self._guard(request, "status")
        if refused is not None:
            return refused
        try:
            body = await read_json(request)
        except ValueError:
            return _error(400, "body must be JSON")
        if not isinstance(body, dict):
            return _error(400, "body must be an object")
        order_id, status_id = body.get("order_id"), body.get("status_id")
        if isinstance(order_id, bool) or not isinstance(order_id, int) or not isinstance(status_id, str):
            return _error(400, "order_id (integer) and status_id (string) are required")
        return self.set_status(order_id, status_id)

    def set_status(self, order_id: int, status_id: str, payed: bool | None = None) -> Response:
        """Order::load / setField / save: "already there" is success, an unknown order or status is not."""
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                return _error(404, "order not found")
            if status_id not in STATUSES:
                return _error(422, f"unknown status {status_id}"[:80])
            changed = move_status(order, status_id, self.clock.now())
            if payed is not None and payed != order.payed:
                if not changed:
                    order.old_status_id = None  # OLD_STATUS_ID is the old value of a status changed in this save
                order.payed, order.updated, changed = payed, max(order.updated, self.clock.now()), True
            if changed:
                self.saved(order, is_new=False)
        return JsonResponse({"ok": True, "order_id": order_id, "status_id": status_id, "changed": changed})

    async def h_export(self, request: Request) -> Response:
        refused = await self._guard(request, "export")
        if refused is not None:
            return refused
        q = request.query_params
        entity = q.get("entity")
        if entity not in ("orders", "users", "products"):
            return _error(400, "entity must be orders, users or products")
        try:
            lo, hi = _day(q.get("date_from"), "date_from"), _day(q.get("date_to"), "date_to")
            page, size = int(q.get("page", "1")), int(q.get("page_size", "200"))
        except ValueError as exc:
            return _error(400, str(exc) if "YYYY" in str(exc) else "page and page_size must be integers")
        if page < 1 or not 1 <= size <= PAGE_SIZE_MAX:
            return _error(400, f"page must be >= 1 and page_size 1..{PAGE_SIZE_MAX}")
        start = datetime.combine(lo, dtime(), KZ).timestamp() if lo else -math.inf
        end = datetime.combine(hi, dtime(23, 59, 59), KZ).timestamp() + 1 if hi else math.inf
        with self.lock:
            if entity == "orders":
                rows = [(o.render(), o.raw_name) for i, o in sorted(self.orders.items()) if start <= o.inserted < end]
            elif entity == "users":
                rows = [(u.render(), None) for u in self.users if start <= u.registered < end]
            else:
                rows = [(p.render(), None) for _, p in sorted(PRODUCTS.items())]
        chunk = rows[(page - 1) * size : page * size]
        items = b",".join(encode(item, raw) for item, raw in chunk)
        head = json_dumps({"page": page, "pages": math.ceil(len(rows) / size), "total": len(rows)})
        return Response(b'{"items":[' + items + b"]," + head[1:], media_type="application/json")

    # ----------------------------------------------------------------------------------- controls
    def control_routes(self) -> list[BaseRoute]:
        return [
            Route("/subscribe", self.c_subscribe, methods=["POST", "DELETE"]),
            Route("/deliveries", self.c_deliveries, methods=["GET"]),
            Route("/orders", self.c_place, methods=["POST"]),
            Route("/orders/{id:int}", self.c_order, methods=["GET"]),
            Route("/orders/{id:int}/status", self.c_status, methods=["POST"]),
            Route("/ping", self.c_ping, methods=["POST"]),
        ]

    async def c_subscribe(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.sender.subscribe(None)
            return JsonResponse({"ok": True, "url": None})
        body = await _json_object(request)
        url = body.get("url") if body else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return JsonResponse({"error": "url (http or https) is required"}, status_code=400)
        self.sender.subscribe(url)
        return JsonResponse({"ok": True, "url": url})

    async def c_deliveries(self, request: Request) -> Response:
        return JsonResponse(self.sender.describe())

    async def c_place(self, request: Request) -> Response:
        body = await _json_object(request) or {}
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
            return JsonResponse({"error": "count must be an integer 1..1000"}, status_code=400)
        with self.lock:
            placed = []
            for _ in range(count):
                order = self._maker.make(self.clock.now())
                self.orders[order.id] = order
                self.saved(order, is_new=True)
                placed.append(order.id)
        return JsonResponse({"placed": placed})

    async def c_order(self, request: Request) -> Response:
        with self.lock:
            order = self.orders.get(int(request.path_params["id"]))
            if order is None:
                return _error(404, "order not found")
            return Response(encode(order.render(), order.raw_name), media_type="application/json")

    async def c_status(self, request: Request) -> Response:
        body = await _json_object(request)
        status_id, payed = (body or {}).get("status_id"), (body or {}).get("payed")
        if (status_id is not None and not isinstance(status_id, str)) or payed not in (None, "Y", "N"):
            return JsonResponse({"error": "status_id must be a string, payed Y or N"}, status_code=400)
        order_id = int(request.path_params["id"])
        with self.lock:
            order = self.orders.get(order_id)
            current = order.status_id if order else ""
        return self.set_status(order_id, status_id or current, None if payed is None else payed == "Y")

    async def c_ping(self, request: Request) -> Response:
        payload: JsonDict = {"event": "test", "sent_at": iso_kz(self.clock.now())}
        self.sender.submit(None, json_dumps(self._stamp(payload)))
        return JsonResponse({"ok": True})


async def _json_object(request: Request) -> JsonDict | None:
    try:
        body = await read_json(request)
    except (ValueError, json.JSONDecodeError):
        return None
    return body if isinstance(body, dict) else None
