"""The sync engine's own tables: what was last pushed, target ids, and the per-record sync log.

Shaped like Census's sync state and writeback tables: `sync_state` holds one row per source record
and destination (status, hash and payload last pushed, the attempt in flight, retry count),
`id_map` maps a source key to the id of each target entity it produced, and `sync_log` keeps one
row per record per run with the operation and its outcome.
"""

from __future__ import annotations

from integration_sync.sync.warehouse import Migration

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
)
