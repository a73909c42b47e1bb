"""The cms_orders flow end to end against the shop and its portal's emulators: the migration over the
export, what a re-run costs, quarantine and its release, webhooks, a lost warehouse."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from integration_sync import cli
from integration_sync.connectors.bitrix24 import Bitrix24Client
from integration_sync.sandbox.bitrix_shop import SHOP_WEBHOOK_TOKEN
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings
from integration_sync_tests.cms_orders import flow
from integration_sync_tests.dagster_support import asset_metadata, environment

DEALS = "bitrix24__shop_deals"


def shop_deals(control: httpx.Client) -> list[dict[str, Any]]:
    return [d for d in flow.deals(control) if d.get("ORIGINATOR_ID") == "bitrix_cms"]


def sql(env: dict[str, str], query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(env["WAREHOUSE_PATH"], read_only=True) as conn:
        return conn.execute(query, params or []).fetchall()


def export_orders(control: httpx.Client, env: dict[str, str]) -> list[dict[str, Any]]:
    url = env["BITRIX_WEBHOOK_URL"] + "export"
    headers = {"X-Api-Key": env["BITRIX_WEBHOOK_KEY"]}
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        answer = httpx.get(
            url, params={"entity": "orders", "date_from": "2000-01-01", "page": page, "page_size": 500}, headers=headers
        )
        body = json.loads(answer.content.decode("utf-8", "replace"))
        items += body["items"]
        if page >= body["pages"]:
            return items
        page += 1


def test_the_migration_puts_every_order_in_bitrix24_or_quarantine_and_a_rerun_costs_nothing(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow.flow_env(sandbox_env, data_dir)
    result = flow.run(env, flow.FORWARD)
    meta = asset_metadata(result, DEALS)
    orders = asset_metadata(result, "bitrix_cms__shop_orders")
    assert orders["orders_new"] == 400 and orders["turned_away"] == 0 and orders["recoded_text"] >= 1
    assert meta["orders"] == 400 and meta["orders_unaccounted"] == 0
    assert meta["orders_in_crm"] + meta["orders_quarantined"] == 400 and meta["orders_quarantined"] == meta["invalid"]
    reasons = dict(
        sql(env, "SELECT source_key, last_error FROM sync_state WHERE entity = 'shop_order' AND status = 'invalid'")
    )
    assert reasons and all(reason for reason in reasons.values())
    kinds = Counter(reason.split(":")[0].split(" ")[0] for reason in reasons.values())
    assert set(kinds) == {"empty", "zero", "ACCOUNT_NUMBER"}

    deals = shop_deals(control)
    assert len(deals) == meta["orders_in_crm"] == meta["created"]
    assert Counter(d["ORIGIN_ID"] for d in deals).most_common(1)[0][1] == 1  # one deal per order
    assert {d["CATEGORY_ID"] for d in deals} == {"3"}
    by_order = {int(d["ORIGIN_ID"]): d for d in deals}
    shop = {int(o["ID"]): o for o in export_orders(control, env)}
    stage_of = {"N": "C3:NEW", "P": "C3:PREPARATION", "S": "C3:FINAL_INVOICE", "F": "C3:WON", "D": "C3:LOSE"}
    for order_id, deal in by_order.items():
        order = shop[order_id]
        status = "D" if order["CANCELED"] == "Y" else order["STATUS_ID"]
        assert deal["STAGE_ID"] == stage_of.get(status, "C3:NEW"), order_id
        assert float(deal["OPPORTUNITY"]) == float(order["PRICE"])
        assert deal["CONTACT_ID"] not in (None, "", "0") or not (order["PROPERTIES"].get("PHONE") or order["USER_ID"])
    # the goal: Bitrix24 requests per new order <= 0.1, lookups batched too
    assert meta["api_requests"] / meta["created"] <= 0.1, meta["api_requests"]

    with environment(env), Bitrix24Client(env["CMS_B24_WEBHOOK_URL"]) as b24:
        sample = next(o for o in by_order if len(shop[o]["BASKET"]) >= 2)
        rows = b24.call("crm.deal.productrows.get", {"id": by_order[sample]["ID"]})
    assert [(r["PRODUCT_NAME"], r["QUANTITY"]) for r in rows] == [
        (line["NAME"], float(line["QUANTITY"])) for line in shop[sample]["BASKET"]
    ]
    assert all(int(r["PRODUCT_ID"]) > 0 for r in rows if int(str(shop[sample]["BASKET"][0]["PRODUCT_ID"])) < 900)

    again = flow.run(env, flow.FORWARD)
    for node in (DEALS, "bitrix24__shop_products", "bitrix24__shop_contacts"):
        second = asset_metadata(again, node)
        assert second["api_requests"] == 0 and second["created"] == 0 and second["updated"] == 0, node
    assert len(shop_deals(control)) == len(deals)


def _sign(body: bytes) -> dict[str, str]:
    digest = hmac.new(SHOP_WEBHOOK_TOKEN.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature": f"sha256={digest}", "Content-Type": "application/json"}


def _receiver(env: dict[str, str]) -> ReceiverServer:
    return ReceiverServer(ReceiverSettings(secret="", inbox_path=Path(env["WEBHOOK_INBOX_PATH"]), max_body_bytes=65536))


def _wait_delivered(control: httpx.Client, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        delivered = [d for d in control.get("/_sandbox/bitrix-shop/deliveries").json() if d["ok"]]
        if len(delivered) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"the shop delivered fewer than {count} webhooks")


def test_webhooks_make_deals_a_redelivery_makes_nothing_and_a_fixed_order_goes_through(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow.flow_env(sandbox_env, data_dir, WEBHOOK_TOKEN=SHOP_WEBHOOK_TOKEN)
    control.post("/_sandbox/reset", json={"seed": 5, "shop_orders": 0, "days": 3}).raise_for_status()
    with environment(env), _receiver(env) as receiver:
        control.post("/_sandbox/bitrix-shop/subscribe", json={"url": receiver.url("/webhooks/bitrix/order")})
        placed = control.post("/_sandbox/bitrix-shop/orders", json={"count": 30}).json()["placed"]
        _wait_delivered(control, 30)
        result = flow.run(env, flow.FORWARD, days=2, from_export=False)
        meta = asset_metadata(result, DEALS)
        orders = asset_metadata(result, "bitrix_cms__shop_orders")
        assert orders["from_webhooks"] == 30 and orders["from_export"] == 0
        assert meta["orders"] == 30 and meta["orders_unaccounted"] == 0
        assert {int(d["ORIGIN_ID"]) for d in shop_deals(control)} <= set(placed)

        # the shop's agent sends one order again: 200 duplicate, and nothing new
        order = flow.shop_order(control, placed[0])
        body = json.dumps({"event": "order.saved", "is_new": False, "order": order}, ensure_ascii=False).encode()
        first = httpx.post(receiver.url("/webhooks/bitrix/order"), content=body, headers=_sign(body))
        again = httpx.post(receiver.url("/webhooks/bitrix/order"), content=body, headers=_sign(body))
        assert first.json()["status"] in ("accepted", "duplicate") and again.json() == {"status": "duplicate"}

        # a quarantined order fixed in the shop: its next version goes through
        invalid = dict(sql(env, "SELECT source_key, last_error FROM sync_state WHERE status = 'invalid'"))
        fixed = {
            **order,
            "ID": 990001,
            "ACCOUNT_NUMBER": "990001",
            "BASKET": [],
            "DATE_UPDATE": order["DATE_UPDATE"],
        }
        body = json.dumps({"event": "order.saved", "order": fixed}, ensure_ascii=False).encode()
        assert httpx.post(receiver.url("/webhooks/bitrix/order"), content=body, headers=_sign(body)).status_code == 200
        flow.run(env, flow.FORWARD, days=2, from_export=False)
        reasons = dict(sql(env, "SELECT source_key, last_error FROM sync_state WHERE status = 'invalid'"))
        assert reasons["990001"].startswith("empty basket") and len(reasons) == len(invalid) + 1
        fixed["BASKET"] = order["BASKET"] or [{"PRODUCT_ID": 101, "NAME": "Букет", "QUANTITY": 1, "PRICE": "15000"}]
        fixed["DATE_UPDATE"] = "2099-01-01T10:00:00+05:00"  # a later save
        body = json.dumps({"event": "order.saved", "order": fixed}, ensure_ascii=False).encode()
        assert httpx.post(receiver.url("/webhooks/bitrix/order"), content=body, headers=_sign(body)).status_code == 200
        result = flow.run(env, flow.FORWARD, days=2, from_export=False)
        assert "990001" not in dict(sql(env, "SELECT source_key, last_error FROM sync_state WHERE status = 'invalid'"))
        assert any(d["ORIGIN_ID"] == "990001" for d in shop_deals(control))
        assert asset_metadata(result, DEALS)["orders_unaccounted"] == 0


def test_a_lost_warehouse_finds_every_deal_contact_and_product_instead_of_doubling_them(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    control.post("/_sandbox/reset", json={"seed": 9, "shop_orders": 120, "days": 3}).raise_for_status()
    env = flow.flow_env(sandbox_env, data_dir)
    flow.run(env, flow.FORWARD)
    deals = len(shop_deals(control))
    contacts = len(control.get("/_sandbox/bitrix24-shop/contacts").json())
    Path(env["WAREHOUSE_PATH"]).unlink()
    result = flow.run(env, flow.FORWARD)
    meta = asset_metadata(result, DEALS)
    assert meta["deals_found"] == deals and meta["created"] == 0 and meta["orders_unaccounted"] == 0
    assert len(shop_deals(control)) == deals
    assert len(control.get("/_sandbox/bitrix24-shop/contacts").json()) == contacts
    assert asset_metadata(result, "bitrix24__shop_products")["created"] == 0


def test_a_day_loaded_again_keeps_export_only_orders_and_trace_shows_a_quarantined_one(
    sandbox_env: dict[str, str],
    data_dir: Path,
    control: httpx.Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    control.post("/_sandbox/reset", json={"seed": 7, "shop_orders": 80, "days": 2}).raise_for_status()
    env = flow.flow_env(sandbox_env, data_dir)
    flow.run(env, flow.FORWARD)
    # the same days again, from the inbox only (which never saw these orders): nothing is dropped
    result = flow.run(env, [flow.shop_orders, flow.shop_deals], from_export=False)
    assert sql(env, "SELECT count(*) FROM cms_orders") == [(80,)]
    assert asset_metadata(result, DEALS)["orders"] == 80 and asset_metadata(result, DEALS)["api_requests"] == 0

    [(key, reason)] = sql(
        env, "SELECT source_key, last_error FROM sync_state WHERE status = 'invalid' ORDER BY source_key LIMIT 1"
    )
    monkeypatch.chdir(tmp_path)
    with environment(env):
        code = cli.main(["trace", "cms_orders", key, "--json"])
    out, _ = capsys.readouterr()
    story = json.loads(out)
    assert code == 0 and story["source"]["cms_orders"]["order"]["ID"] == int(key)
    [state] = story["sync_state"]
    assert state["status"] == "invalid" and state["last_error"] == reason
