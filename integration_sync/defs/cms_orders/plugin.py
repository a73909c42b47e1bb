"""What the cms_orders flow adds outside Dagster: its warehouse tables, the receiver's
`/webhooks/bitrix/order`, `trace`, and its sandbox settings (the shop emulator subscribed to the
receiver at `up`, as the PHP module's config points a real shop at it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from integration_sync.defs.cms_orders import preflight
from integration_sync.defs.cms_orders.stages import STAGE_MIGRATIONS
from integration_sync.defs.cms_orders.tables import CMS_MIGRATIONS, trace_source
from integration_sync.lib.registry import FlowPlugin, ReceiverContext

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

REQUIRED = ("CMS_B24_WEBHOOK_URL", "BITRIX_WEBHOOK_URL", "BITRIX_WEBHOOK_KEY", "WEBHOOK_TOKEN")


def routes(context: ReceiverContext) -> Sequence[BaseRoute]:
    from integration_sync.webhooks.bitrix_route import bitrix_order_routes

    return bitrix_order_routes(context)


def sandbox_env(sandbox_url: str, receiver_url: str) -> dict[str, str]:
    from integration_sync.sandbox.bitrix24_shop import SHOP_CATEGORY_ID, shop_portal_env
    from integration_sync.sandbox.bitrix_shop import shop_env

    return {
        **shop_env(sandbox_url),
        **shop_portal_env(sandbox_url),
        "CMS_B24_DEAL_CATEGORY_ID": str(SHOP_CATEGORY_ID),
        "CMS_RECEIVER_URL": receiver_url,
    }


def on_start(env: Mapping[str, str]) -> list[str]:
    """In the sandbox: point the shop emulator's webhooks at our receiver (a real shop's module is
    configured with that address in its config.php)."""
    import httpx

    shop, receiver = (env.get("CMS_SHOP_URL") or "").rstrip("/"), (env.get("CMS_RECEIVER_URL") or "").rstrip("/")
    if not shop or not receiver or not shop.endswith("/bitrix-shop"):
        return []
    control = shop.removesuffix("/bitrix-shop") + "/_sandbox/bitrix-shop/subscribe"
    url = f"{receiver}/webhooks/bitrix/order"
    try:
        httpx.post(control, json={"url": url}, timeout=5.0).raise_for_status()
    except httpx.HTTPError as exc:
        return [f"cms_orders: the sandbox shop could not be subscribed to {url}: {type(exc).__name__}"]
    return [f"cms_orders: the sandbox shop sends its order webhooks to {url}"]


PLUGIN = FlowPlugin(
    name="cms_orders",
    migrations=(*CMS_MIGRATIONS, *STAGE_MIGRATIONS),
    source_vars=("CMS_B24_WEBHOOK_URL", "BITRIX_WEBHOOK_URL"),
    required_vars=REQUIRED,
    account_prefix="CMS_",
    account_vars=("B24_WEBHOOK_URL",),
    receiver_vars=("WEBHOOK_TOKEN",),
    routes=routes,
    doctor=preflight.doctor,
    sandbox_env=sandbox_env,
    trace_source=trace_source,
    on_start=on_start,
)
