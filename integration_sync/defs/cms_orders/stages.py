"""The shop pipeline's deal stage history in the warehouse (`cms_deal_stages`), read incrementally.

A cursor in `flow_state` (flow `cms_orders`, key `stage_history_cursor`) holds the newest move time
stored. Each load reads from the cursor minus an overlap, since a history row can become visible
after rows with a later time (a row's CREATED_TIME is the move's time, not when it was saved); rows
are upserted by id, so the overlap stores nothing twice. The rows and the new cursor are written in
one transaction after the portal was read: no DuckDB connection is held across the HTTP calls, and a
crash between the two cannot advance the cursor past rows not stored. A new (lost) warehouse has no
cursor: the whole history is read again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

from integration_sync.connectors.bitrix24 import Bitrix24Client
from integration_sync.sync.bulk import insert_rows
from integration_sync.sync.state import read_state
from integration_sync.sync.warehouse import Migration, Warehouse
from integration_sync.targets.bitrix24_stages import StageMove, read_stage_history

FLOW = "cms_orders"
CURSOR_KEY = "stage_history_cursor"
TABLE = "cms_deal_stages"

STAGE_MIGRATIONS: list[Migration] = [
    Migration(
        "cms_0002_deal_stages",
        """
        CREATE TABLE cms_deal_stages (
            id BIGINT PRIMARY KEY,
            deal_id BIGINT NOT NULL,
            stage_id VARCHAR NOT NULL,
            category_id INTEGER NOT NULL,
            type_id INTEGER NOT NULL,
            moved_at TIMESTAMPTZ NOT NULL,
            loaded_at TIMESTAMPTZ NOT NULL
        );
        """,
    )
]

_COLUMNS = {
    "id": "BIGINT",
    "deal_id": "BIGINT",
    "stage_id": "VARCHAR",
    "category_id": "INTEGER",
    "type_id": "INTEGER",
    "moved_at": "TIMESTAMPTZ",
    "loaded_at": "TIMESTAMPTZ",
}


def read_cursor(store: Warehouse) -> datetime | None:
    """The newest move time stored (None: nothing loaded yet)."""
    text = read_state(store, FLOW, CURSOR_KEY)
    return datetime.fromisoformat(text) if text else None


def load_stage_history(
    store: Warehouse, client: Bitrix24Client, category_id: int, overlap_s: float = 600
) -> dict[str, int]:
    """Read the pipeline's moves since the cursor (minus `overlap_s`) and store the new ones.
    Returns {"stage_rows_read", "stage_rows_new", "api_requests"}."""
    cursor = read_cursor(store)
    since = cursor - timedelta(seconds=overlap_s) if cursor is not None else None
    before = client.requests_used
    moves = read_stage_history(client, category_id=category_id, since=since)
    requests = client.requests_used - before
    new = _store(store, moves, cursor)
    return {"stage_rows_read": len(moves), "stage_rows_new": new, "api_requests": requests}


def _store(store: Warehouse, moves: Sequence[StageMove], cursor: datetime | None) -> int:
    """Upsert the moves and advance the cursor, in one transaction; returns how many were new."""
    if not moves:
        return 0
    newest = max(move.at for move in moves)
    now = datetime.now(UTC)
    with store.transaction() as conn:
        row = conn.execute(
            "SELECT count(*) FROM cms_deal_stages WHERE list_contains(?, id)", [[m.id for m in moves]]
        ).fetchone()
        known = int(row[0]) if row else 0
        insert_rows(
            conn,
            TABLE,
            _COLUMNS,
            (
                {
                    "id": m.id,
                    "deal_id": m.deal_id,
                    "stage_id": m.stage_id,
                    "category_id": m.category_id,
                    "type_id": m.type_id,
                    "moved_at": m.at,
                    "loaded_at": now,
                }
                for m in moves
            ),
            on_conflict="ON CONFLICT (id) DO NOTHING",
        )
        if cursor is None or newest > cursor:
            conn.execute("DELETE FROM flow_state WHERE flow = ? AND key = ?", [FLOW, CURSOR_KEY])
            conn.execute("INSERT INTO flow_state VALUES (?, ?, ?, ?)", [FLOW, CURSOR_KEY, newest.isoformat(), now])
    return len(moves) - known


def latest_stages(store: Warehouse, deal_ids: Collection[int] | None = None) -> dict[int, StageMove]:
    """Each deal's newest move (by move time, then id), for all deals or those of `deal_ids`."""
    if deal_ids is not None and not deal_ids:
        return {}
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT id, deal_id, stage_id, category_id, moved_at, type_id FROM cms_deal_stages"
            " WHERE ? OR list_contains(?, deal_id)"
            " QUALIFY row_number() OVER (PARTITION BY deal_id ORDER BY moved_at DESC, id DESC) = 1",
            [deal_ids is None, sorted(deal_ids or [])],
        ).fetchall()
    return {
        int(deal): StageMove(
            id=int(rid), deal_id=int(deal), stage_id=str(stage), category_id=int(category), at=at, type_id=int(kind)
        )
        for rid, deal, stage, category, at, kind in rows
    }
