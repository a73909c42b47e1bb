"""The payments_amocrm flow, declared: education-platform payment webhooks → amoCRM (the third seed)."""

from typing import Any

from integration_sync.defs.payments_amocrm.assets import GROUP, PUSH, moscow_days, payment_events
from integration_sync.defs.payments_amocrm.automation import (
    payment_inbox,
    payments_amocrm_job,
    payments_push_job,
    payments_reconciliation,
    payments_retry,
)
from integration_sync.defs.payments_amocrm.checks import inbox_fully_loaded, payments_applied_once, payments_landed
from integration_sync.defs.payments_amocrm.resources import payments_resource
from integration_sync.defs.payments_amocrm.tables import turned_away
from integration_sync.defs.resources import amocrm_resource
from integration_sync.lib.flow import SyncFlow


def resources() -> dict[str, Any]:
    return {PUSH.client: amocrm_resource("PAYMENTS_"), "payments": payments_resource()}


FLOW = SyncFlow(
    name=GROUP,
    partitions=moscow_days,
    ingest=[payment_events],
    push=PUSH,
    resources=resources,
    rejected_share_var="PAYMENTS_MAX_REJECTED_SHARE",
    turned_away=turned_away,
    checks=[inbox_fully_loaded, payments_applied_once, payments_landed],
    jobs=[payments_amocrm_job, payments_push_job],
    schedules=[payments_retry, payments_reconciliation],
    sensors=[payment_inbox],
)
amocrm_payment_leads = FLOW.push_asset
