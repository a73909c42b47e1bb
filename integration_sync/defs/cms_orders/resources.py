"""The cms_orders flow's resources: the shop's key-protected endpoint and the flow's settings.

The shop endpoint is `BITRIX_WEBHOOK_URL` + `BITRIX_WEBHOOK_KEY` (the seed's names: the shop's side),
never to be confused with `CMS_B24_WEBHOOK_URL`/`B24_WEBHOOK_URL` (the Bitrix24 portal).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from integration_sync.connectors.bitrix_shop import BitrixShopClient
from integration_sync.connectors.ratelimit import RateLimiter
from integration_sync.defs.cms_orders.settings import SETTING_VARS, CmsSettings
from integration_sync.defs.resources import account_hash, data_dir, env_float
from integration_sync.webhooks.settings import inbox_path_from_env


class ShopEndpointResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The shop's status and export endpoint (a PHP page of the shop's site: a gentle rate)."""

    url: str
    key: str
    rate_per_s: float = 5.0
    state_dir: str = "data/state"

    def client(self) -> BitrixShopClient:
        name = "bitrix-shop-" + account_hash(self.url)
        limiter = RateLimiter(self.rate_per_s, 5, state_path=Path(self.state_dir) / f"{name}.json", name=name)
        return BitrixShopClient(self.url, self.key, limiter=limiter)


class CmsOrdersResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The flow's settings (`CmsSettings`: pipeline, status ↔ stage maps, conflict rule), as the
    `CMS_*` variables held them when the definitions loaded, and the webhook inbox the receiver writes."""

    inbox_path: str
    variables: dict[str, str] = Field(default_factory=dict)

    def settings(self) -> CmsSettings:
        return CmsSettings.from_env(self.variables)


def shop_endpoint_resource() -> ShopEndpointResource:
    return ShopEndpointResource(
        url=dg.EnvVar("BITRIX_WEBHOOK_URL"),
        key=dg.EnvVar("BITRIX_WEBHOOK_KEY"),
        rate_per_s=env_float("BITRIX_SHOP_RATE_PER_S", 5.0),
        state_dir=str(data_dir() / "state"),
    )


def cms_orders_resource() -> CmsOrdersResource:
    variables = {name: value for name in SETTING_VARS if (value := os.environ.get(name)) is not None}
    return CmsOrdersResource(inbox_path=str(inbox_path_from_env()), variables=variables)
