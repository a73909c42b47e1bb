"""Both directions at once: managers' moves reach the shop, the shop's changes reach the deals, our own
writes read back move nothing, both-sides-changed is settled by the declared rule and logged, and a
shop that is down gets its statuses once it is back."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from integration_sync_tests.cms_orders import flow
from integration_sync_tests.cms_orders.test_flow import DEALS, shop_deals, sql
from integration_sync_tests.dagster_support import asset_metadata

STATUSES = "bitrix_cms__order_statuses"


def _move(control: httpx.Client, deal_id: str, stage: str) -> None:
    control.post(f"/_sandbox/bitrix24-shop/deals/{deal_id}/stage", json={"stage_id": stage}).raise_for_status()


def _setup(sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client) -> tuple[dict[str, str], dict[int, str]]:
    control.post("/_sandbox/reset", json={"seed": 21, "shop_orders": 40, "days": 2}).raise_for_status()
    env = flow.flow_env(sandbox_env, data_dir)
    flow.run(env)
    deals = {int(d["ORIGIN_ID"]): str(d["ID"]) for d in shop_deals(control)}
    return env, deals


def _open(control: httpx.Client, deals: dict[int, str], count: int) -> list[int]:
    """Orders still new in the shop (N, not cancelled), each with a deal."""
    found = [o for o in sorted(deals) if flow.shop_order(control, o)["STATUS_ID"] == "N"]
    found = [o for o in found if flow.shop_order(control, o)["CANCELED"] == "N"]
    assert len(found) >= count
    return found[:count]


def test_moves_go_both_ways_and_echoes_move_nothing(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env, deals = _setup(sandbox_env, data_dir, control)
    won, assembling, shipped = _open(control, deals, 3)
    _move(control, deals[won], "C3:WON")
    _move(control, deals[assembling], "C3:EXECUTING")  # not mapped back: the shop is not told

    result = flow.run(env, flow.BACK)
    meta = asset_metadata(result, STATUSES)
    assert meta["created"] + meta["updated"] == 1 and meta["rejected"] == 0
    assert flow.shop_order(control, won)["STATUS_ID"] == "F"
    assert flow.shop_order(control, assembling)["STATUS_ID"] == "N"

    # the shop's new version comes back (export): an echo; no deal is moved back, no request is sent
    control.post(f"/_sandbox/bitrix-shop/orders/{shipped}/status", json={"status_id": "S"}).raise_for_status()
    result = flow.run(env)
    meta = asset_metadata(result, DEALS)
    assert meta["api_requests"] == 1 and meta["stage_moves"] == 1  # only the shop's own change
    stages = {d["ID"]: d["STAGE_ID"] for d in shop_deals(control)}
    assert stages[deals[won]] == "C3:WON" and stages[deals[assembling]] == "C3:EXECUTING"
    assert stages[deals[shipped]] == "C3:FINAL_INVOICE"
    assert asset_metadata(result, STATUSES)["created"] + asset_metadata(result, STATUSES)["updated"] == 0

    again = flow.run(env)
    assert asset_metadata(again, DEALS)["api_requests"] == 0
    assert asset_metadata(again, STATUSES)["api_requests"] == 0


def test_both_sides_changed_is_settled_by_the_later_change_and_logged(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env, deals = _setup(sandbox_env, data_dir, control)
    shop_first, crm_first = _open(control, deals, 2)
    # order 1: the shop marks it paid, then a manager cancels the deal → the manager's later move wins
    control.post(f"/_sandbox/bitrix-shop/orders/{shop_first}/status", json={"status_id": "P"}).raise_for_status()
    # order 2: a manager cancels the deal, then the shop marks it shipped → the shop's later change wins
    _move(control, deals[crm_first], "C3:LOSE")
    time.sleep(1.1)
    flow.run(env, [flow.shop_deal_stages])  # the history is read between the two changes
    time.sleep(1.1)  # both sides keep whole seconds: a tie would go to the shop
    _move(control, deals[shop_first], "C3:LOSE")
    time.sleep(1.1)
    control.post(f"/_sandbox/bitrix-shop/orders/{crm_first}/status", json={"status_id": "S"}).raise_for_status()

    flow.run(env)
    assert flow.shop_order(control, shop_first)["STATUS_ID"] == "D"
    stages = {d["ID"]: d["STAGE_ID"] for d in shop_deals(control)}
    assert stages[deals[shop_first]] == "C3:LOSE"
    assert stages[deals[crm_first]] == "C3:FINAL_INVOICE"
    assert flow.shop_order(control, crm_first)["STATUS_ID"] == "S"
    logged = sql(env, "SELECT source_key, message FROM sync_log WHERE operation = 'conflict' ORDER BY source_key")
    assert {(int(k), m) for k, m in logged} >= {
        (shop_first, "status: crm wins (newer)"),
        (crm_first, "status: shop wins (newer)"),
    }


def test_a_shop_that_is_down_gets_its_statuses_when_it_is_back(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env, deals = _setup(sandbox_env, data_dir, control)
    [order] = _open(control, deals, 1)
    _move(control, deals[order], "C3:FINAL_INVOICE")
    down = {"error_burst": {"count": 1000, "status": 503, "methods": ["status"]}}
    control.post("/_sandbox/faults", json={"bitrix-shop": down}).raise_for_status()
    flow.run(env, flow.BACK, raise_on_error=False)
    assert flow.shop_order(control, order)["STATUS_ID"] == "N"
    waiting = sql(env, "SELECT status FROM sync_state WHERE entity = 'order_status' AND source_key = ?", [str(order)])
    assert waiting != [("synced",)]  # not lost, not marked sent

    control.post("/_sandbox/faults", json={"bitrix-shop": None}).raise_for_status()
    result = flow.run(env, flow.BACK)
    assert flow.shop_order(control, order)["STATUS_ID"] == "S"
    assert asset_metadata(result, STATUSES)["retry_queue"] == 0
