"""A deals push whose answer is lost after Bitrix24 wrote, and one killed mid-run (SIGKILL, no
cleanup): run again, every order ends with exactly one deal."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx

from integration_sync_tests.cms_orders import flow
from integration_sync_tests.cms_orders.test_flow import DEALS, shop_deals
from integration_sync_tests.crash_support import held_writes, kill_at_held_write
from integration_sync_tests.dagster_support import asset_metadata

CHILD = """
import json, sys
from integration_sync_tests.cms_orders import flow
flow.run(json.loads(sys.argv[1]), [flow.shop_orders, flow.shop_deals])
"""


def _prepare(sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client) -> dict[str, str]:
    control.post("/_sandbox/reset", json={"seed": 13, "shop_orders": 150, "days": 3}).raise_for_status()
    env = flow.flow_env(sandbox_env, data_dir)
    flow.run(env, [flow.shop_catalog, flow.PRODUCTS, flow.CONTACTS])  # the deals' products and contacts exist
    return env


def _assert_one_deal_per_order(control: httpx.Client, meta: dict[str, object]) -> None:
    deals = shop_deals(control)
    assert max(Counter(d["ORIGIN_ID"] for d in deals).values()) == 1
    assert len(deals) == meta["orders_in_crm"] and meta["orders_unaccounted"] == 0


def test_an_answer_lost_after_the_write_makes_no_second_deal(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = _prepare(sandbox_env, data_dir, control)
    drop = {"count": 1, "methods": ["batch"], "skip": 2}  # the third batch: a write, committed, answer lost
    control.post("/_sandbox/faults", json={"bitrix24-shop": {"commit_then_drop": drop}}).raise_for_status()
    first = flow.run(env, [flow.shop_orders, flow.shop_deals], raise_on_error=False)
    assert held_writes(control, "bitrix24-shop") == 1
    control.post("/_sandbox/faults", json={"bitrix24-shop": None}).raise_for_status()
    result = first if first.success and asset_metadata(first, DEALS)["orders_unaccounted"] == 0 else None
    if result is None:
        result = flow.run(env, [flow.shop_orders, flow.shop_deals])
    _assert_one_deal_per_order(control, asset_metadata(result, DEALS))


def test_a_push_killed_mid_run_then_rerun_makes_every_deal_once(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = _prepare(sandbox_env, data_dir, control)
    drop = {"count": 1, "methods": ["batch"], "skip": 3, "hold_ms": 20_000}
    assert kill_at_held_write(control, "bitrix24-shop", drop, CHILD, json.dumps(env)) == 1
    made = len(shop_deals(control))
    assert 0 < made < 140, "the kill should land mid-push"
    result = flow.run(env, [flow.shop_orders, flow.shop_deals])
    meta = asset_metadata(result, DEALS)
    _assert_one_deal_per_order(control, meta)
    assert meta["rejected"] == 0
