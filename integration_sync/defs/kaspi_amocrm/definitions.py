"""The kaspi_amocrm flow, declared: Kaspi.kz orders → amoCRM leads with catalog items (the second seed)."""

from typing import Any

from integration_sync.defs.kaspi_amocrm.assets import GROUP, PUSH, kaspi_orders, kazakhstan_days
from integration_sync.defs.kaspi_amocrm.checks import orders_match_kaspi_total
from integration_sync.defs.kaspi_amocrm.resources import kaspi_leads_resource, kaspi_resource
from integration_sync.defs.kaspi_amocrm.schedules import kaspi_amocrm_job, kaspi_reconciliation
from integration_sync.defs.kaspi_amocrm.sensors import kaspi_new_orders
from integration_sync.defs.kaspi_amocrm.tables import turned_away
from integration_sync.defs.resources import amocrm_resource
from integration_sync.lib.flow import SyncFlow


def resources() -> dict[str, Any]:
    return {"kaspi": kaspi_resource(), PUSH.client: amocrm_resource("KASPI_"), "kaspi_leads": kaspi_leads_resource()}


FLOW = SyncFlow(
    name=GROUP,
    partitions=kazakhstan_days,
    ingest=[kaspi_orders],
    push=PUSH,
    resources=resources,
    rejected_share_var="KASPI_MAX_REJECTED_SHARE",
    turned_away=turned_away,
    checks=[orders_match_kaspi_total],
    jobs=[kaspi_amocrm_job],
    schedules=[kaspi_reconciliation],
    sensors=[kaspi_new_orders],
)
amocrm_kaspi_leads = FLOW.push_asset
