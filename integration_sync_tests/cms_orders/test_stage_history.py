"""The shop pipeline's stage history: read from the shop's Bitrix24 portal emulator over real HTTP
(`read_stage_history`), and kept in a temp warehouse (`load_stage_history`, `latest_stages`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_sync.connectors.bitrix24 import Bitrix24Client
from integration_sync.defs.cms_orders.stages import (
    STAGE_MIGRATIONS,
    latest_stages,
    load_stage_history,
    read_cursor,
)
from integration_sync.sandbox.bitrix24_shop import SHOP_CATEGORY_ID, shop_portal_env
from integration_sync.sandbox.server import SandboxConfig, SandboxServer
from integration_sync.sync.state import ENGINE_MIGRATIONS, write_state
from integration_sync.sync.warehouse import Warehouse
from integration_sync.targets.bitrix24_stages import read_stage_history

CONFIG: dict[str, Any] = {
    "seed": 4,
    "abcp_users": 5,
    "days": 3,
    "kaspi_orders": 0,
    "amocrm_contacts": 0,
    "amocrm_seller_leads": 0,
    "shop_orders": 10,
    "bitrix24_rate_multiplier": 1000.0,
    "clock_epoch": 1_780_000_000.0,  # the portal's history months before our own clock's "now"
}
SEEDED_SHOP_MOVES = 3  # a manager's deal created in the shop pipeline and moved twice


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(**CONFIG)) as srv:
        yield srv


@pytest.fixture
def b24(server: SandboxServer) -> Iterator[Bitrix24Client]:
    assert httpx.post(f"{server.base_url}/_sandbox/reset", json=CONFIG, timeout=30).status_code == 200
    with Bitrix24Client(shop_portal_env(server.base_url)["CMS_B24_WEBHOOK_URL"], rate=1000, burst=1000) as client:
        yield client


def new_warehouse(path: Path) -> Warehouse:
    return Warehouse(path, [*ENGINE_MIGRATIONS, *STAGE_MIGRATIONS])


def add_deals(b24: Bitrix24Client, count: int) -> list[int]:
    ids: list[int] = []
    for start in range(0, count, 50):
        commands = {
            f"d{i}": ("crm.deal.add", {"fields": {"CATEGORY_ID": SHOP_CATEGORY_ID}})
            for i in range(start, min(start + 50, count))
        }
        outcome = b24.batch(commands, halt=True)
        assert not outcome.errors
        ids += [int(v) for v in outcome.results.values()]
    return ids


def manager_moves(server: SandboxServer, deal: int, stage: str) -> None:
    response = httpx.post(
        f"{server.base_url}/_sandbox/bitrix24-shop/deals/{deal}/stage", json={"stage_id": stage}, timeout=10
    )
    assert response.status_code == 200 and response.json()["moved"] is True


def portal_now(server: SandboxServer) -> datetime:
    return datetime.fromtimestamp(server.sandbox.clock.now(), UTC)


def test_a_managers_move_appears_and_since_filters(server: SandboxServer, b24: Bitrix24Client) -> None:
    seeded = read_stage_history(b24, category_id=SHOP_CATEGORY_ID, since=None)
    assert len(seeded) == SEEDED_SHOP_MOVES and [m.type_id for m in seeded] == [1, 2, 3]
    assert all(m.category_id == SHOP_CATEGORY_ID and m.at.tzinfo is not None for m in seeded)
    server.sandbox.clock.advance(120)
    since = portal_now(server)
    deal = b24.call("crm.deal.add", {"fields": {"CATEGORY_ID": SHOP_CATEGORY_ID}})
    b24.call("crm.deal.add", {"fields": {"TITLE": "another pipeline"}})  # category 0: not read
    server.sandbox.clock.advance(5)
    manager_moves(server, deal, "C3:EXECUTING")
    newer = read_stage_history(b24, category_id=SHOP_CATEGORY_ID, since=since)
    assert [(m.deal_id, m.stage_id, m.type_id) for m in newer] == [(deal, "C3:NEW", 1), (deal, "C3:EXECUTING", 2)]
    exact = read_stage_history(b24, category_id=SHOP_CATEGORY_ID, since=newer[0].at + timedelta(microseconds=900_000))
    assert exact[0].id == newer[0].id  # >=, to the portal's whole second: a move in that very second is read
    everything = read_stage_history(b24, category_id=SHOP_CATEGORY_ID, since=None)
    assert [m.id for m in everything] == sorted(m.id for m in everything)
    assert len(everything) == SEEDED_SHOP_MOVES + 2


def test_many_pages_cost_one_list_call_and_one_batch(b24: Bitrix24Client) -> None:
    add_deals(b24, 120)
    before = b24.requests_used
    moves = read_stage_history(b24, category_id=SHOP_CATEGORY_ID, since=None)
    assert len(moves) == SEEDED_SHOP_MOVES + 120 and len({m.id for m in moves}) == len(moves)
    assert b24.requests_used - before == 2  # page 1, then pages 2..3 in one batch


def test_load_stores_each_row_once_and_keeps_its_cursor(
    tmp_path: Path, server: SandboxServer, b24: Bitrix24Client
) -> None:
    store = new_warehouse(tmp_path / "w.duckdb")
    first = load_stage_history(store, b24, SHOP_CATEGORY_ID)
    assert first == {"stage_rows_read": SEEDED_SHOP_MOVES, "stage_rows_new": SEEDED_SHOP_MOVES, "api_requests": 1}
    cursor = read_cursor(store)
    assert cursor is not None
    again = load_stage_history(store, b24, SHOP_CATEGORY_ID)  # inside the overlap: read, stored once
    assert (again["stage_rows_read"], again["stage_rows_new"]) == (SEEDED_SHOP_MOVES, 0)
    server.sandbox.clock.advance(3600)
    deal = add_deals(b24, 1)[0]
    server.sandbox.clock.advance(5)
    manager_moves(server, deal, "C3:WON")
    later = load_stage_history(store, b24, SHOP_CATEGORY_ID, overlap_s=60)
    # read from the cursor (the seeded moves' second) minus the overlap: the seeded rows again, stored once
    assert (later["stage_rows_read"], later["stage_rows_new"]) == (SEEDED_SHOP_MOVES + 2, 2)
    latest = latest_stages(store)
    assert latest[deal].stage_id == "C3:WON" and latest[deal].type_id == 3
    assert read_cursor(store) == latest[deal].at
    server.sandbox.clock.advance(3600)
    other = add_deals(b24, 1)[0]
    reopened = new_warehouse(tmp_path / "w.duckdb")  # the cursor survives in the file
    last = load_stage_history(reopened, b24, SHOP_CATEGORY_ID, overlap_s=60)
    assert (last["stage_rows_read"], last["stage_rows_new"]) == (3, 1)  # the deal's two moves (overlap), the new one
    assert set(latest_stages(reopened, [deal, other])) == {deal, other}
    assert latest_stages(reopened, []) == {}
    with reopened.connect() as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT id) FROM cms_deal_stages").fetchone()
    assert row == (SEEDED_SHOP_MOVES + 3, SEEDED_SHOP_MOVES + 3)


def test_a_late_row_inside_the_overlap_is_still_stored(
    tmp_path: Path, server: SandboxServer, b24: Bitrix24Client
) -> None:
    store = new_warehouse(tmp_path / "w.duckdb")
    load_stage_history(store, b24, SHOP_CATEGORY_ID)
    server.sandbox.clock.advance(3600)
    deal = add_deals(b24, 1)[0]
    moved_at = read_stage_history(b24, category_id=SHOP_CATEGORY_ID, since=portal_now(server))[0].at
    # a later move was seen first and this row shows up only now, 5 minutes older than the cursor
    ahead = moved_at + timedelta(seconds=300)
    write_state(store, "cms_orders", "stage_history_cursor", ahead.isoformat())
    got = load_stage_history(store, b24, SHOP_CATEGORY_ID)
    assert (got["stage_rows_read"], got["stage_rows_new"]) == (1, 1)
    assert latest_stages(store, [deal])[deal].stage_id == "C3:NEW"
    assert read_cursor(store) == ahead  # never moved back


def test_a_lost_warehouse_reads_the_history_from_the_start(tmp_path: Path, b24: Bitrix24Client) -> None:
    load_stage_history(new_warehouse(tmp_path / "old.duckdb"), b24, SHOP_CATEGORY_ID)
    add_deals(b24, 2)
    fresh = new_warehouse(tmp_path / "new.duckdb")
    assert read_cursor(fresh) is None
    got = load_stage_history(fresh, b24, SHOP_CATEGORY_ID)
    assert (got["stage_rows_read"], got["stage_rows_new"]) == (SEEDED_SHOP_MOVES + 2, SEEDED_SHOP_MOVES + 2)
