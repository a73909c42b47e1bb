"""What the cms_orders flow adds outside Dagster (so far): the receiver's `/webhooks/bitrix/order`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from integration_sync.lib.registry import FlowPlugin, ReceiverContext

if TYPE_CHECKING:
    from starlette.routing import BaseRoute


def routes(context: ReceiverContext) -> Sequence[BaseRoute]:
    from integration_sync.webhooks.bitrix_route import bitrix_order_routes

    return bitrix_order_routes(context)


PLUGIN = FlowPlugin(
    name="cms_orders",
    source_vars=("CMS_B24_WEBHOOK_URL",),
    receiver_vars=("WEBHOOK_TOKEN",),
    routes=routes,
)
