"""The Dagster warehouse resource: even dagster-duckdb's own `get_connection` goes through the
warehouse's migrations and its cross-process file lock."""

from __future__ import annotations

from pathlib import Path

import pytest
from filelock import Timeout

from integration_sync.defs.resources import WarehouseResource
from integration_sync.sync.warehouse import Warehouse


def test_get_connection_is_migrated_and_holds_the_warehouse_lock(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    resource = WarehouseResource(database=str(path))
    with resource.get_connection() as conn:
        tables = {row[0] for row in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert {"schema_migrations", "sync_state", "id_map", "sync_log"} <= tables
        other = Warehouse(path, lock_timeout_s=0.2)
        with pytest.raises(Timeout), other.connect():
            pass
    with Warehouse(path, lock_timeout_s=0.2).connect() as conn:  # released after the block
        row = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        assert row is not None and row[0] > 0
