"""The Kaspi flow's own check (the generic ones come with the flow skeleton): each day's stored
orders against Kaspi's own totalCount."""

import dagster as dg

from integration_sync.defs.kaspi_amocrm.assets import kaspi_orders
from integration_sync.defs.kaspi_amocrm.tables import partition_mismatches
from integration_sync.defs.resources import WarehouseResource


@dg.asset_check(asset=kaspi_orders, description="Orders stored per day equal Kaspi's totalCount for that day.")
def orders_match_kaspi_total(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    mismatches = partition_mismatches(warehouse.warehouse())
    return dg.AssetCheckResult(
        passed=not mismatches,
        metadata={
            "mismatched_days": len(mismatches),
            "sample": dg.MetadataValue.md(
                "\n".join(f"- {day}: Kaspi {api}, stored {stored}" for day, api, stored in mismatches[:20]) or "none"
            ),
        },
    )
