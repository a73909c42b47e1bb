"""Bulk inserts of Python rows into DuckDB through NDJSON and `read_json` (never row by row)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATETIME


def _default(value: Any) -> Any:
    # datetimes as ISO strings DuckDB reads back exactly; anything else as its text
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def insert_rows(
    conn: Any,
    table: str,
    columns: Mapping[str, str],
    rows: Iterable[Mapping[str, Any]],
    *,
    on_conflict: str = "",
) -> int:
    """Insert `rows` (dicts keyed by column) into `table`; `columns` maps each column to its DuckDB type.

    `on_conflict` is an optional `ON CONFLICT (...) DO UPDATE SET ...` clause for upserts (the rows
    must then be unique on the conflict key). `table`, the column names and the clause come from the
    caller's code, never from data.
    """
    with tempfile.TemporaryDirectory(prefix="bulk-") as tmp:
        path = Path(tmp) / "rows.ndjson"
        count = 0
        with path.open("wb") as out:
            for row in rows:
                out.write(orjson.dumps({c: row.get(c) for c in columns}, default=_default, option=_OPTIONS))
                count += 1
        if not count:
            return 0
        spec = ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items())
        names = ", ".join(columns)
        conn.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM read_json($path,"  # noqa: S608 - names from code
            f" format = 'newline_delimited', columns = {{{spec}}}) {on_conflict}",
            {"path": str(path)},
        )
    return count
