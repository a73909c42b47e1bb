"""Where the shop's orders come from: the webhook inbox and the shop's export (no Dagster here).

Both give `OrderVersion`s of the same `ShopOrder` model, so an order known from both is one order
(its newest version, `tables.store_orders`). What cannot be read is returned with its reason, to be
turned away into `ingest_rejects`, never dropped in silence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from integration_sync.connectors.bitrix_shop import BitrixShopClient, ExportItem
from integration_sync.defs.cms_orders.tables import OrderVersion
from integration_sync.webhooks.bitrix_order import SOURCE, OrderWebhook, ShopOrder
from integration_sync.webhooks.inbox import Inbox

_RECODED = "non-UTF-8 text read as cp1251: "


@dataclass(frozen=True)
class Unreadable:
    """A record turned away at load: its day (or the window's first), id if known, reason, raw form."""

    day: str
    key: str | None
    reason: str
    raw: Any


def _reason(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'order'}: {e['msg']}" for e in exc.errors(include_url=False)[:3]]
    return "unreadable order: " + "; ".join(parts)


def _raw_id(raw: Any) -> str | None:
    value = raw.get("ID") if isinstance(raw, dict) else None
    return str(value).strip() if value is not None and str(value).strip() else None


def inbox_versions(
    path: str | Path, first: date, last: date, lowest: date, highest: date
) -> tuple[list[OrderVersion], list[Unreadable]]:
    """The order webhooks dated `first`..`last` (events outside the partitions go to the edge days)."""
    inbox = Inbox(path)
    events = inbox.read_dates(
        first.isoformat(),
        last.isoformat(),
        before=first.isoformat() if first <= lowest else None,
        after=last.isoformat() if last >= highest else None,
        sources=(SOURCE,),
    )
    versions: list[OrderVersion] = []
    bad: list[Unreadable] = []
    for event in events:
        recoded = tuple(p.strip() for p in (event.reason or "").removeprefix(_RECODED).split(",") if p.strip())
        try:
            webhook = OrderWebhook.model_validate_json(event.payload)
        except ValidationError as exc:  # the receiver validated it: only a model made stricter since
            bad.append(Unreadable(event.event_date, event.event_key.split(":")[1], _reason(exc), event.payload[:2000]))
            continue
        versions.append(OrderVersion(webhook.order, "webhook", recoded))
    return versions, bad


def parse_export(items: Iterable[ExportItem], first: date) -> tuple[list[OrderVersion], list[Unreadable]]:
    versions: list[OrderVersion] = []
    bad: list[Unreadable] = []
    for item in items:
        try:
            order = ShopOrder.model_validate(item.data)
        except ValidationError as exc:
            bad.append(Unreadable(first.isoformat(), _raw_id(item.data), _reason(exc), item.data))
            continue
        versions.append(OrderVersion(order, "export", tuple(f"order.{p}" for p in item.recoded)))
    return versions, bad


def export_versions(client: BitrixShopClient, first: date, last: date) -> tuple[list[OrderVersion], list[Unreadable]]:
    """The shop's orders placed `first`..`last` (Kazakhstan days), as the export gives them now."""
    return parse_export(client.export("orders", first, last), first)


def export_catalog(
    client: BitrixShopClient, since: date, until: date
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The shop's users registered `since`..`until` and its whole product catalog."""
    users = [dict(item.data) for item in client.export("users", since, until) if _raw_id(item.data)]
    products = [dict(item.data) for item in client.export("products", since, until) if _raw_id(item.data)]
    return [u for u in users if str(u["ID"]).isdigit()], [p for p in products if str(p["ID"]).isdigit()]
