"""Platform payment events in the warehouse, and the amoCRM contacts, leads and notes they become."""

from collections import Counter
from datetime import date
from typing import Any

import dagster as dg
from pydantic import Field

from integration_sync.defs.metadata import PushConfig, samples_table, sync_metadata
from integration_sync.defs.partitions import daily, window_days
from integration_sync.defs.payments_amocrm.destination import PaymentsDestination
from integration_sync.defs.payments_amocrm.mapping import desired_payment
from integration_sync.defs.payments_amocrm.resources import PaymentsResource
from integration_sync.defs.payments_amocrm.tables import (
    ENTITY,
    FLOW,
    PaymentLedger,
    event_stats,
    events_to_push,
    ingest_events,
    outstanding,
)
from integration_sync.defs.resources import AmoCrmResource, WarehouseResource
from integration_sync.defs.runs import push_pool
from integration_sync.sync.engine import SyncEngine
from integration_sync.sync.state import redrive
from integration_sync.targets.amocrm_contacts import AmoContactIndex
from integration_sync.webhooks.inbox import Inbox
from integration_sync.webhooks.models import PaymentWebhook

GROUP = "payments_amocrm"
PUSH_TAG = {"integration_sync/push": "payments_amocrm"}
EVENTS_KEY = dg.AssetKey(["platform", "payment_events"])
LEADS_KEY = dg.AssetKey(["amocrm", "payment_leads"])

moscow_days = daily("Europe/Moscow", "PAYMENTS_START_DATE", "2025-01-01")


def partition_day(event_date: str, first: date, last: date) -> date:
    """The partition an event goes to: its Moscow date, kept within the partitions that exist (a
    payment dated before the first or after the last day goes to that edge day)."""
    day = date.fromisoformat(event_date)
    return min(max(day, first), last)


def partition_bounds() -> tuple[date, date]:
    first = moscow_days.get_first_partition_key()
    last = moscow_days.get_last_partition_key()
    assert first is not None and last is not None
    return date.fromisoformat(first), date.fromisoformat(last)


class PaymentsPushConfig(PushConfig):
    """A push's run options, plus re-driving failed payments: those of `redrive_payment_ids`, or every
    failed one with `redrive_all_failed`, get a fresh retry budget and are tried in this run."""

    redrive_payment_ids: list[str] = Field(default_factory=list)
    redrive_all_failed: bool = False


@dg.asset(
    key=EVENTS_KEY,
    group_name=GROUP,
    partitions_def=moscow_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"duckdb"},
)
def payment_events(
    context: dg.AssetExecutionContext, payments: PaymentsResource, warehouse: WarehouseResource
) -> dg.MaterializeResult[None]:
    """The platform's payment webhooks by Moscow day: the seed's event log (pending, processing,
    success, failed, skipped), copied from the webhook inbox.

    Loading a day again adds only payments not yet there, so a backfill rebuilds the log from the
    inbox and never resets a payment's status. The metadata holds the day's statistics.
    """
    _, _, first, last = window_days(context)
    lowest, highest = partition_bounds()
    inbox = Inbox(payments.inbox_path)
    events = inbox.read_dates(
        first.isoformat(),
        last.isoformat(),
        before=first.isoformat() if first <= lowest else None,
        after=last.isoformat() if last >= highest else None,
    )
    partition_of = {e.id: partition_day(e.event_date, first, last) for e in events}
    store = warehouse.warehouse()
    report = ingest_events(store, events, partition_of, context.run_id)
    stats = event_stats(store, first, last)
    metadata: dict[str, Any] = {
        "fetched": report.fetched,
        "new": report.new,
        "skipped_by_receiver": report.skipped,
        "unreadable": report.unreadable,
        **{f"status_{name}": value for name, value in stats.items() if name not in ("amount_applied", "redeliveries")},
        "amount_applied": stats["amount_applied"],
        "redeliveries": stats["redeliveries"],
    }
    if report.unreadable_samples:
        metadata["unreadable_sample"] = samples_table(report.unreadable_samples)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    key=LEADS_KEY, group_name=GROUP, deps=[payment_events], kinds={"amocrm"}, tags=PUSH_TAG, pool=push_pool(GROUP)
)
def amocrm_payment_leads(
    context: dg.AssetExecutionContext,
    config: PaymentsPushConfig,
    amocrm: AmoCrmResource,
    payments: PaymentsResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult[None]:
    """Each accepted payment applied once to amoCRM: the customer's contact (Telegram id → phone →
    email, created if missing), their active lead in any pipeline or a new one in the pipeline the UTM
    rules pick, the lead's payment fields, and a note.

    Total paid and purchase count are written as values computed from the payments applied to the
    lead, so a retried or re-delivered payment is never counted twice. Failed payments are retried by
    later runs with a growing delay; an amoCRM outage costs no attempt.
    """
    store = warehouse.warehouse()
    redriven: list[str] = []
    if config.redrive_all_failed or config.redrive_payment_ids:
        redriven = redrive(store, FLOW, ENTITY, None if config.redrive_all_failed else config.redrive_payment_ids)
        context.log.info(f"re-driven: {len(redriven)} failed payments")
    settings = payments.settings()
    desired = [desired_payment(PaymentWebhook.model_validate_json(p), settings) for p in events_to_push(store)]
    unmapped = Counter(name for d in desired for name in d.payload["unmapped_subjects"])
    engine = SyncEngine(
        store,
        flow=FLOW,
        entity=ENTITY,
        run_id=context.run_id,
        dry_run=config.dry_run,
        mode=config.mode,
        max_attempts=payments.max_attempts,
        retry_backoff_s=payments.retry_backoff_s,
    )
    with amocrm.client() as client:
        contacts = AmoContactIndex.load(store, client.root, settings.contact_rule, adopt=FLOW)
        destination = PaymentsDestination(client, settings, PaymentLedger(store), contacts)
        try:
            report = engine.run(desired, destination, limit=config.limit)
        finally:
            contacts.save()
    left = outstanding(store)
    if report.rejected:
        context.log.warning(f"{report.rejected} payments not applied: {report.rejected_samples[:5]}")
    if unmapped:
        context.log.warning(f"subjects with no amoCRM enum (AMO_SUBJECT_ENUMS): {dict(unmapped)}")
    metadata = sync_metadata(report)
    metadata.update({name: destination.counts.get(name, 0) for name in _DESTINATION_COUNTS})
    metadata.update(
        {
            "outstanding": sum(left.values()),
            "failed_total": left.get("failed", 0),
            "redriven": len(redriven),
            "unmapped_subjects": ", ".join(sorted(unmapped)) or "none",
        }
    )
    return dg.MaterializeResult(metadata=metadata)


_DESTINATION_COUNTS = (
    "contacts_found",
    "contacts_created",
    "contacts_filled",
    "contact_fills_refused",
    "leads_found",
    "leads_created",
    "payments_found_applied",
)
