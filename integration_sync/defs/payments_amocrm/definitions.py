"""The payments_amocrm flow's Dagster definitions: assets, checks, jobs, sensor, schedules, resources."""

from __future__ import annotations

import dagster as dg

from integration_sync.defs.payments_amocrm.assets import amocrm_payment_leads, payment_events
from integration_sync.defs.payments_amocrm.automation import (
    payment_inbox,
    payments_amocrm_job,
    payments_push_job,
    payments_reconciliation,
    payments_retry,
)
from integration_sync.defs.payments_amocrm.checks import inbox_fully_loaded, payments_applied_once, payments_landed
from integration_sync.defs.payments_amocrm.resources import payments_resource


def build_defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[payment_events, amocrm_payment_leads],
        asset_checks=[inbox_fully_loaded, payments_applied_once, payments_landed],
        jobs=[payments_amocrm_job, payments_push_job],
        sensors=[payment_inbox],
        schedules=[payments_retry, payments_reconciliation],
        resources={"payments": payments_resource()},
    )
