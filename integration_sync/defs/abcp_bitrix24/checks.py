"""Asset checks that guard what the business relies on in the ABCP → Bitrix24 flow."""

import dagster as dg

from integration_sync.defs.abcp_bitrix24.assets import bitrix24_user_deals
from integration_sync.defs.abcp_bitrix24.resources import UsersPipelineResource
from integration_sync.defs.abcp_bitrix24.tables import FLOW
from integration_sync.defs.resources import WarehouseResource


@dg.asset_check(asset=bitrix24_user_deals, description="Every synced ABCP user has a contact id and a deal id.")
def synced_users_have_contact_and_deal(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.warehouse().connect() as conn:
        row = conn.execute(
            "SELECT count(*) AS synced,"
            " count(*) FILTER (WHERE c.target_id IS NULL OR d.target_id IS NULL) AS missing"
            " FROM sync_state s"
            " LEFT JOIN id_map c ON c.flow = s.flow AND c.source_key = s.source_key AND c.entity = 'contact'"
            " LEFT JOIN id_map d ON d.flow = s.flow AND d.source_key = s.source_key AND d.entity = 'deal'"
            " WHERE s.flow = ? AND s.entity = 'user' AND s.status = 'synced'",
            [FLOW],
        ).fetchone()
    synced, missing = (int(row[0]), int(row[1])) if row else (0, 0)
    return dg.AssetCheckResult(passed=missing == 0, metadata={"synced": synced, "missing_ids": missing})


@dg.asset_check(asset=bitrix24_user_deals, description="The share of users Bitrix24 rejects stays under the limit.")
def rejected_share_below_threshold(
    warehouse: WarehouseResource, users_pipeline: UsersPipelineResource
) -> dg.AssetCheckResult:
    with warehouse.warehouse().connect() as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'rejected'), count(*) FILTER (WHERE status <> 'invalid')"
            " FROM sync_state WHERE flow = ? AND entity = 'user'",
            [FLOW],
        ).fetchone()
    rejected, total = (int(row[0]), int(row[1])) if row else (0, 0)
    share = rejected / total if total else 0.0
    return dg.AssetCheckResult(
        passed=share <= users_pipeline.max_rejected_share,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"rejected": rejected, "total": total, "share": share, "threshold": users_pipeline.max_rejected_share},
    )
