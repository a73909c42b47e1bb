"""Kaspi new orders: a sensor that asks Kaspi cheaply every minute and launches a run only when an
order is there that the warehouse does not hold, so an idle minute leaves no run on the Runs page.

Each day of the window (yesterday and today, or back to the last successful load: the schedules'
catch-up rule) costs one request of one order: anything created after the day's newest stored order.
The warehouse is read briefly (its newest order per day); no run of the flow may be queued or running.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import dagster as dg
from filelock import Timeout

from integration_sync.connectors.kaspi import KaspiClient
from integration_sync.defs.kaspi_amocrm.assets import GROUP, ORDERS_KEY
from integration_sync.defs.kaspi_amocrm.resources import KaspiResource, kaspi_resource
from integration_sync.defs.kaspi_amocrm.schedules import _first_day, _request, kaspi_amocrm_job
from integration_sync.defs.kaspi_amocrm.tables import newest_per_day
from integration_sync.defs.resources import WarehouseResource
from integration_sync.defs.runs import push_in_progress
from integration_sync.lib.flow import not_ready
from integration_sync.lib.push import push_tags
from integration_sync.sync.normalize import KAZAKHSTAN
from integration_sync.sync.warehouse import Warehouse

# The warehouse's file lock is held for milliseconds by a run's writes; a sensor tick never waits long.
LOCK_WAIT_S = 5.0


def days_with_new_orders(client: KaspiClient, newest: dict[date, datetime], first: date, last: date) -> list[date]:
    """Days of first..last on which Kaspi has an order created after the newest one stored (any order,
    on a day with none stored): one page of one order per day."""
    found: list[date] = []
    day = first
    while day <= last:
        start = datetime.combine(day, time(0), KAZAKHSTAN)
        end = start + timedelta(days=1) - timedelta(milliseconds=1)
        if day in newest:
            start = max(start, newest[day] + timedelta(milliseconds=1))
        if start <= end and next(client.iter_orders(start, end, include_user=False), None) is not None:
            found.append(day)
        day += timedelta(days=1)
    return found


def check_new_orders(
    instance: dg.DagsterInstance, kaspi: KaspiResource, store: Warehouse, now: datetime
) -> dg.RunRequest | dg.SkipReason:
    """The sensor's decision at `now`: a run request over the catch-up window, or why not."""
    if push_in_progress(instance, push_tags(GROUP)):
        return dg.SkipReason(f"a {GROUP} run is queued or running")
    event = instance.get_latest_materialization_event(ORDERS_KEY)
    first = _first_day(now, event.timestamp if event else None)
    try:
        newest = newest_per_day(store, first.date(), now.date())
    except Timeout:
        return dg.SkipReason("the warehouse is busy; next minute")
    client = KaspiClient(
        kaspi.base_url,
        kaspi.token,
        page_size=1,
        max_window_days=kaspi.max_window_days,
        rate_per_s=kaspi.rate_per_s,
        rate_state_path=kaspi.rate_state_path(),
    )
    with client:
        found = days_with_new_orders(client, newest, first.date(), now.date())
    if not found:
        return dg.SkipReason(f"no new Kaspi order since {first:%Y-%m-%d}")
    return _request(first, now, f"new@{now:%Y-%m-%dT%H:%M}", "incremental")


@dg.sensor(
    job=kaspi_amocrm_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every minute: launch a run over yesterday and today (or back to the last load) only when "
    "Kaspi has an order the warehouse does not hold.",
)
def kaspi_new_orders(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.RunRequest | dg.SkipReason:
    unready = not_ready(GROUP)  # before the Kaspi resource is built: its variables may be missing
    if unready is not None:
        return unready
    kaspi = kaspi_resource().process_config_and_initialize()
    shared = warehouse.warehouse()
    store = Warehouse(shared.path, shared.migrations, lock_timeout_s=LOCK_WAIT_S, memory_limit=warehouse.memory_limit)
    return check_new_orders(context.instance, kaspi, store, datetime.now(KAZAKHSTAN))
