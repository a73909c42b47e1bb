"""The flower shop's own Bitrix24 portal (``/bitrix24-shop``): deals keyed by ORIGIN_ID, the catalog,
product rows, the stage history, over real HTTP through the project's Bitrix24 connector."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from integration_sync.connectors.bitrix24 import Bitrix24Client
from integration_sync.connectors.errors import ApiError
from integration_sync.sandbox.bitrix24_shop import SHOP_CATEGORY_ID, shop_portal_env
from integration_sync.sandbox.core import iso_moscow
from integration_sync.sandbox.server import SandboxConfig, SandboxServer

FAST: dict[str, Any] = {"seed": 5, "abcp_users": 20, "bitrix24_rate_multiplier": 1000.0}
ABCP_HOOK = "/bitrix24/rest/1/sandboxb24webhookcode/"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(**FAST)) as srv:
        yield srv


@pytest.fixture
def http(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        assert client.post("/_sandbox/reset", json=FAST).status_code == 200
        yield client


@pytest.fixture
def b24(server: SandboxServer, http: httpx.Client) -> Iterator[Bitrix24Client]:
    with Bitrix24Client(shop_portal_env(server.base_url)["CMS_B24_WEBHOOK_URL"], rate=1000, burst=1000) as client:
        yield client


def history(b24: Bitrix24Client, **params: Any) -> dict[str, Any]:
    return b24.call_raw("crm.stagehistory.list", {"entityTypeId": 2, **params})


def test_shop_portal_has_its_own_webhook_and_pipeline(server: SandboxServer, http: httpx.Client) -> None:
    url = shop_portal_env(server.base_url)["CMS_B24_WEBHOOK_URL"]
    assert url.startswith(f"{server.base_url}/bitrix24-shop/rest/")
    abcp_code_on_shop = http.post("/bitrix24-shop/rest/1/sandboxb24webhookcode/crm.deal.list", json={})
    assert abcp_code_on_shop.status_code == 401
    assert abcp_code_on_shop.json()["error"] == "INVALID_CREDENTIALS"
    assert http.post(url.replace(server.base_url, "") + "crm.deal.list", json={}).status_code == 200
    with Bitrix24Client(url, rate=1000, burst=1000) as b24:
        categories = b24.call("crm.category.list", {"entityTypeId": 2})["categories"]
        assert {"id": SHOP_CATEGORY_ID, "name": "Интернет-магазин"}.items() <= categories[1].items()
        stages = [s["STATUS_ID"] for s in b24.call("crm.dealcategory.stage.list", {"id": SHOP_CATEGORY_ID})]
        assert stages == ["C3:NEW", "C3:PREPARATION", "C3:EXECUTING", "C3:FINAL_INVOICE", "C3:WON", "C3:LOSE"]
        deal = b24.call("crm.deal.add", {"fields": {"CATEGORY_ID": SHOP_CATEGORY_ID, "STAGE_ID": "NEW"}})
        row = b24.call("crm.deal.get", {"id": deal})
        assert (row["STAGE_ID"], row["CATEGORY_ID"], row["CURRENCY_ID"]) == ("C3:NEW", "3", "KZT")


def test_deal_found_by_origin_id_after_a_lost_warehouse(b24: Bitrix24Client) -> None:
    ours = {"CATEGORY_ID": SHOP_CATEGORY_ID, "ORIGINATOR_ID": "cms_orders", "TITLE": "Заказ 1234"}
    first = b24.call("crm.deal.add", {"fields": {**ours, "ORIGIN_ID": "1234"}})
    b24.call("crm.deal.add", {"fields": {**ours, "ORIGIN_ID": "12345", "TITLE": "Заказ 12345"}})
    # the warehouse is gone: the deal is found again by the order id alone, not by the seeded manager deals
    found = list(b24.iter_list("crm.deal.list", filter={"ORIGINATOR_ID": "cms_orders", "ORIGIN_ID": "1234"}))
    assert [d["ID"] for d in found] == [str(first)]
    assert found[0]["ORIGIN_ID"] == "1234"
    assert len(list(b24.iter_list("crm.deal.list", filter={"ORIGINATOR_ID": "cms_orders"}))) == 2
    assert list(b24.iter_list("crm.deal.list", filter={"ORIGIN_ID": "999"})) == []
    all_deals = list(b24.iter_list("crm.deal.list"))
    assert len(all_deals) == 4 and sum(1 for d in all_deals if d["ORIGIN_ID"] is None) == 2


def test_product_rows_replace_and_the_catalog(b24: Bitrix24Client) -> None:
    seeded = b24.call("crm.product.list", {"filter": {"NAME": "Букет «Нежность»"}})
    assert len(seeded) == 1 and seeded[0]["XML_ID"] == seeded[0]["ID"]  # made by hand: XML_ID is the ID
    product = b24.call("crm.product.add", {"fields": {"NAME": "Тюльпаны", "XML_ID": "cms-101", "PRICE": 9000}})
    listed = b24.call("crm.product.list", {"filter": {"XML_ID": "cms-101"}})
    assert [(p["ID"], p["PRICE"], p["CURRENCY_ID"]) for p in listed] == [(str(product), "9000.00", "KZT")]
    with pytest.raises(ApiError, match="NAME") as failed:
        b24.call("crm.product.add", {"fields": {"XML_ID": "cms-102"}})
    assert failed.value.status == 400
    adopted = b24.call("crm.product.update", {"id": seeded[0]["ID"], "fields": {"XML_ID": "cms:101", "PRICE": "15500"}})
    assert adopted is True
    [mine] = b24.call("crm.product.list", {"filter": {"XML_ID": "cms:101"}})
    assert (mine["ID"], mine["NAME"], mine["PRICE"]) == (seeded[0]["ID"], "Букет «Нежность»", "15500.00")
    with pytest.raises(ApiError, match="not found"):
        b24.call("crm.product.update", {"id": 999_999, "fields": {"PRICE": 1}})
    with pytest.raises(ApiError, match="NAME"):
        b24.call("crm.product.update", {"id": product, "fields": {"NAME": ""}})
    deal = b24.call("crm.deal.add", {"fields": {"CATEGORY_ID": SHOP_CATEGORY_ID}})
    rows = [
        {"PRODUCT_ID": product, "PRICE": "9000.00", "QUANTITY": 2},
        {"PRODUCT_ID": 0, "PRODUCT_NAME": "Открытка", "PRICE": 500, "QUANTITY": 1},
    ]
    assert b24.call("crm.deal.productrows.set", {"id": deal, "rows": rows}) is True
    got = b24.call("crm.deal.productrows.get", {"id": deal})
    assert [(r["PRODUCT_ID"], r["PRODUCT_NAME"], r["QUANTITY"]) for r in got] == [
        (product, "Тюльпаны", 2.0),
        (0, "Открытка", 1.0),
    ]
    assert b24.call("crm.deal.get", {"id": deal})["OPPORTUNITY"] == "18500.00"
    b24.call("crm.deal.productrows.set", {"id": deal, "rows": [{"PRODUCT_NAME": "Букет", "PRICE": 100}]})
    assert [r["PRODUCT_NAME"] for r in b24.call("crm.deal.productrows.get", {"id": deal})] == ["Букет"]


def test_stage_history_pages_and_filters(server: SandboxServer, b24: Bitrix24Client) -> None:
    seeded = history(b24)
    assert seeded["total"] == 4 and "next" not in seeded  # a manager's deal created, moved twice; another created
    assert [r["TYPE_ID"] for r in seeded["result"]["items"]] == [1, 2, 3, 1]
    first = seeded["result"]["items"][0]
    assert set(first) == {"ID", "TYPE_ID", "OWNER_ID", "CREATED_TIME", "CATEGORY_ID", "STAGE_SEMANTIC_ID", "STAGE_ID"}
    assert isinstance(first["ID"], int) and isinstance(first["OWNER_ID"], int) and first["CATEGORY_ID"] == 3
    server.sandbox.clock.advance(60)
    since = iso_moscow(server.sandbox.clock.now())
    fields = {"CATEGORY_ID": SHOP_CATEGORY_ID}
    for chunk in range(2):
        outcome = b24.batch(
            {f"d{i}": ("crm.deal.add", {"fields": fields}) for i in range(30 * chunk, 30 * chunk + 30)}, halt=True
        )
        assert not outcome.errors
    page1 = history(b24, order={"ID": "ASC"})
    assert (len(page1["result"]["items"]), page1["total"], page1["next"]) == (50, 64, 50)
    page2 = history(b24, order={"ID": "ASC"}, start=50)
    assert len(page2["result"]["items"]) == 14 and "next" not in page2
    assert len(list(b24.iter_list("crm.stagehistory.list", params={"entityTypeId": 2}))) == 64
    newer = history(b24, filter={">=CREATED_TIME": since})
    assert newer["total"] == 60
    last_seen = page1["result"]["items"][49]["ID"]
    assert history(b24, filter={">ID": last_seen})["total"] == 14
    owner = page2["result"]["items"][-1]["OWNER_ID"]
    assert [r["OWNER_ID"] for r in history(b24, filter={"OWNER_ID": owner})["result"]["items"]] == [owner]
    assert history(b24, filter={"CATEGORY_ID": 0})["total"] == 1
    assert history(b24, order={"ID": "DESC"})["result"]["items"][0]["OWNER_ID"] == owner
    bad = httpx.post(
        shop_portal_env(server.base_url)["CMS_B24_WEBHOOK_URL"] + "crm.stagehistory.list",
        json={"entityTypeId": 2, "filter": {"UNKNOWN": 1}},
    )
    assert (bad.status_code, bad.json()["error"]) == (400, "INVALID_ARG_VALUE")
    assert history(b24, entityTypeId=1)["result"] == {"items": []}


def test_a_managers_stage_change_and_ours_are_in_the_history(
    server: SandboxServer, http: httpx.Client, b24: Bitrix24Client
) -> None:
    deal = b24.call("crm.deal.add", {"fields": {"CATEGORY_ID": SHOP_CATEGORY_ID, "ORIGIN_ID": "77"}})
    created = b24.call("crm.deal.get", {"id": deal})["DATE_MODIFY"]
    server.sandbox.clock.advance(5)
    moved = http.post(f"/_sandbox/bitrix24-shop/deals/{deal}/stage", json={"stage_id": "C3:EXECUTING"})
    assert moved.status_code == 200 and moved.json()["moved"] is True
    assert http.post(f"/_sandbox/bitrix24-shop/deals/{deal}/stage", json={"stage_id": "NEW"}).status_code == 400
    row = b24.call("crm.deal.get", {"id": deal})
    assert (row["STAGE_ID"], row["MOVED_BY_ID"]) == ("C3:EXECUTING", "7")
    assert row["DATE_MODIFY"] > created
    server.sandbox.clock.advance(5)
    b24.call("crm.deal.update", {"id": deal, "fields": {"STAGE_ID": "C3:LOSE"}})
    b24.call("crm.deal.update", {"id": deal, "fields": {"TITLE": "без смены стадии"}})
    after = b24.call("crm.deal.get", {"id": deal})
    assert after["DATE_MODIFY"] > row["DATE_MODIFY"] and after["MOVED_BY_ID"] == "1"
    items = history(b24, filter={"OWNER_ID": deal})["result"]["items"]
    assert [(r["TYPE_ID"], r["STAGE_ID"], r["STAGE_SEMANTIC_ID"]) for r in items] == [
        (1, "C3:NEW", "P"),
        (2, "C3:EXECUTING", "P"),
        (3, "C3:LOSE", "F"),
    ]
    assert items[0]["CREATED_TIME"] < items[1]["CREATED_TIME"] < items[2]["CREATED_TIME"]


def test_two_portals_share_neither_data_nor_budget(server: SandboxServer, http: httpx.Client) -> None:
    assert (
        http.post("/_sandbox/reset", json={**FAST, "bitrix24_shop_rate": 0.01, "bitrix24_shop_burst": 3}).status_code
        == 200
    )
    shop_hook = shop_portal_env(server.base_url)["CMS_B24_WEBHOOK_URL"].replace(server.base_url, "")
    added = http.post(shop_hook + "crm.deal.add", json={"fields": {"ORIGIN_ID": "5"}})
    assert added.status_code == 200
    abcp = http.post(ABCP_HOOK + "crm.deal.list", json={"filter": {"ORIGIN_ID": "5"}}).json()
    assert abcp["result"] == [] and abcp["total"] == 0
    assert http.get("/_sandbox/bitrix24/deals").json() == []
    statuses = [http.post(shop_hook + "crm.deal.list", json={}).status_code for _ in range(3)]
    assert statuses == [200, 200, 503]
    limited = http.post(shop_hook + "crm.deal.list", json={})
    assert (limited.status_code, limited.json()["error"]) == (503, "QUERY_LIMIT_EXCEEDED")
    assert all(http.post(ABCP_HOOK + "crm.deal.list", json={}).status_code == 200 for _ in range(5))
    stats = http.get("/_sandbox/stats").json()
    assert stats["bitrix24-shop"]["throttled"] >= 2 and stats["bitrix24"]["throttled"] == 0


def test_batch_runs_the_shop_methods_with_references(b24: Bitrix24Client) -> None:
    outcome = b24.batch(
        {
            "p": ("crm.product.add", {"fields": {"NAME": "Пионы", "XML_ID": "cms-7", "PRICE": 12000}}),
            "d": ("crm.deal.add", {"fields": {"CATEGORY_ID": SHOP_CATEGORY_ID, "ORIGIN_ID": "4321"}}),
            "r": (
                "crm.deal.productrows.set",
                {"id": "$result[d]", "rows": [{"PRODUCT_ID": "$result[p]", "PRICE": 12000, "QUANTITY": 1}]},
            ),
            "u": ("crm.deal.update", {"id": "$result[d]", "fields": {"STAGE_ID": "C3:PREPARATION"}}),
            "h": ("crm.stagehistory.list", {"entityTypeId": 2, "filter": {"OWNER_ID": "$result[d]"}}),
            "f": ("crm.deal.list", {"filter": {"ORIGIN_ID": "4321"}, "select": ["ID", "OPPORTUNITY"]}),
            "x": ("crm.product.list", {"filter": {"XML_ID": "cms-7"}}),
        },
        halt=True,
    )
    assert not outcome.errors and not outcome.not_executed
    deal = outcome.results["d"]
    assert [r["STAGE_ID"] for r in outcome.results["h"]["items"]] == ["C3:NEW", "C3:PREPARATION"]
    assert outcome.totals["h"] == 2
    assert outcome.results["f"] == [{"ID": str(deal), "OPPORTUNITY": "12000.00"}]
    assert [p["ID"] for p in outcome.results["x"]] == [str(outcome.results["p"])]
    rows = b24.call("crm.deal.productrows.get", {"id": deal})
    assert [(r["PRODUCT_ID"], r["PRODUCT_NAME"]) for r in rows] == [(outcome.results["p"], "Пионы")]
