"""The seed's metrics as metadata and checks: webhook success rate and lag from the receiver's receipts,
the time the flow took to recover after Bitrix24 was down, every order accounted for."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx

from integration_sync.defs.cms_orders.metrics import recovery
from integration_sync.lib.push import push_tags
from integration_sync.sandbox.bitrix_shop import SHOP_WEBHOOK_TOKEN
from integration_sync_tests.cms_orders import flow
from integration_sync_tests.cms_orders.test_flow import _receiver, _wait_delivered
from integration_sync_tests.dagster_support import asset_metadata, environment


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_webhook_numbers_reach_the_metadata_and_a_low_success_rate_fails_the_check(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow.flow_env(sandbox_env, data_dir, WEBHOOK_TOKEN=SHOP_WEBHOOK_TOKEN)
    control.post("/_sandbox/reset", json={"seed": 3, "shop_orders": 0, "days": 2}).raise_for_status()
    with environment(env), _receiver(env) as receiver:
        control.post("/_sandbox/bitrix-shop/subscribe", json={"url": receiver.url("/webhooks/bitrix/order")})
        control.post("/_sandbox/bitrix-shop/orders", json={"count": 20}).raise_for_status()
        _wait_delivered(control, 20)
        receiver.app.state.receipts.flush()  # written about once a second: not yet, maybe
        selection = [flow.shop_orders]
        result = flow.run(env, selection, days=2, from_export=False)
        meta = asset_metadata(result, flow.ORDERS_OP)
        check = _check(result, "webhook_success_rate")
        assert meta["webhooks_received"] == 20 and meta["webhooks_success_rate"] == 1.0 and check.passed
        assert meta["webhooks_delivery_lag_p95_s"] >= 0 and meta["webhooks_latency_p99_ms"] > 0

        # a shop signing with an old token: every webhook refused, the rate falls under 95%
        body = json.dumps({"event": "order.saved", "order": flow.shop_order(control, 1001)}).encode()
        for _ in range(2):
            bad = httpx.post(receiver.url("/webhooks/bitrix/order"), content=body, headers={"X-Signature": "sha256=00"})
            assert bad.status_code == 401
        receiver.app.state.receipts.flush()
        result = flow.run(env, selection, days=2, from_export=False)
        meta = asset_metadata(result, flow.ORDERS_OP)
        check = _check(result, "webhook_success_rate")
        assert meta["webhooks_refused_auth"] == 2 and not check.passed
        assert abs(meta["webhooks_success_rate"] - 20 / 22) < 1e-9


def test_recovery_after_bitrix24_refused_us_is_measured_from_the_runs(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    control.post("/_sandbox/reset", json={"seed": 3, "shop_orders": 30, "days": 2}).raise_for_status()
    env = flow.flow_env(sandbox_env, data_dir)
    instance = dg.DagsterInstance.ephemeral()
    since = datetime.now(UTC) - timedelta(minutes=1)
    down = {"error_burst": {"count": 10_000, "status": 401}}  # the portal refusing us: down for the flow
    control.post("/_sandbox/faults", json={"bitrix24-shop": down}).raise_for_status()
    failed = flow.run(env, flow.FORWARD, instance=instance, tags=push_tags("cms_orders"), raise_on_error=False)
    assert not failed.success
    open_outage = recovery(instance, push_tags("cms_orders"), since)
    assert open_outage.open_s is not None and open_outage.recoveries_s == []
    time.sleep(0.5)
    again = flow.run(env, [flow.PRODUCTS], instance=instance, tags=push_tags("cms_orders"), raise_on_error=False)
    assert not again.success
    control.post("/_sandbox/faults", json={"bitrix24-shop": None}).raise_for_status()
    result = flow.run(env, flow.FORWARD, instance=instance, tags=push_tags("cms_orders"))
    seen = recovery(instance, push_tags("cms_orders"), since)
    first, last = (instance.get_run_record_by_id(r.run_id) for r in (failed, result))
    assert first is not None and last is not None and first.start_time and last.end_time
    assert seen.open_s is None and len(seen.recoveries_s) == 1
    assert abs(seen.recoveries_s[0] - (last.end_time - first.start_time)) < 0.01  # from the first failure on
    check = _check(result, "recovered_within_5_minutes")
    assert check.passed and check.metadata["outages"].value == 1
    assert _check(result, "orders_accounted").passed
