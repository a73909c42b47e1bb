"""The abcp_bitrix24 flow's Dagster definitions: assets, checks, job, schedule, its own resource."""

from __future__ import annotations

import dagster as dg

from integration_sync.defs.abcp_bitrix24.assets import abcp_user_changes, abcp_users, bitrix24_user_deals
from integration_sync.defs.abcp_bitrix24.checks import (
    rejected_share_below_threshold,
    synced_users_have_contact_and_deal,
)
from integration_sync.defs.abcp_bitrix24.resources import users_pipeline_resource
from integration_sync.defs.abcp_bitrix24.schedules import abcp_bitrix24_daily, abcp_bitrix24_job


def build_defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[abcp_users, abcp_user_changes, bitrix24_user_deals],
        asset_checks=[synced_users_have_contact_and_deal, rejected_share_below_threshold],
        jobs=[abcp_bitrix24_job],
        schedules=[abcp_bitrix24_daily],
        resources={"users_pipeline": users_pipeline_resource()},
    )
