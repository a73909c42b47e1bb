"""The abcp_bitrix24 flow, declared: ABCP users → Bitrix24 contacts and deals (the first seed)."""

from typing import Any

from integration_sync.defs.abcp_bitrix24.assets import GROUP, PUSH, abcp_user_changes, abcp_users, moscow_days
from integration_sync.defs.abcp_bitrix24.resources import users_pipeline_resource
from integration_sync.defs.abcp_bitrix24.schedules import abcp_bitrix24_daily, abcp_bitrix24_job
from integration_sync.defs.abcp_bitrix24.tables import turned_away
from integration_sync.defs.resources import abcp_resource, bitrix24_resource
from integration_sync.lib.flow import SyncFlow


def resources() -> dict[str, Any]:
    return {
        "abcp": abcp_resource(),
        PUSH.client: bitrix24_resource("ABCP_"),
        "users_pipeline": users_pipeline_resource(),
    }


FLOW = SyncFlow(
    name=GROUP,
    partitions=moscow_days,
    ingest=[abcp_users, abcp_user_changes],
    push=PUSH,
    resources=resources,
    rejected_share_var="ABCP_MAX_REJECTED_SHARE",
    turned_away=turned_away,
    jobs=[abcp_bitrix24_job],
    schedules=[abcp_bitrix24_daily],
)
bitrix24_user_deals = FLOW.push_asset
