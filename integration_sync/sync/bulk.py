"""Bulk inserts of Python rows into DuckDB through NDJSON and `read_json` (never row by row)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson


def insert_rows(conn: Any, table: str, columns: Mapping[str, str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert `rows` (dicts keyed by column) into `table`; `columns` maps each column to its DuckDB type.

    `table` and the column names come from the caller's code, never from data.
    """
    with tempfile.TemporaryDirectory(prefix="bulk-") as tmp:
        path = Path(tmp) / "rows.ndjson"
        count = 0
        with path.open("wb") as out:
            for row in rows:
                out.write(orjson.dumps({c: row.get(c) for c in columns}, default=str, option=orjson.OPT_APPEND_NEWLINE))
                count += 1
        if not count:
            return 0
        spec = ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items())
        names = ", ".join(columns)
        conn.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM read_json($path,"  # noqa: S608 - names from code
            f" format = 'newline_delimited', columns = {{{spec}}})",
            {"path": str(path)},
        )
    return count
