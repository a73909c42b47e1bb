"""Platform payment events in the warehouse (the ingest asset), and the push that applies them to amoCRM
contacts, leads and notes."""

from collections import Counter
from datetime import date
from typing import Any

import dagster as dg
from pydantic import Field

from integration_sync.defs.metadata import PushConfig, samples_table
from integration_sync.defs.partitions import daily, window_days
from integration_sync.defs.payments_amocrm.destination import NOTE, PaymentsDestination
from integration_sync.defs.payments_amocrm.mapping import desired_payment
from integration_sync.defs.payments_amocrm.preflight import push_preflight
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
from integration_sync.defs.resources import WarehouseResource
from integration_sync.lib.push import OpenedDestination, Push, PushContext, partition_metadata
from integration_sync.sync.engine import Desired
from integration_sync.sync.warehouse import Warehouse
from integration_sync.targets.amocrm_contacts import AmoContactIndex
from integration_sync.webhooks.inbox import PAYMENT_SOURCE, Inbox
from integration_sync.webhooks.models import PaymentWebhook

GROUP = "payments_amocrm"
CRM = "amocrm_payments"
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

    redrive_payment_ids: list[str] = Field(default_factory=list)  # the older name of `redrive_keys`

    def redrive_selection(self) -> list[str] | None:
        selection = super().redrive_selection()
        return None if selection is None else [*selection, *self.redrive_payment_ids]


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
    inbox and never resets a payment's status. The metadata holds the day's statistics as loaded:
    `status_*` counts the log's statuses at load (before this run's push), `amount_received` sums
    every payment of the day whatever its status; `amocrm/payment_leads` reports what was applied.
    """
    _, _, first, last = window_days(context)
    lowest, highest = partition_bounds()
    inbox = Inbox(payments.inbox_path)
    events = inbox.read_dates(
        first.isoformat(),
        last.isoformat(),
        before=first.isoformat() if first <= lowest else None,
        after=last.isoformat() if last >= highest else None,
        sources=(PAYMENT_SOURCE,),
    )
    partition_of = {e.id: partition_day(e.event_date, first, last) for e in events}
    store = warehouse.warehouse()
    report = ingest_events(store, events, partition_of, context.run_id, days=(first, last))
    per_day: dict[Any, dict[str, Any]] = {}
    for day, counts in report.per_day.items():
        # What the ingest knows: the log's statuses at load, before this run's push (a new payment is
        # still `pending`), and the amount received; the push reports what reached amoCRM.
        stats = event_stats(store, day, day)
        per_day[day] = {
            **counts,
            **{
                f"status_{name}": value
                for name, value in stats.items()
                if name not in ("amount_applied", "redeliveries")
            },
            "amount_received": _amount_received(store, day),
            "redeliveries": stats["redeliveries"],
        }
    run: dict[str, Any] = {}
    if report.unreadable_samples:
        run["unreadable_sample"] = samples_table(report.unreadable_samples)
    return partition_metadata(context, per_day, run)


def _amount_received(store: Warehouse, day: date) -> float:
    with store.connect() as conn:
        row = conn.execute("SELECT sum(amount) FROM payment_event_log WHERE partition_date = ?", [day]).fetchone()
    return float(row[0] or 0) if row else 0.0


def _desired(ctx: PushContext) -> list[Desired]:
    settings = ctx.resources.payments.settings()
    desired = [desired_payment(PaymentWebhook.model_validate_json(p), settings) for p in events_to_push(ctx.store)]
    unmapped = Counter(name for d in desired for name in d.payload["unmapped_subjects"])
    if unmapped:
        ctx.log.warning(f"subjects with no amoCRM enum (AMO_SUBJECT_ENUMS): {dict(unmapped)}")
    ctx.scratch["unmapped_subjects"] = ", ".join(sorted(unmapped)) or "none"
    return desired


def _destination(ctx: PushContext, client: Any) -> OpenedDestination:
    settings = ctx.resources.payments.settings()
    contacts = AmoContactIndex.load(ctx.store, client.root, settings.contact_rule, adopt=FLOW)
    destination = PaymentsDestination(client, settings, PaymentLedger(ctx.store), contacts)
    return OpenedDestination(
        destination,
        states=[contacts],
        counts=lambda: {name: destination.counts.get(name, 0) for name in _DESTINATION_COUNTS},
    )


def _engine_options(ctx: PushContext) -> dict[str, Any]:
    payments: PaymentsResource = ctx.resources.payments
    return {"max_attempts": payments.max_attempts, "retry_backoff_s": payments.retry_backoff_s}


def _outstanding(ctx: PushContext) -> dict[str, Any]:
    left = outstanding(ctx.store)
    return {
        "outstanding": sum(left.values()),
        "failed_total": left.get("failed", 0),
        "unmapped_subjects": ctx.scratch.get("unmapped_subjects", "none"),
    }


_DESTINATION_COUNTS = (
    "contacts_found",
    "contacts_created",
    "contacts_filled",
    "contact_fills_refused",
    "leads_found",
    "leads_created",
    "payments_found_applied",
)


PUSH = Push(
    key=LEADS_KEY.path,
    entity=ENTITY,
    description=(
        "Each accepted payment applied once to amoCRM: the customer's contact (Telegram id → phone →"
        " email, created if missing), their active lead in any pipeline or a new one in the pipeline the UTM"
        " rules pick, the lead's payment fields, and a note.\n\n"
        "Total paid and purchase count are written as values computed from the payments applied to the"
        " lead, so a retried or re-delivered payment is never counted twice. Failed payments are retried by"
        " later runs with a growing delay; an amoCRM outage costs no attempt."
    ),
    kind="amocrm",
    client=CRM,
    resources=("payments",),
    desired=_desired,
    destination=_destination,
    target_ids=(NOTE,),
    unique_entity=NOTE,
    config=PaymentsPushConfig,
    engine_options=_engine_options,
    after=_outstanding,
    preflight=push_preflight,
)
