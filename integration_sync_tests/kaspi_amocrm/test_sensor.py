"""Kaspi's new-orders sensor (an idle minute launches no run) and the 10-minute reconciliation, which
always runs even while new-order runs keep the flow busy (issue 11)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest

from integration_sync.defs.kaspi_amocrm.assets import MODE_TAG
from integration_sync.defs.kaspi_amocrm.mapping import kazakhstan_day
from integration_sync.defs.kaspi_amocrm.resources import KaspiResource
from integration_sync.defs.kaspi_amocrm.schedules import kaspi_reconciliation
from integration_sync.defs.kaspi_amocrm.sensors import check_new_orders, kaspi_new_orders
from integration_sync.defs.kaspi_amocrm.tables import OrderRow, store_orders
from integration_sync.defs.resources import WarehouseResource
from integration_sync.lib.push import push_tags
from integration_sync.sync.normalize import KAZAKHSTAN
from integration_sync.sync.warehouse import Warehouse
from integration_sync_tests.dagster_support import environment
from integration_sync_tests.kaspi_amocrm.flow import flow_env, today

FLOW_TAGS = push_tags("kaspi_amocrm")


@contextmanager
def disposed(instance: dg.DagsterInstance) -> Iterator[dg.DagsterInstance]:
    """The instance, disposed at the end but not entered: entering makes its state storage the
    process's current one, which a later test loading definitions would find closed."""
    try:
        yield instance
    finally:
        instance.dispose()


def put_run(instance: dg.DagsterInstance, run_id: str, status: dg.DagsterRunStatus, mode: str) -> None:
    """A run of the flow's job in `status` (replacing one of the same id)."""
    if instance.has_run(run_id):
        instance.delete_run(run_id)
    tags = {**FLOW_TAGS, MODE_TAG: mode}
    instance.add_run(dg.DagsterRun(job_name="kaspi_amocrm_job", run_id=run_id, status=status, tags=tags))


def store_the_last_two_days(kaspi: KaspiResource, store: Warehouse) -> None:
    """What a run over yesterday and today stores (order lines left out: the sensor reads orders only)."""
    first, last = today() - timedelta(days=1), today()
    start = datetime.combine(first, time(0), KAZAKHSTAN)
    with kaspi.client() as client:
        orders = client.list_orders(start, start + timedelta(days=2) - timedelta(milliseconds=1)).orders
    rows = [
        OrderRow(o.code, o.id, date.fromisoformat(kazakhstan_day(o.attributes_dict()) or ""), o.attributes_dict(), [])
        for o in orders
    ]
    assert rows, "the sandbox has orders on these days"
    store_orders(store, rows, first_day=first, last_day=last, api_totals={}, run_id="load")


def test_reconciliation_runs_at_every_tenth_minute_while_new_order_runs_keep_the_flow_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11: both skipped while any run of the flow was active, and the minute's run won every :x0.
    Worst case here: a new-orders run is active at every tick; each :x0 still queues a reconciliation,
    and a second one never piles up behind it."""
    for name, value in {"KASPI_TOKEN": "t", "AMO_BASE_URL": "http://127.0.0.1:9", "AMO_PIPELINE_ID": "1"}.items():
        monkeypatch.setenv(name, value)  # configured: a flow that is not skips every tick
    start = datetime(2026, 11, 23, 12, 0, tzinfo=KAZAKHSTAN)
    queued: list[str] = []
    with disposed(dg.DagsterInstance.local_temp(str(tmp_path))) as instance:
        put_run(instance, "new-orders", dg.DagsterRunStatus.STARTED, "incremental")  # never done, here
        for minute in range(0, 60, 10):
            tick = start + timedelta(minutes=minute)
            context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
            request = kaspi_reconciliation(context)
            assert isinstance(request, dg.RunRequest), f"{tick:%H:%M}: {request}"
            assert request.tags[MODE_TAG] == "full"
            assert request.tags["dagster/asset_partition_range_start"] == "2026-11-10"
            queued.append(f"{tick:%H:%M}")
            put_run(instance, "reconcile", dg.DagsterRunStatus.NOT_STARTED, "full")  # waiting its turn
            again = kaspi_reconciliation(context)  # while it waits: no second one
            assert isinstance(again, dg.SkipReason) and "full" in str(again.skip_message)
            # the sensor waits for it too (it asks nothing: nothing listens on port 9)
            gone = KaspiResource(base_url="http://127.0.0.1:9/", token="t")
            idle = check_new_orders(instance, gone, Warehouse(Path("/nonexistent/w.duckdb")), tick)
            assert isinstance(idle, dg.SkipReason) and "queued or running" in str(idle.skip_message)
            put_run(instance, "reconcile", dg.DagsterRunStatus.SUCCESS, "full")
    assert queued == [f"12:{m}0" for m in range(6)]


def test_an_idle_minute_launches_nothing_and_a_new_order_one_run(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow_env(sandbox_env, data_dir)
    kaspi = KaspiResource(base_url=env["KASPI_BASE_URL"], token=env["KASPI_TOKEN"], state_dir=str(data_dir))
    warehouse = WarehouseResource(database=env["WAREHOUSE_PATH"])
    store_the_last_two_days(kaspi, warehouse.warehouse())
    resources = {"warehouse": warehouse}

    def tick(instance: dg.DagsterInstance) -> dg.RunRequest | dg.SkipReason:
        with environment(env):  # the sensor reads the flow's settings as a deployment does
            result = kaspi_new_orders(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(result, dg.RunRequest | dg.SkipReason)
        return result

    def kaspi_requests() -> int:
        return int(control.get("/_sandbox/stats").json()["kaspi"]["requests"])

    with disposed(dg.DagsterInstance.ephemeral()) as instance:
        before = kaspi_requests()
        idle = tick(instance)
        assert isinstance(idle, dg.SkipReason), idle
        assert kaspi_requests() - before == 2  # one page of one order per day: yesterday and today
        control.post("/_sandbox/kaspi/orders", json={"count": 1}).raise_for_status()
        request = tick(instance)
        assert isinstance(request, dg.RunRequest), request
        assert request.tags["dagster/asset_partition_range_start"] == (today() - timedelta(days=1)).isoformat()
        assert request.tags["dagster/asset_partition_range_end"] == today().isoformat()
        assert request.tags[MODE_TAG] == "incremental"
        put_run(instance, "busy", dg.DagsterRunStatus.STARTED, "incremental")
        assert isinstance(tick(instance), dg.SkipReason)  # one run at a time, the new order waits for the next
