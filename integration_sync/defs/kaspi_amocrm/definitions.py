"""The kaspi_amocrm flow's Dagster definitions: assets, checks, job, schedules, its resources."""

from __future__ import annotations

import dagster as dg

from integration_sync.defs.kaspi_amocrm.assets import amocrm_kaspi_leads, kaspi_orders
from integration_sync.defs.kaspi_amocrm.checks import one_lead_per_order, orders_match_kaspi_total
from integration_sync.defs.kaspi_amocrm.resources import kaspi_leads_resource, kaspi_resource
from integration_sync.defs.kaspi_amocrm.schedules import kaspi_amocrm_job, kaspi_new_orders, kaspi_reconciliation


def build_defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[kaspi_orders, amocrm_kaspi_leads],
        asset_checks=[orders_match_kaspi_total, one_lead_per_order],
        jobs=[kaspi_amocrm_job],
        schedules=[kaspi_new_orders, kaspi_reconciliation],
        resources={"kaspi": kaspi_resource(), "kaspi_leads": kaspi_leads_resource()},
    )
