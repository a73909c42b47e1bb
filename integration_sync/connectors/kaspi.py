"""Kaspi.kz Shop API v2 client (JSON:API): orders by creation-date windows, their entries, products.

- Headers: ``X-Auth-Token`` (a secret: redacted everywhere), ``Content-Type`` and ``Accept``
  ``application/vnd.api+json``, a ``User-Agent`` and a timeout (requests without one were seen hang).
- ``GET /orders`` needs ``filter[orders][creationDate][$ge]`` (epoch ms) on EVERY call, so a date
  range is split into windows of at most ``max_window_days`` (``$ge``/``$le`` inclusive, the next
  window starting 1 ms after), each read page by page (0-based) up to ``meta.pageCount``; the
  ``include[orders]=user`` customers are merged into their orders. A lookup by code sends ``$ge`` too.
- Entries carry ``offer{code,name}`` on many accounts (zero extra calls); otherwise the product is
  read from ``/masterproducts/{id}/merchantProduct`` (the id is in the entry's relationships: one
  call) or ``/orderentries/{id}/product``.
- JSON:API errors ``{"errors":[{"title"}]}`` → ``ApiError`` with the title; 401/403 → ``AuthError``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from integration_sync.connectors.errors import ApiError, ConfigError
from integration_sync.connectors.http import (
    ApiClient,
    ErrorInfo,
    HttpPolicy,
    ServiceClient,
    body_snippet,
    response_json,
)
from integration_sync.connectors.ratelimit import RateLimiter

logger = logging.getLogger(__name__)

SERVICE = "kaspi"
JSON_API = "application/vnd.api+json"
MAX_PAGE_SIZE = 100
DAY_MS = 86_400_000

DEFAULT_POLICY = HttpPolicy(
    timeout=30.0,
    connect_timeout=10.0,
    max_attempts=4,
    backoff_base=1.0,
    backoff_max=20.0,
    user_agent="integration_sync/0.1 (kaspi-orders; httpx)",
)


def parse_kaspi_error(response: httpx.Response) -> ErrorInfo:
    """``{"errors": [{"title", "detail", "code", "status"}]}``; anything else as text."""
    body = response_json(response)
    auth = response.status_code in (401, 403)
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        titles: list[str] = []
        code: str | None = None
        for error in body["errors"]:
            if not isinstance(error, dict):
                continue
            title = str(error.get("title") or "").strip()
            detail = str(error.get("detail") or "").strip()
            titles.append(f"{title}: {detail}" if title and detail and detail != title else title or detail)
            if code is None and error.get("code") not in (None, ""):
                code = str(error["code"])
        message = "; ".join(t for t in titles if t)
        if message:
            return ErrorInfo(code, message, auth=auth)
    if isinstance(body, dict) and (body.get("message") or body.get("error")):
        return ErrorInfo(None, str(body.get("message") or body.get("error")), auth=auth)
    return ErrorInfo(None, body_snippet(response), auth=auth)


# -- time -----------------------------------------------------------------------------------------


def to_epoch_ms(value: datetime) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("Kaspi date filters need an aware datetime")
    return round(value.timestamp() * 1000)


def from_epoch_ms(value: int | float) -> datetime:
    return datetime.fromtimestamp(float(value) / 1000, UTC)


def split_windows(created_from: datetime, created_to: datetime, max_days: int) -> list[tuple[int, int]]:
    """``[$ge, $le]`` epoch-ms pairs covering the range, each at most ``max_days`` wide; the next
    starts 1 ms after the previous ends (both bounds are inclusive on Kaspi's side)."""
    if max_days < 1:
        raise ValueError("max_days must be at least 1")
    start, end = to_epoch_ms(created_from), to_epoch_ms(created_to)
    if end < start:
        raise ValueError("created_to is before created_from")
    width = max_days * DAY_MS
    windows: list[tuple[int, int]] = []
    while start <= end:
        stop = min(start + width - 1, end)
        windows.append((start, stop))
        start = stop + 1
    return windows


# -- models ---------------------------------------------------------------------------------------


def _ms_to_datetime(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return from_epoch_ms(value)
    if isinstance(value, str) and value.strip().isdigit():
        return from_epoch_ms(int(value))
    return value


def _to_str(value: Any) -> Any:
    return None if value is None else str(value)


MsDatetime = Annotated[datetime, BeforeValidator(_ms_to_datetime)]
OptMsDatetime = Annotated[datetime | None, BeforeValidator(_ms_to_datetime)]
OptStr = Annotated[str | None, BeforeValidator(_to_str)]


class KaspiModel(BaseModel):
    """camelCase on the wire, snake_case here; extra attributes kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)


class KaspiCustomer(KaspiModel):
    id: OptStr = None
    name: OptStr = None
    first_name: OptStr = None
    last_name: OptStr = None
    cell_phone: OptStr = None

    @property
    def full_name(self) -> str:
        parts = [p for p in (self.first_name, self.last_name) if p]
        return " ".join(parts) or (self.name or "")


class KaspiAddress(KaspiModel):
    formatted_address: OptStr = None
    town: OptStr = None
    street_name: OptStr = None
    street_number: OptStr = None
    district: OptStr = None
    building: OptStr = None
    apartment: OptStr = None
    latitude: float | None = None
    longitude: float | None = None


class KaspiOrder(KaspiModel):
    """One order: its JSON:API ``id`` (base64 of the code), typed attributes, the raw attributes,
    and the included ``user`` when it was asked for."""

    id: str
    code: Annotated[str, BeforeValidator(_to_str)]
    total_price: float | None = None
    payment_mode: OptStr = None
    creation_date: MsDatetime
    state: OptStr = None
    status: OptStr = None
    customer: KaspiCustomer | None = None
    delivery_address: KaspiAddress | None = None
    delivery_mode: OptStr = None
    is_kaspi_delivery: bool | None = None
    planned_delivery_date: OptMsDatetime = None
    delivery_cost_for_seller: float | None = None
    pre_order: bool | None = None
    attributes: dict[str, Any] = Field(default_factory=dict, alias="attributes")
    user: KaspiCustomer | None = Field(default=None, alias="user")
    # Why the document did not fit the typed model (the raw attributes are kept all the same, so the
    # flow can report the order as invalid with its reason instead of the whole load failing).
    problems: list[str] = Field(default_factory=list)

    @classmethod
    def from_resource(cls, resource: Mapping[str, Any], users: Mapping[str, Mapping[str, Any]]) -> KaspiOrder:
        attributes = resource.get("attributes")
        attributes = dict(attributes) if isinstance(attributes, Mapping) else {}
        user: dict[str, Any] | None = None
        relationships = resource.get("relationships")
        link = relationships.get("user") if isinstance(relationships, Mapping) else None
        data = link.get("data") if isinstance(link, Mapping) else None
        if isinstance(data, Mapping) and data.get("id") is not None:
            found = users.get(str(data["id"]))
            if found is not None:
                user = {"id": str(data["id"]), **found}
        document = {**attributes, "id": str(resource.get("id")), "attributes": attributes, "user": user}
        try:
            return cls.model_validate(document)
        except ValidationError as exc:
            return cls.model_construct(
                id=str(resource.get("id")),
                code=str(attributes.get("code") or ""),
                creation_date=None,  # type: ignore[arg-type]  # a document that fails validation may lack one
                attributes=attributes,
                problems=[f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()],
            )

    def attributes_dict(self) -> dict[str, Any]:
        """The attributes exactly as Kaspi sent them (creationDate in ms)."""
        return dict(self.attributes)


class KaspiOffer(KaspiModel):
    code: OptStr = None
    name: OptStr = None


class KaspiProduct(KaspiModel):
    """A master product or the merchant's product (``code``: the SKU, ``name``)."""

    id: OptStr = None
    type: OptStr = None
    code: OptStr = None
    name: OptStr = None


class KaspiEntry(KaspiModel):
    """One order line; ``product_code``/``product_name`` come from ``offer``, else from the
    product endpoints (``product_source`` says which)."""

    id: str
    quantity: int | float | None = None
    base_price: float | None = None
    total_price: float | None = None
    entry_number: int | None = None
    unit_type: OptStr = None
    category: dict[str, Any] | None = None
    offer: KaspiOffer | None = None
    product_id: OptStr = None
    product_code: OptStr = None
    product_name: OptStr = None
    product_source: OptStr = None
    attributes: dict[str, Any] = Field(default_factory=dict, alias="attributes")

    @classmethod
    def from_resource(cls, resource: Mapping[str, Any]) -> KaspiEntry:
        attributes = resource.get("attributes")
        attributes = dict(attributes) if isinstance(attributes, Mapping) else {}
        relationships = resource.get("relationships")
        product = relationships.get("product") if isinstance(relationships, Mapping) else None
        data = product.get("data") if isinstance(product, Mapping) else None
        product_id = data.get("id") if isinstance(data, Mapping) else None
        document = {**attributes, "id": str(resource.get("id")), "attributes": attributes, "productId": product_id}
        try:
            entry = cls.model_validate(document)
        except ValidationError:
            # kept with its raw attributes: the flow rejects the order with the line's reason
            return cls.model_construct(id=str(resource.get("id")), attributes=attributes, product_id=product_id)
        if entry.offer is not None and entry.offer.code:
            entry.product_code = entry.offer.code
            entry.product_name = entry.offer.name
            entry.product_source = "offer"
        return entry

    def as_row(self) -> dict[str, Any]:
        """A plain dict for storage: code, name, quantity, prices, and where the code came from."""
        return {
            "id": self.id,
            "code": self.product_code,
            "name": self.product_name,
            "quantity": self.quantity,
            "base_price": self.base_price,
            "total_price": self.total_price,
            "entry_number": self.entry_number,
            "unit_type": self.unit_type,
            "category": (self.category or {}).get("title") or (self.category or {}).get("code"),
            "product_source": self.product_source,
        }


@dataclass
class KaspiOrderList:
    """Every order of a range, with Kaspi's own count (sum of each window's ``meta.totalCount``)."""

    orders: list[KaspiOrder] = field(default_factory=list)
    total_count: int = 0
    windows: int = 0
    pages: int = 0


# -- the client -----------------------------------------------------------------------------------


def _resources(data: Any) -> list[Mapping[str, Any]]:
    items = data.get("data") if isinstance(data, Mapping) else None
    if isinstance(items, Mapping):
        return [items]
    return [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class KaspiClient(ServiceClient):
    """A merchant's Kaspi Shop API (``base_url`` = ``https://kaspi.kz/shop/api/v2``)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        page_size: int = MAX_PAGE_SIZE,
        max_window_days: int = 14,
        rate_per_s: float = 6.0,
        burst: int = 1,
        rate_state_path: str | Path | None = None,
        policy: HttpPolicy | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        if not base_url or not token or not token.strip():
            raise ConfigError(SERVICE, "base_url and token are required")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError(SERVICE, f"page_size must be within 1..{MAX_PAGE_SIZE}")
        if max_window_days < 1:
            raise ConfigError(SERVICE, "max_window_days must be at least 1")
        self.page_size = page_size
        self.max_window_days = max_window_days
        self.limiter = limiter or RateLimiter(rate_per_s, burst, state_path=rate_state_path, name=SERVICE)
        self._merchant_products: dict[str, KaspiProduct | None] = {}
        self._api = ApiClient(
            SERVICE,
            base_url.rstrip("/") + "/",
            policy=policy or DEFAULT_POLICY,
            limiter=self.limiter,
            secrets=(token.strip(),),
            headers={"X-Auth-Token": token.strip(), "Accept": JSON_API, "Content-Type": JSON_API},
            parse_error=parse_kaspi_error,
        )

    def _get(self, path: str, params: list[tuple[str, Any]] | None = None, *, endpoint: str) -> Any:
        response = self._api.request("GET", path, idempotent=True, params=params, endpoint=endpoint)
        if response.status_code == 204 or not response.content.strip():
            return None
        return self._api.parse_json(response)

    def _get_optional(self, path: str, *, endpoint: str) -> Any:
        """A GET whose 404 means "none" (a product without a merchant product, say)."""
        try:
            return self._get(path, endpoint=endpoint)
        except ApiError as exc:
            if type(exc) is not ApiError or exc.status != 404:
                raise
        return None

    # -- orders ----------------------------------------------------------------------------------

    def _order_pages(
        self, window: tuple[int, int], filters: list[tuple[str, Any]], include_user: bool
    ) -> Iterator[tuple[list[KaspiOrder], int | None, int | None]]:
        """(orders, pageCount, totalCount) of each page of one window."""
        number = 0
        while True:
            params: list[tuple[str, Any]] = [
                ("page[number]", number),
                ("page[size]", self.page_size),
                ("filter[orders][creationDate][$ge]", window[0]),
                ("filter[orders][creationDate][$le]", window[1]),
                *filters,
            ]
            if include_user:
                params.append(("include[orders]", "user"))
            data = self._get("orders", params, endpoint="orders")
            users: dict[str, Mapping[str, Any]] = {}
            included = data.get("included") if isinstance(data, Mapping) else None
            for item in included if isinstance(included, list) else []:
                if isinstance(item, Mapping) and item.get("id") is not None:
                    attributes = item.get("attributes")
                    users[str(item["id"])] = attributes if isinstance(attributes, Mapping) else {}
            orders = [KaspiOrder.from_resource(resource, users) for resource in _resources(data)]
            meta = data.get("meta") if isinstance(data, Mapping) else None
            page_count = _int(meta.get("pageCount")) if isinstance(meta, Mapping) else None
            total = _int(meta.get("totalCount")) if isinstance(meta, Mapping) else None
            yield orders, page_count, total
            number += 1
            if not orders or page_count is None or number >= page_count:
                return

    def _filters(self, state: str | None, status: str | None, code: str | None) -> list[tuple[str, Any]]:
        filters: list[tuple[str, Any]] = []
        if state:
            filters.append(("filter[orders][state]", state))
        if status:
            filters.append(("filter[orders][status]", status))
        if code:
            filters.append(("filter[orders][code]", code))
        return filters

    def iter_orders(
        self,
        created_from: datetime,
        created_to: datetime,
        *,
        state: str | None = None,
        status: str | None = None,
        code: str | None = None,
        include_user: bool = True,
    ) -> Iterator[KaspiOrder]:
        """Orders created in ``[created_from, created_to]`` (aware datetimes), window by window and
        page by page, each order once (by code)."""
        yield from self._collect(created_from, created_to, state, status, code, include_user, None)

    def list_orders(
        self,
        created_from: datetime,
        created_to: datetime,
        *,
        state: str | None = None,
        status: str | None = None,
        code: str | None = None,
        include_user: bool = True,
    ) -> KaspiOrderList:
        """``iter_orders`` collected, with Kaspi's ``totalCount`` summed over the windows."""
        result = KaspiOrderList()
        result.orders = list(self._collect(created_from, created_to, state, status, code, include_user, result))
        return result

    def _collect(
        self,
        created_from: datetime,
        created_to: datetime,
        state: str | None,
        status: str | None,
        code: str | None,
        include_user: bool,
        report: KaspiOrderList | None,
    ) -> Iterator[KaspiOrder]:
        filters = self._filters(state, status, code)
        seen: set[str] = set()
        for window in split_windows(created_from, created_to, self.max_window_days):
            if report is not None:
                report.windows += 1
            counted = False
            for orders, _, total in self._order_pages(window, filters, include_user):
                if report is not None:
                    report.pages += 1
                    if not counted and total is not None:
                        report.total_count += total
                        counted = True
                for order in orders:
                    if order.code not in seen:
                        seen.add(order.code)
                        yield order

    def get_order_by_code(
        self,
        code: str,
        *,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        include_user: bool = True,
    ) -> KaspiOrder | None:
        """The order with this code. Kaspi needs a creation-date range even here: by default the
        last ``max_window_days`` (one request); a wider range is searched newest window first."""
        end = created_to or datetime.now(UTC)
        start = created_from or end - timedelta(days=self.max_window_days) + timedelta(milliseconds=1)
        filters = self._filters(None, None, code)
        for window in reversed(split_windows(start, end, self.max_window_days)):
            for orders, _, _ in self._order_pages(window, filters, include_user):
                for order in orders:
                    if order.code == code:
                        return order
        return None

    # -- entries and products --------------------------------------------------------------------

    def get_entries(self, order_id: str, *, resolve_products: bool = True) -> list[KaspiEntry]:
        """The lines of an order (its JSON:API id). Lines without ``offer`` get their product code
        and name from the product endpoints when ``resolve_products``."""
        data = self._get(f"orders/{order_id}/entries", endpoint="orders/{id}/entries")
        entries = [KaspiEntry.from_resource(resource) for resource in _resources(data)]
        if resolve_products:
            for entry in entries:
                if entry.product_code is None:
                    self._resolve_product(entry)
        return entries

    def get_entry_product(self, entry_id: str) -> KaspiProduct | None:
        """``GET /orderentries/{id}/product``: the line's master product."""
        data = self._get_optional(f"orderentries/{entry_id}/product", endpoint="orderentries/{id}/product")
        return _product(data)

    def get_merchant_product(self, master_product_id: str) -> KaspiProduct | None:
        """``GET /masterproducts/{id}/merchantProduct``: the merchant's SKU and name (cached)."""
        if master_product_id not in self._merchant_products:
            path = f"masterproducts/{master_product_id}/merchantProduct"
            data = self._get_optional(path, endpoint="masterproducts/{id}/merchantProduct")
            self._merchant_products[master_product_id] = _product(data)
        return self._merchant_products[master_product_id]

    def _resolve_product(self, entry: KaspiEntry) -> None:
        master: KaspiProduct | None = None
        master_id = entry.product_id
        if master_id is None:
            master = self.get_entry_product(entry.id)
            master_id = master.id if master is not None else None
        if master_id:
            merchant = self.get_merchant_product(master_id)
            if merchant is not None and merchant.code:
                entry.product_code, entry.product_name = merchant.code, merchant.name
                entry.product_source = "merchantProduct"
                return
        if master is None and entry.product_id is not None:
            master = self.get_entry_product(entry.id)
        if master is not None and master.code:
            entry.product_code, entry.product_name = master.code, master.name
            entry.product_source = "masterproduct"

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> KaspiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _product(data: Any) -> KaspiProduct | None:
    resources = _resources(data)
    if not resources:
        return None
    resource = resources[0]
    attributes = resource.get("attributes")
    attributes = attributes if isinstance(attributes, Mapping) else {}
    return KaspiProduct.model_validate(
        {**attributes, "id": _to_str(resource.get("id")), "type": _to_str(resource.get("type"))}
    )


__all__ = [
    "KaspiAddress",
    "KaspiClient",
    "KaspiCustomer",
    "KaspiEntry",
    "KaspiOffer",
    "KaspiOrder",
    "KaspiOrderList",
    "KaspiProduct",
    "from_epoch_ms",
    "parse_kaspi_error",
    "split_windows",
    "to_epoch_ms",
]
