"""BitrixShopClient against the shop emulator over real HTTP: the export's pages and window, the status
endpoint's answers, the key kept secret, a 503 retried."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from integration_sync.connectors.bitrix_shop import BitrixShopClient, ShopRefused
from integration_sync.connectors.errors import ApiError, AuthError, ConfigError, TransientError
from integration_sync.sandbox.bitrix_shop import shop_env
from integration_sync.sandbox.server import SandboxConfig, SandboxServer
from integration_sync_tests.connectors.sandbox_support import FAST_POLICY

KZ = timezone(timedelta(hours=5))
CONFIG: dict[str, Any] = {
    "seed": 3,
    "abcp_users": 5,
    "days": 6,
    "kaspi_orders": 0,
    "amocrm_contacts": 0,
    "amocrm_seller_leads": 0,
    "shop_orders": 130,
}
FAR_PAST, FAR_FUTURE = date(2000, 1, 1), date(2100, 1, 1)


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(**CONFIG)) as srv:
        yield srv


@pytest.fixture
def env(server: SandboxServer) -> dict[str, str]:
    response = httpx.post(f"{server.base_url}/_sandbox/reset", json=CONFIG, timeout=30)
    assert response.status_code == 200, response.text
    return shop_env(server.base_url)


@pytest.fixture
def shop(env: dict[str, str]) -> Iterator[BitrixShopClient]:
    with BitrixShopClient.from_env(env, rate_per_s=1000, burst=1000, policy=FAST_POLICY) as client:
        yield client


def control(server: SandboxServer, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, f"{server.base_url}/_sandbox/{path}", json=body, timeout=10)
    assert response.status_code < 300, response.text
    return response.json()


def kz_day(value: str) -> date:
    if "T" in value:
        return datetime.fromisoformat(value).astimezone(KZ).date()
    return datetime.strptime(value, "%d.%m.%Y %H:%M:%S").date()  # the shop's naive form: UTC+5


def test_export_walks_every_page_once_and_recodes_cp1251_names(shop: BitrixShopClient) -> None:
    items = list(shop.export("orders", FAR_PAST, FAR_FUTURE, page_size=50))
    ids = [int(i.data["ID"]) for i in items]
    assert len(ids) == 130 and ids == sorted(set(ids))
    assert shop.requests_used == 3 and shop.last_export.pages == 3  # 50 + 50 + 30
    recoded = [i for i in items if i.recoded]
    assert recoded and all(i.recoded == ("PROPERTIES.NAME",) for i in recoded)
    for item in recoded:
        name = item.data["PROPERTIES"]["NAME"]
        assert name.encode("utf-8") and not any("\udc80" <= ch <= "\udcff" for ch in name)
    assert all(not i.recoded for i in items if i not in recoded)


def test_the_date_window_is_inclusive_kazakhstan_days(shop: BitrixShopClient) -> None:
    everything = [i.data for i in shop.export("orders", FAR_PAST, FAR_FUTURE)]
    days = sorted({kz_day(o["DATE_INSERT"]) for o in everything})
    lo, hi = days[1], days[2]
    window = [i.data for i in shop.export("orders", lo, hi, page_size=50)]
    assert window == [o for o in everything if lo <= kz_day(o["DATE_INSERT"]) <= hi]
    assert 0 < len(window) < len(everything)
    one_day = [i.data for i in shop.export("orders", hi, hi)]
    assert one_day and all(kz_day(o["DATE_INSERT"]) == hi for o in one_day)


def test_orders_saved_during_an_export_are_read_too_each_record_once(
    server: SandboxServer, shop: BitrixShopClient
) -> None:
    reader = shop.export("orders", FAR_PAST, FAR_FUTURE, page_size=50)
    first = next(reader)
    placed = control(server, "POST", "bitrix-shop/orders", {"count": 60})["placed"]
    rest = list(reader)
    ids = [int(first.data["ID"]), *(int(i.data["ID"]) for i in rest)]
    assert len(ids) == 190 and len(set(ids)) == 190 and set(placed) <= set(ids)
    assert shop.last_export.pages == 4  # the pages of the latest answer, not of the first


def test_a_page_short_before_the_end_is_read_again_once_then_refused(
    server: SandboxServer, shop: BitrixShopClient
) -> None:
    real = [i.data for i in shop.export("orders", FAR_PAST, FAR_FUTURE, page_size=50)]
    # records removed while reading: page 1 answers 40 of 50 (the offsets moved), the rest would be skipped
    short = {"items": real[:40], "page": 1, "pages": 3, "total": 130}
    burst = {"status": 200, "body": short, "methods": "export"}
    control(server, "POST", "faults", {"bitrix-shop": {"error_burst": {"count": 1, **burst}}})
    assert [i.data for i in shop.export("orders", FAR_PAST, FAR_FUTURE, page_size=50)] == real
    assert (shop.last_export.restarts, shop.last_export.duplicates, shop.last_export.pages) == (1, 40, 4)
    shrunk = {**burst, "body": {"items": real[:50], "page": 1, "pages": 3, "total": 140}}  # page 2 says 130
    control(server, "POST", "faults", {"bitrix-shop": {"error_burst": {"count": 1, **shrunk}}})
    assert [i.data for i in shop.export("orders", FAR_PAST, FAR_FUTURE, page_size=50)] == real
    assert (shop.last_export.restarts, shop.last_export.duplicates) == (1, 100)  # pages 1 and 2 seen twice
    control(server, "POST", "faults", {"bitrix-shop": {"error_burst": {"count": 2, **burst}}})
    with pytest.raises(ApiError, match="kept changing"):
        list(shop.export("orders", FAR_PAST, FAR_FUTURE, page_size=50))
    assert shop.last_export.pages == 2  # never looped on


def test_a_wrong_key_is_an_auth_error_that_never_shows_the_key(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    wrong = env["BITRIX_WEBHOOK_KEY"] + "-wrong"
    caplog.set_level(logging.DEBUG)
    with BitrixShopClient(env["BITRIX_WEBHOOK_URL"], wrong, policy=FAST_POLICY) as shop:
        with pytest.raises(AuthError) as failed:
            shop.set_status(1001, "P")
        with pytest.raises(AuthError):
            list(shop.export("orders", FAR_PAST, FAR_FUTURE))
    assert failed.value.status == 401 and "invalid key" in str(failed.value)
    assert wrong not in str(failed.value) and wrong not in repr(failed.value.__dict__)
    assert wrong not in caplog.text


def test_a_shop_answer_echoing_the_key_is_redacted(server: SandboxServer, env: dict[str, str]) -> None:
    key = env["BITRIX_WEBHOOK_KEY"]
    echo = {"ok": False, "error": f"key {key} is not allowed from this address"}
    control(server, "POST", "faults", {"bitrix-shop": {"error_burst": {"count": 1, "status": 401, "body": echo}}})
    with BitrixShopClient.from_env(env, policy=FAST_POLICY) as shop, pytest.raises(AuthError) as failed:
        shop.set_status(1001, "P")
    assert key not in str(failed.value) and "key *** is not allowed" in str(failed.value)


def test_settings_come_from_the_shop_variables_not_the_portals() -> None:
    with pytest.raises(ConfigError, match="BITRIX_WEBHOOK_URL"):
        BitrixShopClient.from_env({"B24_WEBHOOK_URL": "https://x/rest/1/c/", "BITRIX_WEBHOOK_KEY": "k"})
    with pytest.raises(ConfigError, match="BITRIX_WEBHOOK_KEY"):
        BitrixShopClient.from_env({"BITRIX_WEBHOOK_URL": "https://shop.example/bitrix/tools/webhook/"})


def test_a_page_size_over_500_is_refused_before_sending(shop: BitrixShopClient) -> None:
    with pytest.raises(ConfigError, match=r"1\.\.500"):
        shop.export("orders", FAR_PAST, FAR_FUTURE, page_size=501)  # at the call, not at the first page
    assert shop.requests_used == 0
    assert len(list(shop.export("products", FAR_PAST, FAR_FUTURE, page_size=500))) > 0


def test_set_status_changed_unchanged_and_refused(server: SandboxServer, shop: BitrixShopClient) -> None:
    order = control(server, "POST", "bitrix-shop/orders", {"count": 1})["placed"][0]
    assert shop.set_status(order, "P") is True
    assert shop.set_status(order, "P") is False
    assert control(server, "GET", f"bitrix-shop/orders/{order}")["STATUS_ID"] == "P"
    with pytest.raises(ShopRefused) as missing:
        shop.set_status(999_999, "P")
    assert (missing.value.status, missing.value.message) == (404, "order not found")
    with pytest.raises(ShopRefused) as unknown:
        shop.set_status(order, "X")
    assert (unknown.value.status, unknown.value.message) == (422, "unknown status X")
    assert shop.stats.retries == 0  # a refusal is not retried


def test_a_503_is_retried_and_an_outage_outlasting_the_retries_is_transient(
    server: SandboxServer, shop: BitrixShopClient
) -> None:
    order = control(server, "POST", "bitrix-shop/orders", {"count": 1})["placed"][0]
    control(
        server, "POST", "faults", {"bitrix-shop": {"error_burst": {"count": 2, "status": 503, "methods": "status"}}}
    )
    assert shop.set_status(order, "S") is True
    assert (shop.stats.retries, shop.requests_used) == (2, 3)
    control(server, "POST", "faults", {"bitrix-shop": {"error_burst": {"count": 99, "status": 503}}})
    with pytest.raises(TransientError) as down:
        shop.set_status(order, "F")
    assert down.value.status == 503 and not isinstance(down.value, ShopRefused)
    control(server, "POST", "faults", {"bitrix-shop": {}})
    assert control(server, "GET", f"bitrix-shop/orders/{order}")["STATUS_ID"] == "S"
