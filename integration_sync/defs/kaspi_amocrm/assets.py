"""Kaspi orders in the warehouse (the ingest asset), and the push that makes them amoCRM leads."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import dagster as dg

from integration_sync.defs.kaspi_amocrm.destination import Indexes, KaspiLeadsDestination, lead_rule
from integration_sync.defs.kaspi_amocrm.mapping import desired_order, kazakhstan_day
from integration_sync.defs.kaspi_amocrm.preflight import push_preflight
from integration_sync.defs.kaspi_amocrm.resources import KaspiLeadsResource, KaspiResource
from integration_sync.defs.kaspi_amocrm.tables import (
    FLOW,
    OrderRow,
    known_entries,
    newest_per_day,
    orders_to_sync,
    store_orders,
)
from integration_sync.defs.metadata import samples_table
from integration_sync.defs.partitions import daily, window_days
from integration_sync.defs.resources import WarehouseResource
from integration_sync.lib.push import OpenedDestination, Push, PushContext, partition_metadata
from integration_sync.sync.engine import Desired
from integration_sync.sync.normalize import KAZAKHSTAN, KAZAKHSTAN_ZONE
from integration_sync.sync.state import read_lookup, write_lookup
from integration_sync.sync.warehouse import Warehouse
from integration_sync.targets.amocrm_contacts import AmoContactIndex
from integration_sync.targets.amocrm_leads import AmoLeadIndex

GROUP = "kaspi_amocrm"
CRM = "amocrm_kaspi"
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
    run: dict[str, Any] = {"api_requests": requests}
    if report.status_change_samples:
        run["status_change_sample"] = samples_table(report.status_change_samples)
    if report.quarantine_samples:  # orders that could not be stored: in ingest_rejects with the reason
        run["quarantined_sample"] = samples_table(report.quarantine_samples)
        context.log.warning(f"{report.quarantined} Kaspi orders quarantined: {report.quarantine_samples[:5]}")
    return partition_metadata(context, report.per_day, run)


def _desired(ctx: PushContext) -> list[Desired]:
    leads: KaspiLeadsResource = ctx.resources.kaspi_leads
    since = datetime.now(UTC).astimezone(KAZAKHSTAN).date() - timedelta(days=leads.sync_days)
    return [desired_order(attrs, entries, leads.settings()) for attrs, entries in orders_to_sync(ctx.store, since)]


@dataclass
class _CatalogIds:
    """Product code → catalog element id, learnt while pushing and kept in the warehouse."""

    store: Warehouse
    indexes: Indexes

    def save(self) -> None:
        write_lookup(self.store, FLOW, "element_by_code", self.indexes.new_elements)


def _destination(ctx: PushContext, client: Any) -> OpenedDestination:
    resource: KaspiLeadsResource = ctx.resources.kaspi_leads
    settings = resource.settings()
    indexes = Indexes(elements_by_code=read_lookup(ctx.store, FLOW, "element_by_code"))
    leads = AmoLeadIndex.load(ctx.store, client.root, lead_rule(settings))
    contacts = AmoContactIndex.load(ctx.store, client.root, resource.contact_rule(), adopt=FLOW)
    destination = KaspiLeadsDestination(client, settings, resource.catalog(), indexes, leads, contacts)
    return OpenedDestination(
        destination,
        states=[leads, contacts, _CatalogIds(ctx.store, indexes)],
        counts=lambda: {"lead_index_requests": leads.requests},  # re-matching creates to existing leads
    )


PUSH = Push(
    key=["amocrm", "kaspi_leads"],
    entity="order",
    description=(
        "One amoCRM lead per Kaspi order, with its contact (by phone), catalog items and a summary note.\n\n"
        "New orders become leads; status changes move them (COMPLETED → 142, CANCELLED/RETURNED → 143 by"
        " default); unchanged orders cost no request; an order code is never turned into a second lead,"
        " even after the warehouse is lost (creates are matched against the pipeline's leads first)."
    ),
    kind="amocrm",
    client=CRM,
    resources=("kaspi_leads",),
    desired=_desired,
    destination=_destination,
    target_ids=("lead",),
    unique_entity="lead",
    preflight=push_preflight,
)
