"""The flower shop's own Bitrix CMS endpoint (``BITRIX_WEBHOOK_URL``, key ``BITRIX_WEBHOOK_KEY``).

- The key travels in ``X-Api-Key`` and is redacted from every message and log line.
- ``POST {url}status`` sets an order's status. Setting the status an order already has is a success
  (``changed: false``), so the request is idempotent and the policy may send it again after a 5xx or
  a lost answer. 404 (unknown order) and 422 (unknown status) raise `ShopRefused` with the shop's
  message: the record's fault, not an outage. 401 raises `AuthError`.
- ``GET {url}export`` reads orders, users or products page by page (``page`` from 1, ``page_size`` ≤
  500), inclusive dates in UTC+5. Each page is parsed with `decode_body`: a NAME from the site's
  windows-1251 days arrives as raw bytes and is read as cp1251, its path reported with the item.
- The shop is a small PHP site: 5 requests/s by default.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final, Literal

import httpx

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
from integration_sync.webhooks.bitrix_order import decode_body
from integration_sync.webhooks.limits import PayloadRefused

logger = logging.getLogger(__name__)

SERVICE: Final = "bitrix_shop"
URL_VAR: Final = "BITRIX_WEBHOOK_URL"
KEY_VAR: Final = "BITRIX_WEBHOOK_KEY"
PAGE_SIZE_MAX: Final = 500
REFUSED_STATUSES: Final = frozenset({404, 422})

Entity = Literal["orders", "users", "products"]
ENTITIES: Final = ("orders", "users", "products")

DEFAULT_POLICY = HttpPolicy(
    timeout=30.0,
    connect_timeout=10.0,
    max_attempts=4,
    backoff_base=1.0,
    backoff_max=20.0,
    user_agent="integration_sync/0.1 (cms_orders; httpx)",
)


class ShopRefused(ApiError):
    """The shop refused one record (404 unknown order, 422 unknown status): ``message`` is the shop's."""


def parse_shop_error(response: httpx.Response) -> ErrorInfo:
    """``{"ok": false, "error": "order not found"}``; anything else as text."""
    body = response_json(response)
    if isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"].strip():
        return ErrorInfo(None, body["error"].strip(), auth=response.status_code in (401, 403))
    return ErrorInfo(None, body_snippet(response))


@dataclass(frozen=True)
class ExportItem:
    """One exported record as the shop sent it, and the dotted paths (inside the record) of the
    strings that were not UTF-8 and were read as cp1251."""

    data: dict[str, Any]
    recoded: tuple[str, ...] = ()


@dataclass
class ExportStats:
    """What the last `export` saw: pages read, records given, restarts after the data moved."""

    pages: int = 0
    items: int = 0
    duplicates: int = 0
    restarts: int = 0


class BitrixShopClient(ServiceClient):
    """The shop's key-protected endpoint (see the module docstring)."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        rate_per_s: float = 5.0,
        burst: int = 5,
        rate_state_path: str | Path | None = None,
        policy: HttpPolicy | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        if not url or not url.strip():
            raise ConfigError(SERVICE, f"{URL_VAR} is not set")
        if not key or not key.strip():
            raise ConfigError(SERVICE, f"{KEY_VAR} is not set")
        self.limiter = limiter or RateLimiter(rate_per_s, burst, state_path=rate_state_path, name=SERVICE)
        self.last_export = ExportStats()
        self._api = ApiClient(
            SERVICE,
            url.strip().rstrip("/") + "/",
            policy=policy or DEFAULT_POLICY,
            limiter=self.limiter,
            secrets=(key.strip(),),
            headers={"X-Api-Key": key.strip(), "Accept": "application/json"},
            parse_error=parse_shop_error,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> BitrixShopClient:
        """From ``BITRIX_WEBHOOK_URL`` and ``BITRIX_WEBHOOK_KEY`` (not the portal's ``*B24_WEBHOOK_URL``)."""
        source = os.environ if env is None else env
        return cls(source.get(URL_VAR, ""), source.get(KEY_VAR, ""), **options)

    # -- status ----------------------------------------------------------------------------------

    def set_status(self, order_id: int, status_id: str) -> bool:
        """Set an order's status; True when it changed, False when the order already had it."""
        if isinstance(order_id, bool) or not isinstance(order_id, int) or order_id <= 0:
            raise ValueError(f"order_id must be a positive integer, not {order_id!r}")
        if not isinstance(status_id, str) or not status_id.strip():
            raise ValueError("status_id must be a non-empty string")
        refused: ApiError | None = None
        try:
            body = {"order_id": order_id, "status_id": status_id}
            response = self._api.request("POST", "status", idempotent=True, json=body, endpoint="status")
        except ApiError as exc:
            if type(exc) is not ApiError or exc.status not in REFUSED_STATUSES:
                raise
            refused = exc
        if refused is not None:  # raised outside the except block: nothing chained
            raise ShopRefused(
                SERVICE, refused.message, status=refused.status, code=refused.code, request=refused.request
            )
        answer = self._api.parse_json(response)
        changed = answer.get("changed") if isinstance(answer, dict) else None
        if not isinstance(answer, dict) or answer.get("ok") is not True or not isinstance(changed, bool):
            snippet = self._api.redact(body_snippet(response, 200))
            raise ApiError(SERVICE, f"unexpected status answer: {snippet!r}", status=response.status_code)
        return changed

    # -- export ----------------------------------------------------------------------------------

    def export(
        self, entity: Entity, date_from: date, date_to: date, page_size: int = PAGE_SIZE_MAX
    ) -> Iterator[ExportItem]:
        """Every record of ``entity`` dated ``date_from``..``date_to`` (inclusive, UTC+5), each once.

        Pages are read up to the ``pages`` of the latest answer (records saved meanwhile are at the
        end: ordered by ID). When records vanish meanwhile (``total`` shrinks, or a page is short
        before the last), the offsets have moved and a record may have been skipped: the export is
        read once more from page 1, records already given left out; if it moves again, ApiError.
        """
        if entity not in ENTITIES:
            raise ConfigError(SERVICE, f"entity must be one of {', '.join(ENTITIES)}, not {entity!r}")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= PAGE_SIZE_MAX:
            raise ConfigError(SERVICE, f"page_size must be within 1..{PAGE_SIZE_MAX}, not {page_size!r}")
        if date_to < date_from:
            raise ConfigError(SERVICE, f"date_to {date_to} is before date_from {date_from}")
        return self._export(entity, date_from, date_to, page_size)  # checked above, before the first page

    def _export(self, entity: str, date_from: date, date_to: date, page_size: int) -> Iterator[ExportItem]:
        stats = self.last_export = ExportStats()
        seen: set[str] = set()
        page, total = 1, None
        while True:
            items, pages, page_total = self._page(entity, date_from, date_to, page, page_size)
            stats.pages += 1
            moved = total is not None and page_total < total
            short = len(items) < page_size and page < pages
            total = page_total if total is None else max(total, page_total)
            for data, recoded in items:
                key = data.get("ID")
                if key is not None:
                    if str(key) in seen:
                        stats.duplicates += 1
                        continue
                    seen.add(str(key))
                stats.items += 1
                yield ExportItem(data, recoded)
            if moved or short:
                if stats.restarts:
                    raise ApiError(SERVICE, f"export of {entity} kept changing while it was read; run it again")
                logger.warning("%s: export of %s changed while read; reading it again", SERVICE, entity)
                stats.restarts += 1
                page, total = 1, None
                continue
            if not items or page >= pages:
                return
            page += 1

    def _page(
        self, entity: str, date_from: date, date_to: date, page: int, page_size: int
    ) -> tuple[list[tuple[dict[str, Any], tuple[str, ...]]], int, int]:
        params = {
            "entity": entity,
            "date_from": date_from.isoformat(),
            "date_to": date_to.isoformat(),
            "page": page,
            "page_size": page_size,
        }
        response = self._api.request("GET", "export", idempotent=True, params=params, endpoint="export")
        where = f"GET export page {page}"
        problem = ""
        try:
            data, recoded = decode_body(response.content)
        except PayloadRefused as exc:
            problem = exc.reason
        if problem:
            raise ApiError(SERVICE, f"{where}: unreadable answer ({problem})", status=response.status_code)
        items, pages, total = data.get("items") if isinstance(data, dict) else None, None, None
        if isinstance(data, dict):
            pages, total = data.get("pages"), data.get("total")
        if (
            not isinstance(items, list)
            or not all(isinstance(item, dict) for item in items)
            or isinstance(pages, bool)
            or not isinstance(pages, int)
            or isinstance(total, bool)
            or not isinstance(total, int)
        ):
            raise ApiError(SERVICE, f"{where}: answer is not {{items: [objects], pages, total}}")
        by_item: dict[int, list[str]] = {}
        for path in recoded:
            parts = path.split(".", 2)
            if len(parts) == 3 and parts[0] == "items" and parts[1].isdigit():
                by_item.setdefault(int(parts[1]), []).append(parts[2])
        return [(item, tuple(by_item.get(i, ()))) for i, item in enumerate(items)], pages, total

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> BitrixShopClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
