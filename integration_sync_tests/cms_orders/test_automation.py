"""What starts cms_orders runs: the inbox sensor (a run per order day, reading only the inbox) and the
stage-history sensor (one request a tick; a run only when a deal moved)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import httpx

from integration_sync.defs.cms_orders.automation import cms_retry, deal_stage_moves, shop_order_hooks
from integration_sync.defs.cms_orders.definitions import resources
from integration_sync.sandbox.bitrix_shop import SHOP_WEBHOOK_TOKEN
from integration_sync_tests.cms_orders import flow
from integration_sync_tests.cms_orders.test_flow import _receiver, _wait_delivered, shop_deals
from integration_sync_tests.dagster_support import asset_metadata, environment


def _hooks(cursor: str | None) -> dg.SensorResult:
    result = shop_order_hooks(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), cursor=cursor))
    assert isinstance(result, dg.SensorResult)
    return result


def _stages(cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(),
        cursor=cursor,
        resources={"bitrix24_shop": resources()["bitrix24_shop"]},
    )
    result = deal_stage_moves(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_new_order_webhooks_ask_for_a_run_of_their_day_reading_only_the_inbox(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow.flow_env(sandbox_env, data_dir, WEBHOOK_TOKEN=SHOP_WEBHOOK_TOKEN)
    control.post("/_sandbox/reset", json={"seed": 4, "shop_orders": 0, "days": 2}).raise_for_status()
    with environment(env), _receiver(env) as receiver:
        control.post("/_sandbox/bitrix-shop/subscribe", json={"url": receiver.url("/webhooks/bitrix/order")})
        control.post("/_sandbox/bitrix-shop/orders", json={"count": 5}).raise_for_status()
        _wait_delivered(control, 5)
        first = _hooks(None)
        [request] = first.run_requests or []
        assert request.partition_key == flow.today().isoformat()
        assert request.run_config == {"ops": {flow.ORDERS_OP: {"config": {"from_export": False}}}}
        assert not (_hooks(first.cursor).run_requests or [])  # nothing new: nothing asked


def test_a_deal_moved_in_bitrix24_asks_for_one_status_run(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    control.post("/_sandbox/reset", json={"seed": 4, "shop_orders": 10, "days": 1}).raise_for_status()
    env = flow.flow_env(sandbox_env, data_dir)
    flow.run(env, flow.FORWARD)
    with environment(env):
        first = _stages(None)  # a first look: the moves so far are the reconciliation's, no run at start
        assert not (first.run_requests or []) and first.cursor
        idle = _stages(first.cursor)
        assert not (idle.run_requests or []) and idle.cursor == first.cursor
        deal = shop_deals(control)[0]["ID"]
        control.post(f"/_sandbox/bitrix24-shop/deals/{deal}/stage", json={"stage_id": "C3:WON"}).raise_for_status()
        moved = _stages(idle.cursor)
    [request] = moved.run_requests or []
    assert request.run_key and moved.cursor != idle.cursor
    result = flow.run(env, flow.BACK)
    assert asset_metadata(result, "bitrix_cms__order_statuses")["statuses_changed"] == 1


def test_the_retry_schedule_pushes_only_while_records_wait(sandbox_env: dict[str, str], data_dir: Path) -> None:
    env = flow.flow_env(sandbox_env, data_dir)
    when = datetime.now(UTC)
    with environment(env), dg.instance_for_test() as instance:
        idle = cms_retry(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
        assert isinstance(idle, dg.SkipReason)
        key = dg.AssetKey(["bitrix_cms", "order_statuses"])
        instance.report_runless_asset_event(dg.AssetMaterialization(key, metadata={"retry_queue": 2}))
        due = cms_retry(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
    assert isinstance(due, dg.RunRequest)
