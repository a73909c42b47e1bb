"""Asset checks that guard what the business relies on in the payments → amoCRM flow: no payment
lost between the receiver and the event log, none applied twice, none left behind."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from integration_sync.defs.metadata import samples_table
from integration_sync.defs.payments_amocrm.assets import LEADS_KEY, payment_events
from integration_sync.defs.payments_amocrm.resources import PaymentsResource
from integration_sync.defs.payments_amocrm.tables import (
    inbox_keys_missing_from_log,
    late_payments,
    payments_applied_twice,
)
from integration_sync.defs.resources import WarehouseResource
from integration_sync.webhooks.inbox import Inbox


@dg.asset_check(
    asset=payment_events,
    description="Every payment the receiver accepted, up to the newest one loaded, is in the event log.",
)
def inbox_fully_loaded(payments: PaymentsResource, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    missing = inbox_keys_missing_from_log(warehouse.warehouse(), Inbox(payments.inbox_path))
    return dg.AssetCheckResult(
        passed=not missing,
        metadata={"missing": len(missing), "sample": dg.MetadataValue.md(", ".join(missing[:20]) or "none")},
    )


@dg.asset_check(
    asset=LEADS_KEY,
    description="No payment applied twice, and no lead created for two payments.",
)
def payments_applied_once(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    twice, shared = payments_applied_twice(warehouse.warehouse())
    return dg.AssetCheckResult(
        passed=not twice and not shared,
        metadata={
            "applied_twice": len(twice),
            "leads_created_for_two_payments": len(shared),
            "sample": dg.MetadataValue.md(", ".join([*twice, *map(str, shared)][:20]) or "none"),
        },
    )


@dg.asset_check(
    asset=LEADS_KEY,
    description="Accepted payments reach amoCRM within PAYMENTS_MAX_DELAY_MINUTES (warns with the reasons).",
)
def payments_landed(payments: PaymentsResource, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    cutoff = datetime.now(UTC) - timedelta(minutes=payments.max_delay_minutes)
    late = late_payments(warehouse.warehouse(), cutoff)
    return dg.AssetCheckResult(
        passed=not late,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "late": len(late),
            "sample": samples_table(late[:20]) if late else dg.MetadataValue.md("none"),
        },
    )
