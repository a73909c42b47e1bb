"""`integration-sync trace FLOW KEY`: one record's story from the warehouse — the source snapshot (the
flow's `trace_source` hook), its `sync_state` row, its target ids and every `sync_log` line in time
order. Readable while Dagster runs: the warehouse is opened read-only for milliseconds at a time under
the same file lock the runs take, so a run's short transaction is waited out, never broken."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb

from integration_sync.defs.resources import warehouse_resource
from integration_sync.lib.registry import plugin
from integration_sync.ops.inspect import table
from integration_sync.sync.warehouse import Warehouse, connect_with_retry

_STATE_COLUMNS = (
    "entity", "status", "attempts", "last_error", "pushed_hash", "pushed_payload", "attempt_operation",
    "next_attempt_at", "last_run_id", "first_synced_at", "updated_at",
)  # fmt: skip
_LOG_COLUMNS = ("created_at", "run_id", "entity", "operation", "status", "message", "payload")
_STATE_SQL = (
    "SELECT entity, status, attempts, last_error, pushed_hash, pushed_payload, attempt_operation, next_attempt_at,"
    " last_run_id, first_synced_at, updated_at FROM sync_state WHERE flow = ? AND source_key = ? ORDER BY entity"
)
_LOG_SQL = (
    "SELECT created_at, run_id, entity, operation, status, message, payload FROM sync_log"
    " WHERE flow = ? AND source_key = ? ORDER BY created_at, id"
)


class ReadOnlyWarehouse(Warehouse):
    """The warehouse opened read-only: never migrated, never written; waits for the runs' file lock."""

    def migrate(self) -> list[str]:
        return []

    @contextmanager
    def _open(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if not self.path.exists():
            raise FileNotFoundError(f"no warehouse at {self.path} (WAREHOUSE_PATH / INTEGRATION_SYNC_DATA_DIR)")
        with self._lock:
            conn = connect_with_retry(self.path, read_only=True)
            try:
                yield conn
            finally:
                conn.close()


def _json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def trace(flow: str, key: str, warehouse: Warehouse | None = None) -> dict[str, Any]:
    """The record's story as one document (unknown flow: KeyError naming the flows)."""
    hook = plugin(flow).trace_source
    store = warehouse or ReadOnlyWarehouse(warehouse_resource().database, lock_timeout_s=60)
    source = hook(store, key) if hook is not None else None
    with store.connect() as conn:
        states = conn.execute(_STATE_SQL, [flow, key]).fetchall()
        ids = conn.execute(
            "SELECT entity, target_id, updated_at FROM id_map WHERE flow = ? AND source_key = ? ORDER BY entity",
            [flow, key],
        ).fetchall()
        log = conn.execute(_LOG_SQL, [flow, key]).fetchall()
    return {
        "flow": flow,
        "key": key,
        "source": source,
        "sync_state": [{c: _json(v) for c, v in zip(_STATE_COLUMNS, row, strict=True)} for row in states],
        "target_ids": [{"entity": e, "target_id": t, "updated_at": u} for e, t, u in ids],
        "sync_log": [{c: _json(v) for c, v in zip(_LOG_COLUMNS, row, strict=True)} for row in log],
    }


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def render(story: dict[str, Any]) -> str:
    out = [f"{story['flow']} {story['key']}", "", "Source snapshot"]
    source = story["source"]
    out += ["  (not in the warehouse)"] if source is None else ["  " + line for line in _indent(source)]
    out += ["", "Sync state"]
    if not story["sync_state"]:
        out.append("  (never pushed)")
    for state in story["sync_state"]:
        for name in _STATE_COLUMNS:
            value = state[name]
            if value is not None:
                out.append(f"  {name}: {value if isinstance(value, str | int) else _dump(value)}")
    out += ["", "Target ids"]
    out += table(
        ["entity", "target_id", "updated_at"],
        [(t["entity"], t["target_id"], t["updated_at"]) for t in story["target_ids"]],
    )
    out += ["", "Sync log"]
    out += table(
        ["at", "run", "entity", "operation", "status", "message"],
        [
            (str(line["created_at"])[:19], str(line["run_id"])[:8], line["entity"], line["operation"], line["status"],
             (line["message"] or "")[:120])
            for line in story["sync_log"]
        ],
    )  # fmt: skip
    return "\n".join(out)


def _indent(value: Any) -> list[str]:
    return json.dumps(value, ensure_ascii=False, default=str, indent=2).splitlines()


def run(flow: str, key: str, as_json: bool) -> str:
    story = trace(flow, key)
    return json.dumps(story, ensure_ascii=False, indent=2, default=str) if as_json else render(story)
