"""ShopStatusDestination through a real SyncEngine (temp warehouse) against the shop emulator: a status set,
a re-run for free, an unknown order rejected and retried, an outage losing nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_sync.connectors.bitrix_shop import BitrixShopClient
from integration_sync.connectors.errors import AuthError, TransientError
from integration_sync.defs.cms_orders.shop_destination import ShopStatusDestination
from integration_sync.sandbox.bitrix_shop import shop_env
from integration_sync.sandbox.server import SandboxConfig, SandboxServer
from integration_sync.sync.engine import Desired, SyncEngine
from integration_sync.sync.state import ENGINE_MIGRATIONS
from integration_sync.sync.warehouse import Warehouse
from integration_sync_tests.connectors.sandbox_support import FAST_POLICY

CONFIG: dict[str, Any] = {
    "seed": 2,
    "abcp_users": 5,
    "days": 2,
    "kaspi_orders": 0,
    "amocrm_contacts": 0,
    "amocrm_seller_leads": 0,
    "shop_orders": 10,
}
MISSING = 999_999


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(**CONFIG)) as srv:
        yield srv


@pytest.fixture
def env(server: SandboxServer) -> dict[str, str]:
    assert httpx.post(f"{server.base_url}/_sandbox/reset", json=CONFIG, timeout=30).status_code == 200
    return shop_env(server.base_url)


@pytest.fixture
def destination(env: dict[str, str]) -> Iterator[ShopStatusDestination]:
    with BitrixShopClient.from_env(env, rate_per_s=1000, burst=1000, policy=FAST_POLICY) as client:
        yield ShopStatusDestination(client)


@pytest.fixture
def store(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "w.duckdb", ENGINE_MIGRATIONS)


def run(store: Warehouse, destination: ShopStatusDestination, statuses: dict[int, str], name: str) -> Any:
    engine = SyncEngine(store, flow="cms_orders", entity="order_status", run_id=name)
    wanted = [Desired(str(order), {"status_id": status}) for order, status in statuses.items()]
    return engine.run(wanted, destination)


def control(server: SandboxServer, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, f"{server.base_url}/_sandbox/{path}", json=body, timeout=10)
    assert response.status_code < 300, response.text
    return response.json()


def new_orders(server: SandboxServer, count: int) -> list[int]:
    placed: list[int] = control(server, "POST", "bitrix-shop/orders", {"count": count})["placed"]
    return placed


def shop_status(server: SandboxServer, order: int) -> str:
    return str(control(server, "GET", f"bitrix-shop/orders/{order}")["STATUS_ID"])


def state(store: Warehouse, key: int) -> tuple[str, int, str | None]:
    with store.connect() as conn:
        row = conn.execute(
            "SELECT status, attempts, last_error FROM sync_state WHERE source_key = ?", [str(key)]
        ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]), row[2]


def test_statuses_are_set_and_a_rerun_costs_nothing(
    server: SandboxServer, store: Warehouse, destination: ShopStatusDestination
) -> None:
    first, second = new_orders(server, 2)  # new orders are N
    report = run(store, destination, {first: "P", second: "N"}, "r1")
    assert (report.created, report.rejected, report.api_requests) == (2, 0, 2)
    assert destination.counts == {"statuses_changed": 1, "statuses_already_there": 1}
    assert (shop_status(server, first), shop_status(server, second)) == ("P", "N")
    again = run(store, destination, {first: "P", second: "N"}, "r2")
    assert (again.unchanged, again.api_requests) == (2, 0)
    moved = run(store, destination, {first: "S", second: "N"}, "r3")
    assert (moved.updated, moved.unchanged, moved.api_requests) == (1, 1, 1)
    assert shop_status(server, first) == "S"
    with store.connect() as conn:
        ids = conn.execute("SELECT source_key, target_id FROM id_map WHERE entity = 'order'").fetchall()
    assert sorted(ids) == sorted([(str(first), str(first)), (str(second), str(second))])


def test_a_refused_record_waits_in_the_retry_log_and_the_others_go_on(
    server: SandboxServer, store: Warehouse, destination: ShopStatusDestination
) -> None:
    (order,) = new_orders(server, 1)
    report = run(store, destination, {MISSING: "P", order: "F"}, "r1")
    assert (report.created, report.rejected) == (1, 1)
    assert report.rejected_samples == [(str(MISSING), "shop refused status P: order not found (HTTP 404)")]
    assert shop_status(server, order) == "F"
    assert state(store, MISSING)[:2] == ("rejected", 1)
    retried = run(store, destination, {MISSING: "P", order: "F"}, "r2")
    assert (retried.retried, retried.rejected, retried.unchanged, retried.api_requests) == (1, 1, 1, 1)
    assert state(store, MISSING)[:2] == ("rejected", 2)
    unknown = run(store, destination, {order: "Q"}, "r3")
    assert unknown.rejected_samples == [(str(order), "shop refused status Q: unknown status Q (HTTP 422)")]
    assert shop_status(server, order) == "F"


def test_an_outage_loses_nothing_and_the_next_run_sets_the_status(
    server: SandboxServer, store: Warehouse, destination: ShopStatusDestination
) -> None:
    first, second = new_orders(server, 2)
    control(
        server, "POST", "faults", {"bitrix-shop": {"error_burst": {"count": 1000, "status": 503, "methods": "status"}}}
    )
    with pytest.raises(TransientError):
        run(store, destination, {first: "P", second: "S"}, "r1")
    with store.connect() as conn:
        assert conn.execute("SELECT count(*) FROM sync_state").fetchone() == (0,)  # no attempt, nothing in flight
    assert destination.client.stats.retries == FAST_POLICY.max_attempts - 1  # the client's own retries, then up
    control(server, "POST", "faults", {"bitrix-shop": {}})
    report = run(store, destination, {first: "P", second: "S"}, "r2")
    assert (report.created, report.rejected) == (2, 0)
    assert (shop_status(server, first), shop_status(server, second)) == ("P", "S")
    assert state(store, first) == ("synced", 0, None)


def test_an_outage_of_a_record_already_synced_keeps_its_change_for_the_next_run(
    server: SandboxServer, store: Warehouse, destination: ShopStatusDestination
) -> None:
    (order,) = new_orders(server, 1)
    run(store, destination, {order: "P"}, "r1")
    control(server, "POST", "faults", {"bitrix-shop": {"error_burst": {"count": 1000, "status": 502}}})
    with pytest.raises(TransientError):
        run(store, destination, {order: "S"}, "r2")
    assert state(store, order) == ("synced", 0, None) and shop_status(server, order) == "P"
    control(server, "POST", "faults", {"bitrix-shop": {}})
    report = run(store, destination, {order: "S"}, "r3")
    assert (report.updated, shop_status(server, order)) == (1, "S")


def test_a_refused_key_stops_the_push(env: dict[str, str], store: Warehouse) -> None:
    with (
        BitrixShopClient(env["BITRIX_WEBHOOK_URL"], "wrong-key", policy=FAST_POLICY) as client,
        pytest.raises(AuthError),
    ):
        run(store, ShopStatusDestination(client), {1001: "P"}, "r1")
    with store.connect() as conn:
        assert conn.execute("SELECT count(*) FROM sync_state").fetchone() == (0,)
