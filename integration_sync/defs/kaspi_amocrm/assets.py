"""Kaspi orders in the warehouse, and the amoCRM leads they become."""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import dagster as dg

from integration_sync.defs.kaspi_amocrm.destination import Indexes, KaspiLeadsDestination, lead_rule
from integration_sync.defs.kaspi_amocrm.mapping import desired_order, kazakhstan_day
from integration_sync.defs.kaspi_amocrm.resources import KaspiLeadsResource, KaspiResource
from integration_sync.defs.kaspi_amocrm.tables import (
    FLOW,
    OrderRow,
    known_entries,
    newest_per_day,
    orders_to_sync,
    store_orders,
)
from integration_sync.defs.metadata import PushConfig, samples_table, sync_metadata
from integration_sync.defs.partitions import daily, window_days
from integration_sync.defs.resources import AmoCrmResource, WarehouseResource
from integration_sync.defs.runs import push_pool
from integration_sync.sync.engine import SyncEngine
from integration_sync.sync.normalize import KAZAKHSTAN, KAZAKHSTAN_ZONE
from integration_sync.sync.state import read_lookup, write_lookup
from integration_sync.targets.amocrm_contacts import AmoContactIndex
from integration_sync.targets.amocrm_leads import AmoLeadIndex

GROUP = "kaspi_amocrm"
PUSH_TAG = {"integration_sync/push": "kaspi_amocrm"}
ORDERS_KEY = dg.AssetKey(["kaspi", "orders"])
MODE_TAG = "integration_sync/kaspi_mode"
# Orders can reach the API a little after their creationDate; reconciliation catches any later one.
INCREMENTAL_MARGIN = timedelta(minutes=15)

kazakhstan_days = daily(KAZAKHSTAN_ZONE, "KASPI_START_DATE", "2025-01-01")


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


@dg.asset(
    key=ORDERS_KEY,
    group_name=GROUP,
    partitions_def=kazakhstan_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"duckdb"},
)
def kaspi_orders(
    context: dg.AssetExecutionContext, kaspi: KaspiResource, warehouse: WarehouseResource
) -> dg.MaterializeResult[None]:
    """Kaspi orders created on the partition's day(s) in Kazakhstan time (UTC+5), with their lines.

    A full load (backfills, reconciliation) replaces each day and checks its count against Kaspi's
    totalCount; the every-minute run (tag `integration_sync/kaspi_mode: incremental`) asks only for
    orders newer than each day's newest stored one, so an idle minute costs one page per day. Lines
    are fetched once per order; a status that changed since the last load is recorded.
    """
    _, _, first, last = window_days(context)
    store = warehouse.warehouse()
    incremental = context.run.tags.get(MODE_TAG) == "incremental"
    since = newest_per_day(store, first, last) if incremental else {}
    rows: list[OrderRow] = []
    totals: dict[date, int] = {}
    with kaspi.client() as client:
        fetched: list[Any] = []
        for day in _days(first, last):
            start = datetime.combine(day, time(0), KAZAKHSTAN)
            end = start + timedelta(days=1) - timedelta(milliseconds=1)
            if day in since:  # only what is newer than the day's newest stored order (less a margin)
                start = max(start, since[day] - INCREMENTAL_MARGIN)
            page = client.list_orders(start, end)
            if day not in since:
                totals[day] = page.total_count
            fetched.extend(page.orders)
        known = known_entries(store, [o.code for o in fetched])
        for order in fetched:
            attributes = order.attributes_dict()
            entries = known.get(order.code)
            if entries is None:
                entries = [entry.as_row() for entry in client.get_entries(order.id)]
            day_key = kazakhstan_day(attributes)
            rows.append(
                OrderRow(
                    code=order.code,
                    order_id=order.id,
                    day=date.fromisoformat(day_key) if day_key else first,
                    attributes=attributes,
                    entries=entries,
                )
            )
        requests = client.requests_used
    report = store_orders(
        store, rows, first_day=first, last_day=last, api_totals=totals, run_id=context.run_id, replace=not incremental
    )
    metadata: dict[str, Any] = {
        "fetched": report.fetched,
        "new": report.new,
        "stored": report.stored,
        "status_changes": report.status_changes,
        "kaspi_total": sum(totals.values()),
        "api_requests": requests,
    }
    if report.status_change_samples:
        metadata["status_change_sample"] = samples_table(report.status_change_samples)
    metadata["quarantined"] = report.quarantined
    if report.quarantine_samples:  # orders that could not be stored: in ingest_rejects with the reason
        metadata["quarantined_sample"] = samples_table(report.quarantine_samples)
        context.log.warning(f"{report.quarantined} Kaspi orders quarantined: {report.quarantine_samples[:5]}")
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    key=["amocrm", "kaspi_leads"],
    group_name=GROUP,
    deps=[kaspi_orders],
    kinds={"amocrm"},
    tags=PUSH_TAG,
    pool=push_pool(GROUP),
)
def amocrm_kaspi_leads(
    context: dg.AssetExecutionContext,
    config: PushConfig,
    amocrm: AmoCrmResource,
    kaspi_leads: KaspiLeadsResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult[None]:
    """One amoCRM lead per Kaspi order, with its contact (by phone), catalog items and a summary note.

    New orders become leads; status changes move them (COMPLETED → 142, CANCELLED/RETURNED → 143 by
    default); unchanged orders cost no request; an order code is never turned into a second lead,
    even after the warehouse is lost (creates are matched against the pipeline's leads first).
    """
    store = warehouse.warehouse()
    settings = kaspi_leads.settings()
    since = datetime.now(UTC).astimezone(KAZAKHSTAN).date() - timedelta(days=kaspi_leads.sync_days)
    desired = [desired_order(attrs, entries, settings) for attrs, entries in orders_to_sync(store, since)]
    indexes = Indexes(elements_by_code=read_lookup(store, FLOW, "element_by_code"))
    engine = SyncEngine(
        store, flow=FLOW, entity="order", run_id=context.run_id, dry_run=config.dry_run, mode=config.mode
    )
    with amocrm.client() as client:
        leads = AmoLeadIndex.load(store, client.root, lead_rule(settings))
        contacts = AmoContactIndex.load(store, client.root, kaspi_leads.contact_rule(), adopt=FLOW)
        destination = KaspiLeadsDestination(client, settings, kaspi_leads.catalog(), indexes, leads, contacts)
        try:
            report = engine.run(desired, destination, limit=config.limit)
        finally:
            leads.save()
            contacts.save()
            write_lookup(store, FLOW, "element_by_code", indexes.new_elements)
    if report.rejected:
        context.log.warning(f"{report.rejected} orders rejected by amoCRM: {report.rejected_samples[:5]}")
    metadata = sync_metadata(report)
    metadata["lead_index_requests"] = leads.requests  # re-matching creates to existing leads
    return dg.MaterializeResult(metadata=metadata)
