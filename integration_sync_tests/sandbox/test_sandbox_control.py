"""The sandbox framework: control routes, faults, stats, reset, determinism and shared helpers."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from integration_sync.sandbox.amocrm_schema import amocrm_env
from integration_sync.sandbox.amocrm_seller import seller_env
from integration_sync.sandbox.bitrix24 import normalize_phone, substitute_refs
from integration_sync.sandbox.core import Clock, LeakyBucket, parse_php_query
from integration_sync.sandbox.env import sandbox_env
from integration_sync.sandbox.server import SandboxConfig, SandboxServer
from integration_sync.sandbox.sheets import sheets_env
from integration_sync.sandbox.telegram import alerts_env

HOOK = "/bitrix24/rest/1/sandboxb24webhookcode/"
BASE = {
    "seed": 11,
    "abcp_users": 30,
    "bitrix24_rate_multiplier": 1000.0,
    "bitrix24_burst": 50,
    "bitrix24_operating_budget_s": 480.0,
    "bitrix24_operating_cost_s": 0.0,
    "clock_epoch": None,
}


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(**BASE)) as srv:
        yield srv


@pytest.fixture
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        assert http.post("/_sandbox/reset", json=BASE).status_code == 200
        yield http


def faults(client: httpx.Client, spec: dict[str, Any]) -> httpx.Response:
    return client.post("/_sandbox/faults", json=spec)


def add_contact(client: httpx.Client, name: str) -> httpx.Response:
    return client.post(HOOK + "crm.contact.add", json={"fields": {"NAME": name}})


def contact_names(client: httpx.Client) -> list[str]:
    return [c["NAME"] for c in client.get("/_sandbox/bitrix24/contacts").json()]


def abcp_get(client: httpx.Client, base_url: str = "") -> httpx.Response:
    env = sandbox_env(base_url or str(client.base_url))
    psw = hashlib.md5(env["ABCP_USERPSW"].encode(), usedforsecurity=False).hexdigest()
    return client.get(env["ABCP_BASE_URL"], params={"userlogin": env["ABCP_USERLOGIN"], "userpsw": psw})


def test_stats_count_service_requests_but_not_control_routes(client: httpx.Client) -> None:
    client.get("/_sandbox/stats")
    client.get("/_sandbox/bitrix24/contacts")
    abcp_get(client)
    client.post(HOOK + "crm.contact.list", json={})
    client.post(HOOK + "batch", json={"cmd": {"a": "crm.contact.add?fields[NAME]=x", "b": "crm.deal.list"}})
    stats = client.get("/_sandbox/stats").json()
    assert stats["abcp"] == {"requests": 1, "by_method": {"cp/users": 1}, "throttled": 0, "entities": {"users": 30}}
    assert stats["bitrix24"] == {
        "requests": 2,
        "by_method": {"crm.contact.list": 1, "batch": 1},
        "throttled": 0,
        "entities": {"contacts": 4, "deals": 0},
        "commands": {"crm.contact.list": 1, "crm.contact.add": 1, "crm.deal.list": 1},
    }


def test_reset_regenerates_zeroes_stats_and_clears_faults(client: httpx.Client) -> None:
    add_contact(client, "temp")
    faults(client, {"bitrix24": {"error_burst": {"count": 5, "status": 503}}})
    reply = client.post("/_sandbox/reset", json={"abcp_users": 12}).json()
    assert reply["config"]["abcp_users"] == 12 and reply["config"]["seed"] == 11
    assert reply["stats"]["abcp"]["entities"] == {"users": 12}
    assert reply["stats"]["bitrix24"]["requests"] == 0 and reply["stats"]["bitrix24"]["commands"] == {}
    assert "temp" not in contact_names(client)
    assert add_contact(client, "after").status_code == 200  # the burst is gone
    assert len(abcp_get(client).json()) == 12
    bad = client.post("/_sandbox/reset", json={"abcp_users": -1})
    assert bad.status_code == 400
    assert client.post("/_sandbox/reset", json={"no_such_knob": 1}).status_code == 400


def test_fault_control_validates_and_null_clears(client: httpx.Client) -> None:
    assert faults(client, {"no_such_service": {}}).status_code == 400
    assert faults(client, {"bitrix24": {"error_rate": 2}}).status_code == 400
    assert faults(client, {"bitrix24": {"surprise": True}}).status_code == 400
    assert faults(client, {"bitrix24": "yes"}).status_code == 400
    described = faults(client, {"bitrix24": {"latency_ms": 10, "error_burst": {"count": 1, "status": 500}}}).json()
    assert described["bitrix24"]["error_burst"] == {"count": 1, "status": 500, "methods": []}
    faults(client, {"bitrix24": None})
    assert add_contact(client, "clean").status_code == 200


def test_error_burst_503_is_query_limit_and_500_executes_nothing(client: httpx.Client) -> None:
    faults(client, {"bitrix24": {"error_burst": {"count": 2, "status": 503}}})
    first, second = add_contact(client, "b1"), add_contact(client, "b2")
    assert first.status_code == second.status_code == 503
    assert first.json() == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    assert add_contact(client, "b3").status_code == 200

    faults(client, {"bitrix24": {"error_burst": {"count": 1, "status": 500}}})
    broken = add_contact(client, "b4")
    assert broken.status_code == 500 and broken.headers["content-type"].startswith("text/html")
    names = contact_names(client)
    assert "b3" in names and not {"b1", "b2", "b4"} & set(names)


def test_burst_limited_to_methods(client: httpx.Client) -> None:
    faults(client, {"bitrix24": {"error_burst": {"count": 1, "status": 503, "methods": ["batch"]}}})
    assert add_contact(client, "direct").status_code == 200
    assert client.post(HOOK + "batch", json={"cmd": {"a": "crm.deal.list"}}).status_code == 503
    assert client.post(HOOK + "batch", json={"cmd": {"a": "crm.deal.list"}}).status_code == 200


def test_commit_then_drop_really_commits(client: httpx.Client) -> None:
    faults(client, {"bitrix24": {"commit_then_drop": {"count": 1, "methods": ["batch"]}}})
    cmd = {"c": "crm.contact.add?fields[NAME]=dropped", "d": "crm.deal.add?fields[CONTACT_ID]=$result[c]"}
    with pytest.raises(httpx.TransportError):
        client.post(HOOK + "batch", json={"halt": 1, "cmd": cmd})
    assert "dropped" in contact_names(client)
    deals = client.get("/_sandbox/bitrix24/deals").json()
    assert len(deals) == 1 and deals[0]["CONTACT_ID"] is not None
    again = client.post(HOOK + "batch", json={"cmd": {"l": "crm.deal.list"}})
    assert again.status_code == 200 and again.json()["result"]["result_total"] == {"l": 1}


def test_latency_and_seeded_error_rate(client: httpx.Client) -> None:
    faults(client, {"bitrix24": {"latency_ms": 120}})
    started = time.perf_counter()
    assert client.post(HOOK + "crm.deal.list", json={}).status_code == 200
    assert time.perf_counter() - started >= 0.12

    def pattern() -> list[int]:
        faults(client, {"bitrix24": {"error_rate": 0.5, "seed": 4}})
        return [client.post(HOOK + "crm.deal.list", json={}).status_code for _ in range(16)]

    first = pattern()
    assert set(first) == {200, 500}
    assert pattern() == first


def test_sandbox_env_points_connectors_at_the_sandbox(server: SandboxServer, client: httpx.Client) -> None:
    env = sandbox_env(server.base_url + "/")
    assert env == {
        "SANDBOX_BASE_URL": server.base_url,
        "ABCP_BASE_URL": f"{server.base_url}/abcp/cp/users",
        "ABCP_USERLOGIN": "api@sandbox",
        "ABCP_USERPSW": "sandbox-password",
        "B24_WEBHOOK_URL": f"{server.base_url}/bitrix24/rest/1/sandboxb24webhookcode/",
        "B24_DEAL_CATEGORY_ID_USERS": "5",
        "B24_DEAL_STAGE_NEW_USERS": "C5:NEW",
        "UF_B24_DEAL_ABCP_USER_ID": "UF_CRM_ABCP_USER_ID",
        "UF_B24_DEAL_INN": "UF_CRM_ABCP_INN",
        "UF_B24_DEAL_SALDO": "UF_CRM_ABCP_SALDO",
        "B24_DEAL_TITLE_PREFIX": "ABCP Регистрация:",
        "KASPI_BASE_URL": f"{server.base_url}/kaspi/shop/api/v2",
        "KASPI_TOKEN": "sandbox-kaspi-token",
        "DEFAULT_COUNTRY": "KZ",
        "PLATFORM_WEBHOOK_SECRET": "sandbox-platform-webhook-secret",
        "WEBHOOK_URL": "http://127.0.0.1:8001/webhook/payment",
        **amocrm_env(server.base_url),  # values checked in test_amocrm_emulator.py
        **alerts_env(server.base_url),  # values checked in alerts/test_channels.py
        **seller_env(server.base_url),  # the Sheets seller's amoCRM account: test_seller_account.py
        **sheets_env(server.base_url),  # test_sheets_emulator.py
        "SHEETS_WEBHOOK_SECRET": "sandbox-amocrm-hook-path-secret",
        "SHEETS_WEBHOOK_BASE_URL": "http://127.0.0.1:8001",
        "INITIAL_SYNC_DATE_FROM": (datetime.now(UTC).date() - timedelta(days=30)).isoformat(),
        "BITRIX_WEBHOOK_URL": f"{server.base_url}/bitrix-shop/bitrix/tools/webhook/",
        "BITRIX_WEBHOOK_KEY": "sandbox-bitrix-shop-key",
        "WEBHOOK_TOKEN": "sandbox-bitrix-shop-webhook-token",
        "CMS_SHOP_URL": f"{server.base_url}/bitrix-shop",
        "CMS_B24_WEBHOOK_URL": f"{server.base_url}/bitrix24-shop/rest/1/sandboxshopb24hook/",
        "CMS_B24_DEAL_CATEGORY_ID": "3",
        "CMS_RECEIVER_URL": "http://127.0.0.1:8001",
    }
    assert sandbox_env(server.base_url, "http://h:9")["WEBHOOK_URL"] == "http://h:9/webhook/payment"
    assert sandbox_env(server.base_url, "http://h:9")["SHEETS_WEBHOOK_BASE_URL"] == "http://h:9"
    assert abcp_get(client, server.base_url).status_code == 200
    stages = httpx.post(
        env["B24_WEBHOOK_URL"] + "crm.dealcategory.stage.list", json={"id": env["B24_DEAL_CATEGORY_ID_USERS"]}
    ).json()["result"]
    assert env["B24_DEAL_STAGE_NEW_USERS"] in [s["STATUS_ID"] for s in stages]
    uf = httpx.post(env["B24_WEBHOOK_URL"] + "crm.deal.userfield.list", json={}).json()["result"]
    assert {env[k] for k in ("UF_B24_DEAL_ABCP_USER_ID", "UF_B24_DEAL_INN", "UF_B24_DEAL_SALDO")} == {
        f["FIELD_NAME"] for f in uf
    }


def test_two_servers_with_the_same_seed_serve_the_same_data() -> None:
    config = SandboxConfig(seed=5, abcp_users=25, clock_epoch=1_760_000_000.0)
    bodies = []
    for cfg in (config, config, config.model_copy(update={"seed": 6})):
        with SandboxServer(cfg) as srv, httpx.Client(base_url=srv.base_url) as http:
            bodies.append((abcp_get(http).json(), http.get("/_sandbox/bitrix24/contacts").json()))
    assert bodies[0] == bodies[1]
    assert bodies[0][0] != bodies[2][0] and bodies[0][1] != bodies[2][1]


def test_leaky_bucket_is_thread_safe_and_refills() -> None:
    clock = Clock()
    bucket = LeakyBucket(rate_per_s=0.001, burst=50, clock=clock)
    granted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(40):
            got = bucket.try_acquire()
            with lock:
                granted.append(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(True) == 50 and len(granted) == 320
    clock.advance(2000)  # 0.001/s x 2000 s = 2 slots
    assert [bucket.try_acquire() for _ in range(3)] == [True, True, False]


def test_clock_pins_start_and_only_moves_forward() -> None:
    clock = Clock(epoch=1_700_000_000.0)
    assert clock.pinned and 1_700_000_000.0 <= clock.now() < 1_700_000_001.0
    clock.advance(3600)
    assert clock.now() >= 1_700_003_600.0
    assert clock.now_moscow().utcoffset() is not None
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_php_query_decoder() -> None:
    parsed = parse_php_query(
        "fields[NAME]=A&fields[PHONE][0][VALUE]=%2B7916&fields[PHONE][0][VALUE_TYPE]=WORK"
        "&select[]=ID&select[]=PHONE&filter[%3EID]=5&order[ID]=ASC&halt=1&a.b=x&fields[NAME]=B"
    )
    assert parsed == {
        "fields": {"NAME": "B", "PHONE": [{"VALUE": "+7916", "VALUE_TYPE": "WORK"}]},
        "select": ["ID", "PHONE"],
        "filter": {">ID": "5"},
        "order": {"ID": "ASC"},
        "halt": "1",
        "a_b": "x",
    }
    assert parse_php_query("") == {}
    assert parse_php_query("cmd[5]=x") == {"cmd": {"5": "x"}}


def test_batch_reference_substitution_rules() -> None:
    maps: dict[str, Any] = {
        "result": {"c1": 46, "u": {"ID": "7", "LIST": [{"ID": "9"}]}},
        "next": {},
        "total": {},
        "time": {},
        "error": {"bad": {"error": "", "error_description": "x"}},
    }
    assert substitute_refs("$result[c1]", maps) == 46
    assert substitute_refs("id-$result[c1]", maps) == "id-46"
    assert substitute_refs("$result[u][LIST][0][ID]", maps) == "9"
    assert substitute_refs("$RESULT[u][ID]", maps) == "7"
    assert substitute_refs("$error[bad][error_description]", maps) == "x"
    assert substitute_refs("$result[missing]", maps) == maps["result"]  # nearest resolved ancestor
    assert substitute_refs("x $result[u] y", maps) == "x $result[u] y"  # arrays are not spliced in text


def test_phone_normalization_matches_bitrix() -> None:
    assert normalize_phone("+7 (916) 123-45-67") == normalize_phone("89161234567") == "79161234567"
    assert normalize_phone("9161234567") == "9161234567"
    assert normalize_phone("+7 916 123 45 67 доб. 12") == "79161234567"
