"""The shop's orders, users and products in the warehouse, and the deal stages read back from Bitrix24."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from integration_sync.defs.cms_orders.metrics import webhook_metadata
from integration_sync.defs.cms_orders.resources import CmsOrdersResource, ShopEndpointResource
from integration_sync.defs.cms_orders.settings import FLOW
from integration_sync.defs.cms_orders.source import Unreadable, export_catalog, export_versions, inbox_versions
from integration_sync.defs.cms_orders.stages import load_stage_history
from integration_sync.defs.cms_orders.tables import ORDERS_SOURCE, reject, store_catalog, store_orders
from integration_sync.defs.metadata import samples_table
from integration_sync.defs.partitions import daily, window_days
from integration_sync.defs.resources import Bitrix24Resource, WarehouseResource
from integration_sync.sync.normalize import KAZAKHSTAN, KAZAKHSTAN_ZONE
from integration_sync.sync.state import read_state, write_state

GROUP = FLOW
CRM = "bitrix24_shop"
ORDERS_KEY = dg.AssetKey(["bitrix_cms", "shop_orders"])
CATALOG_KEY = dg.AssetKey(["bitrix_cms", "shop_catalog"])
STAGES_KEY = dg.AssetKey(["bitrix24", "shop_deal_stages"])
CATALOG_FRESH_S = 3600.0  # the users and products export is read again after an hour, or when asked
CATALOG_SINCE = date(2000, 1, 1)

kazakhstan_days = daily(KAZAKHSTAN_ZONE, "CMS_START_DATE", "2025-01-01")


def partition_bounds() -> tuple[date, date]:
    first = kazakhstan_days.get_first_partition_key()
    last = kazakhstan_days.get_last_partition_key()
    assert first is not None and last is not None
    return date.fromisoformat(first), date.fromisoformat(last)


class OrdersConfig(dg.Config):
    """`from_export`: read the shop's export for the run's days besides the webhook inbox (the
    migration, the reconciliation). The inbox sensor's runs read only the inbox."""

    from_export: bool = True


class CatalogConfig(dg.Config):
    """`force`: read the export's users and products even when read less than an hour ago."""

    force: bool = False


def _turn_away(store: Any, bad: list[Unreadable], run_id: str) -> list[tuple[str, str]]:
    for item in bad:
        reject(store, ORDERS_SOURCE, item.day, item.key, item.reason, item.raw, run_id)
    return [(item.key or "?", item.reason) for item in bad]


@dg.asset(
    key=ORDERS_KEY,
    group_name=GROUP,
    partitions_def=kazakhstan_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"duckdb"},
)
def shop_orders(
    context: dg.AssetExecutionContext,
    config: OrdersConfig,
    cms_orders: CmsOrdersResource,
    cms_shop: ShopEndpointResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult[None]:
    """The flower shop's orders by the Kazakhstan day they were placed (UTC+5): one row per order, its
    newest version, from the webhook inbox and (with `from_export`, the migration and the
    reconciliation) the shop's export of those days. An order known from both is one order; loading a
    day again drops nothing that came only through the export. An order that cannot be read is turned
    away with its reason (`ingest_rejects`, `integration-sync trace cms_orders <id>`)."""
    _, _, first, last = window_days(context)
    lowest, highest = partition_bounds()
    versions, bad = inbox_versions(cms_orders.inbox_path, first, last, lowest, highest)
    requests = 0
    if config.from_export:
        with cms_shop.client() as shop:
            exported, bad_export = export_versions(shop, first, last)
            requests = shop.last_export.pages
        versions += exported
        bad += bad_export
    store = warehouse.warehouse()
    counts = store_orders(store, versions, context.run_id)
    turned = _turn_away(store, bad, context.run_id)
    recoded = sum(1 for v in versions if v.recoded)
    metadata: dict[str, Any] = {
        **counts,
        "versions_read": len(versions),
        "from_webhooks": sum(1 for v in versions if v.via == "webhook"),
        "from_export": sum(1 for v in versions if v.via == "export"),
        "turned_away": len(turned),
        "recoded_text": recoded,
        "export_requests": requests,
        "days": f"{first}..{last}",
    }
    if turned:
        metadata["turned_away_sample"] = samples_table(turned[:20])
    metadata.update(webhook_metadata(cms_orders.inbox_path))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(key=CATALOG_KEY, group_name=GROUP, kinds={"duckdb"})
def shop_catalog(
    context: dg.AssetExecutionContext,
    config: CatalogConfig,
    cms_shop: ShopEndpointResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult[None]:
    """The shop's registered users and its product catalog, from its export: the users become Bitrix24
    contacts and the products catalog products for the deals' rows (the seed's planned imports).
    Read again when older than an hour (or with `force`); otherwise a run costs nothing here."""
    store = warehouse.warehouse()
    last = read_state(store, FLOW, "catalog_read_at")
    now = datetime.now(UTC)
    if last and not config.force and now - datetime.fromisoformat(last) < timedelta(seconds=CATALOG_FRESH_S):
        return dg.MaterializeResult(metadata={"skipped": "read less than an hour ago", "catalog_read_at": last})
    with cms_shop.client() as shop:
        users, products = export_catalog(shop, CATALOG_SINCE, now.astimezone(KAZAKHSTAN).date())
    stored_users = store_catalog(store, "cms_users", users)
    stored_products = store_catalog(store, "cms_products", products)
    write_state(store, FLOW, "catalog_read_at", now.isoformat())
    return dg.MaterializeResult(metadata={"users": stored_users, "products": stored_products})


@dg.asset(key=STAGES_KEY, group_name=GROUP, kinds={"bitrix24", "duckdb"})
def shop_deal_stages(
    context: dg.AssetExecutionContext,
    cms_orders: CmsOrdersResource,
    warehouse: WarehouseResource,
    bitrix24_shop: Bitrix24Resource,
) -> dg.MaterializeResult[None]:
    """The moves of the shop's deals between stages, read from `crm.stagehistory.list` since the last
    read (with an overlap: a row can appear late). Read before the deals push, so a manager's move
    is known before a stage is written; managers' moves go back to the shop as order statuses
    (`bitrix_cms/order_statuses`), and our own writes read back are echoes (their stage is the one
    both sides last agreed on)."""
    settings = cms_orders.settings()
    with bitrix24_shop.client() as client:
        counts = load_stage_history(warehouse.warehouse(), client, settings.category_id)
    return dg.MaterializeResult(metadata=dict(counts))
