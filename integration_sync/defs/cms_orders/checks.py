"""The business's own checks of the cms_orders flow (the seed's goals), besides the generic ones.

- `orders_accounted`: every order the warehouse holds is a deal in Bitrix24 or quarantined with a
  reason — the seed's migration left 62% of orders in neither.
- `status_retry_queue_small`: statuses waiting to reach the shop stay few (`CMS_MAX_RETRY_QUEUE`).
"""

import os

import dagster as dg

from integration_sync.defs.cms_orders.deal_destination import DEAL
from integration_sync.defs.cms_orders.pushes import DEALS_ENTITY, DEALS_PUSH, STATUS_ENTITY, STATUS_PUSH
from integration_sync.defs.cms_orders.resources import CmsOrdersResource
from integration_sync.defs.cms_orders.tables import accounted, retry_queue
from integration_sync.defs.resources import WarehouseResource


@dg.asset_check(
    asset=dg.AssetKey(list(DEALS_PUSH.key)),
    name="orders_accounted",
    description="Every stored order is a Bitrix24 deal or quarantined with its reason; none silently failed.",
)
def orders_accounted(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    counts = accounted(warehouse.warehouse(), DEALS_ENTITY, DEAL)
    return dg.AssetCheckResult(passed=counts["orders_unaccounted"] == 0, metadata=dict(counts))


@dg.asset_check(
    asset=dg.AssetKey(list(STATUS_PUSH.key)),
    name="status_retry_queue_small",
    description="Statuses waiting to reach the shop stay under CMS_MAX_RETRY_QUEUE (default 20).",
)
def status_retry_queue_small(warehouse: WarehouseResource, cms_orders: CmsOrdersResource) -> dg.AssetCheckResult:
    limit = int(os.environ.get("CMS_MAX_RETRY_QUEUE") or 20)
    waiting = retry_queue(warehouse.warehouse(), STATUS_ENTITY, cms_orders.settings().max_attempts)
    return dg.AssetCheckResult(
        passed=waiting <= limit,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"retry_queue": waiting, "limit": limit},
    )


CHECKS = [orders_accounted, status_retry_queue_small]
