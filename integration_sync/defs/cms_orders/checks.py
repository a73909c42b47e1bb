"""The business's own checks of the cms_orders flow (the seed's goals), besides the generic ones.

- `orders_accounted`: every order the warehouse holds is a deal in Bitrix24 or quarantined with a
  reason — the seed's migration left 62% of orders in neither.
- `status_retry_queue_small`: statuses waiting to reach the shop stay few (`CMS_MAX_RETRY_QUEUE`).
- `webhook_success_rate`: of the shop's webhooks in the last 24 hours, accepted (or already received)
  ÷ received stays above `CMS_MIN_WEBHOOK_SUCCESS` (default 0.95, the seed's goal).
- `recovered_within_5_minutes`: after the shop or Bitrix24 was down, the flow's next successful run
  came within 5 minutes (retries are capped below that), over the last day.

Failed checks reach the shared alert channels (the alerts sensor reports failed ERROR checks).
"""

import os
from datetime import UTC, datetime, timedelta

import dagster as dg

from integration_sync.defs.cms_orders.assets import ORDERS_KEY
from integration_sync.defs.cms_orders.deal_destination import DEAL
from integration_sync.defs.cms_orders.metrics import RECOVERY_GOAL_S, recovery, webhook_metadata
from integration_sync.defs.cms_orders.pushes import DEALS_ENTITY, DEALS_PUSH, STATUS_ENTITY, STATUS_PUSH
from integration_sync.defs.cms_orders.resources import CmsOrdersResource
from integration_sync.defs.cms_orders.settings import FLOW
from integration_sync.defs.cms_orders.tables import accounted, retry_queue
from integration_sync.defs.resources import WarehouseResource
from integration_sync.lib.push import push_tags


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


@dg.asset_check(
    asset=ORDERS_KEY,
    name="webhook_success_rate",
    description="The shop's order webhooks of the last 24 hours: accepted ÷ received ≥ CMS_MIN_WEBHOOK_SUCCESS.",
)
def webhook_success_rate(cms_orders: CmsOrdersResource) -> dg.AssetCheckResult:
    limit = float(os.environ.get("CMS_MIN_WEBHOOK_SUCCESS") or 0.95)
    metadata = webhook_metadata(cms_orders.inbox_path)
    rate = metadata.get("webhooks_success_rate")
    return dg.AssetCheckResult(passed=rate is None or rate >= limit, metadata={**metadata, "limit": limit})


@dg.asset_check(
    asset=dg.AssetKey(list(DEALS_PUSH.key)),
    name="recovered_within_5_minutes",
    description="After an outage of the shop or Bitrix24, the flow's next successful run came within 5 minutes.",
)
def recovered_within_5_minutes(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    seen = recovery(context.instance, push_tags(FLOW), datetime.now(UTC) - timedelta(days=1))
    return dg.AssetCheckResult(
        passed=seen.worst_s <= RECOVERY_GOAL_S,
        metadata={
            "outages": len(seen.recoveries_s) + (1 if seen.open_s is not None else 0),
            "worst_recovery_s": round(seen.worst_s, 1),
            "still_failing_for_s": round(seen.open_s, 1) if seen.open_s is not None else 0.0,
            "goal_s": RECOVERY_GOAL_S,
        },
    )


CHECKS = [orders_accounted, status_retry_queue_small, webhook_success_rate, recovered_within_5_minutes]
