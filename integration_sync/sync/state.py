"""The sync engine's own tables: what was last pushed, target ids, and the per-record sync log.

Shaped like Census's sync state and writeback tables: `sync_state` holds one row per source record
and destination (status, hash and payload last pushed, the attempt in flight, retry count),
`id_map` maps a source key to the id of each target entity it produced, and `sync_log` keeps one
row per record per run with the operation and its outcome. `id_map` also holds a flow's lookup
indexes (e.g. phone → contact, product code → catalog element) under their own entity names, and
`flow_state` small per-flow values such as watermarks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from integration_sync.sync.bulk import insert_rows
from integration_sync.sync.warehouse import Migration, Warehouse

ENGINE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "0001_sync_state",
        """
        CREATE TABLE sync_state (
            flow VARCHAR NOT NULL,
            entity VARCHAR NOT NULL,
            source_key VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            pushed_hash VARCHAR,
            pushed_payload JSON,
            attempt_hash VARCHAR,
            attempt_payload JSON,
            attempt_operation VARCHAR,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error VARCHAR,
            last_run_id VARCHAR,
            first_synced_at TIMESTAMPTZ,
            updated_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (flow, entity, source_key)
        );
        CREATE TABLE id_map (
            flow VARCHAR NOT NULL,
            entity VARCHAR NOT NULL,
            source_key VARCHAR NOT NULL,
            target_id VARCHAR NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (flow, entity, source_key)
        );
        CREATE SEQUENCE sync_log_id;
        CREATE TABLE sync_log (
            id BIGINT DEFAULT nextval('sync_log_id') PRIMARY KEY,
            run_id VARCHAR NOT NULL,
            flow VARCHAR NOT NULL,
            entity VARCHAR NOT NULL,
            source_key VARCHAR NOT NULL,
            operation VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            message VARCHAR,
            payload JSON,
            created_at TIMESTAMPTZ NOT NULL
        );
        CREATE INDEX sync_log_run ON sync_log (run_id);
        """,
    ),
    Migration(
        "0002_ingest_rejects",
        """
        CREATE TABLE ingest_rejects (
            flow VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            partition_key VARCHAR NOT NULL,
            record_key VARCHAR,
            reason VARCHAR NOT NULL,
            raw JSON,
            run_id VARCHAR,
            rejected_at TIMESTAMPTZ NOT NULL
        );
        """,
    ),
    Migration(
        "0003_flow_state",
        """
        CREATE TABLE flow_state (
            flow VARCHAR NOT NULL,
            key VARCHAR NOT NULL,
            value VARCHAR,
            updated_at TIMESTAMPTZ NOT NULL
        );
        """,
    ),
    Migration("0004_retry_backoff", "ALTER TABLE sync_state ADD COLUMN next_attempt_at TIMESTAMPTZ;"),
    # When a field's current value was first seen on a source without change times (a sheet cell):
    # it stands for the change time when two-way conflicts are settled by the newer change.
    Migration(
        "0005_field_observations",
        """
        CREATE TABLE field_observations (
            flow VARCHAR NOT NULL,
            entity VARCHAR NOT NULL,
            source_key VARCHAR NOT NULL,
            field VARCHAR NOT NULL,
            value_hash VARCHAR NOT NULL,
            first_observed_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (flow, entity, source_key, field)
        );
        """,
    ),
)


def redrive(warehouse: Warehouse, flow: str, entity: str, keys: Sequence[str] | None = None) -> list[str]:
    """Make rejected records (all, or those of `keys`) due on the next run with a fresh retry budget,
    parked ones included; returns the keys re-driven. Records in any other state are left alone."""
    with warehouse.transaction() as conn:
        rows = conn.execute(
            "UPDATE sync_state SET attempts = 0, next_attempt_at = NULL, updated_at = now()"
            " WHERE flow = ? AND entity = ? AND status = 'rejected' AND (? OR list_contains(?, source_key))"
            " RETURNING source_key",
            [flow, entity, keys is None, list(keys or [])],
        ).fetchall()
    return sorted(str(row[0]) for row in rows)


def read_lookup(warehouse: Warehouse, flow: str, entity: str) -> dict[str, str]:
    """A flow's lookup index (source key → target id) kept in id_map under `entity`."""
    with warehouse.connect() as conn:
        rows = conn.execute(
            "SELECT source_key, target_id FROM id_map WHERE flow = ? AND entity = ?", [flow, entity]
        ).fetchall()
    return {str(k): str(v) for k, v in rows}


def write_lookup(warehouse: Warehouse, flow: str, entity: str, entries: dict[str, str]) -> None:
    """Add or replace lookup entries (one short transaction, bulk)."""
    if not entries:
        return
    now = datetime.now(UTC)
    with warehouse.transaction() as conn:
        insert_rows(
            conn,
            "id_map",
            {
                "flow": "VARCHAR",
                "entity": "VARCHAR",
                "source_key": "VARCHAR",
                "target_id": "VARCHAR",
                "updated_at": "TIMESTAMPTZ",
            },
            (
                {"flow": flow, "entity": entity, "source_key": k, "target_id": v, "updated_at": now}
                for k, v in entries.items()
            ),
            on_conflict="ON CONFLICT (flow, entity, source_key) DO UPDATE SET target_id = excluded.target_id,"
            " updated_at = excluded.updated_at",
        )


def read_state(warehouse: Warehouse, flow: str, key: str) -> str | None:
    with warehouse.connect() as conn:
        row = conn.execute(
            "SELECT value FROM flow_state WHERE flow = ? AND key = ? ORDER BY updated_at DESC LIMIT 1", [flow, key]
        ).fetchone()
    return str(row[0]) if row and row[0] is not None else None


def write_state(warehouse: Warehouse, flow: str, key: str, value: str) -> None:
    with warehouse.transaction() as conn:
        conn.execute("DELETE FROM flow_state WHERE flow = ? AND key = ?", [flow, key])
        conn.execute("INSERT INTO flow_state VALUES (?, ?, ?, ?)", [flow, key, value, datetime.now(UTC)])
