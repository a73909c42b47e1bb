"""Asset checks that guard what the business relies on in the Kaspi → amoCRM flow."""

import dagster as dg

from integration_sync.defs.kaspi_amocrm.assets import amocrm_kaspi_leads, kaspi_orders
from integration_sync.defs.kaspi_amocrm.tables import FLOW, partition_mismatches
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


@dg.asset_check(asset=amocrm_kaspi_leads, description="No order code has more than one lead; synced orders have one.")
def one_lead_per_order(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.warehouse().connect() as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE l.target_id IS NULL),"
            " (SELECT count(*) FROM (SELECT target_id FROM id_map WHERE flow = ? AND entity = 'lead'"
            "  GROUP BY target_id HAVING count(*) > 1))"
            " FROM sync_state s LEFT JOIN id_map l"
            " ON l.flow = s.flow AND l.source_key = s.source_key AND l.entity = 'lead'"
            " WHERE s.flow = ? AND s.entity = 'order' AND s.status = 'synced'",
            [FLOW, FLOW],
        ).fetchone()
    missing, shared = (int(row[0]), int(row[1])) if row else (0, 0)
    return dg.AssetCheckResult(
        passed=missing == 0 and shared == 0, metadata={"without_lead": missing, "shared_leads": shared}
    )
