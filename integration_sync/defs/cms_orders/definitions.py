"""The cms_orders flow, declared: Bitrix CMS shop orders ↔ Bitrix24 deals, both directions (the fifth seed)."""

from typing import Any

from integration_sync.defs.cms_orders.assets import (
    CRM,
    GROUP,
    kazakhstan_days,
    shop_catalog,
    shop_deal_stages,
    shop_orders,
)
from integration_sync.defs.cms_orders.automation import (
    cms_orders_job,
    cms_orders_reconciliation,
    cms_push_job,
    cms_retry,
    cms_status_job,
    deal_stage_moves,
    shop_order_hooks,
)
from integration_sync.defs.cms_orders.checks import CHECKS
from integration_sync.defs.cms_orders.pushes import CONTACTS_PUSH, DEALS_PUSH, PRODUCTS_PUSH, STATUS_PUSH
from integration_sync.defs.cms_orders.resources import cms_orders_resource, shop_endpoint_resource
from integration_sync.defs.cms_orders.tables import turned_away
from integration_sync.defs.resources import bitrix24_resource
from integration_sync.lib.flow import SyncFlow


def resources() -> dict[str, Any]:
    return {
        CRM: bitrix24_resource("CMS_"),
        "cms_shop": shop_endpoint_resource(),
        "cms_orders": cms_orders_resource(),
    }


FLOW = SyncFlow(
    name=GROUP,
    partitions=kazakhstan_days,
    ingest=[shop_orders],
    push=DEALS_PUSH,
    more_pushes=[PRODUCTS_PUSH, CONTACTS_PUSH, STATUS_PUSH],
    assets=[shop_catalog, shop_deal_stages],
    resources=resources,
    rejected_share_var="CMS_MAX_REJECTED_SHARE",
    turned_away=turned_away,
    checks=CHECKS,
    jobs=[cms_orders_job, cms_status_job, cms_push_job],
    schedules=[cms_orders_reconciliation, cms_retry],
    sensors=[shop_order_hooks, deal_stage_moves],
)
shop_deals = FLOW.push_asset
