"""The ABCP users tables in the warehouse: schema, idempotent partition loads, the desired-state query.

Loads stream the API's records into a newline-delimited JSON file and insert them with DuckDB's
`read_json` in one short transaction (delete the partition, insert), so a million users load in
seconds with flat memory, and a re-run of a partition replaces it instead of duplicating it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import orjson

from integration_sync.sync.warehouse import Migration, Warehouse

FLOW = "abcp_bitrix24"

_COLUMNS = {
    "email": "email",
    "name": "name",
    "second_name": "secondName",
    "surname": "surname",
    "mobile": "mobile",
    "phone": "phone",
    "city": "city",
    "state": "state",
    "organization_name": "organizationName",
    "inn": "inn",
    "kpp": "kpp",
    "balance": "balance",
    "saldo": "saldo",
    "credit_limit": "creditLimit",
    "profile_id": "profileId",
    "market_type": "marketType",
}

ABCP_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "abcp_0001_users",
        f"""
        -- raw JSON compressed with zstd: 4x smaller than the default and twice as fast to write.
        CREATE TABLE abcp_users (
            user_id VARCHAR NOT NULL,
            partition_date DATE NOT NULL,
            {", ".join(f"{column} VARCHAR" for column in _COLUMNS)},
            registration_date TIMESTAMP,
            update_time TIMESTAMP,
            raw JSON NOT NULL USING COMPRESSION zstd,
            fetched_at TIMESTAMPTZ NOT NULL,
            run_id VARCHAR
        );
        CREATE TABLE abcp_user_changes (
            change_date DATE NOT NULL,
            user_id VARCHAR NOT NULL,
            update_time TIMESTAMP,
            raw JSON NOT NULL USING COMPRESSION zstd,
            fetched_at TIMESTAMPTZ NOT NULL,
            run_id VARCHAR
        );
        """,
    ),
)


@dataclass
class LoadReport:
    """What one load fetched, stored and turned away: over the run's range, and in `per_day` for each
    of its days (zeros for a day with nothing) under the asset's metadata names: fetched, stored,
    invalid.

    A record counts on its day (registration or update day, as stored); one turned away before its day
    is known (not an object, no valid date, not storable) counts on the range's first day, since the
    API is asked for the whole range at once; one dated outside the range counts on its nearest day."""

    fetched: int = 0
    stored: int = 0
    rejected: int = 0
    per_day: dict[date, dict[str, int]] = field(default_factory=dict)
    rejected_samples: list[tuple[str, str]] = field(default_factory=list)
    # records that cannot even be written as JSON for DuckDB: (record key, reason, repr of the record)
    unstorable: list[tuple[str | None, str, str]] = field(default_factory=list)


_MAX_REPR = 2000


def _stage(records: Iterable[Any], path: Path, report: LoadReport) -> None:
    """Write every record the API returned as one NDJSON line; DuckDB parses and checks them.

    A record that cannot be serialized (an integer beyond 64 bits, a lone surrogate, nesting past
    orjson's limit) is set aside with its reason instead of failing the whole load."""
    with path.open("wb") as out:
        for raw in records:
            report.fetched += 1
            try:
                line = orjson.dumps(raw, default=str, option=orjson.OPT_APPEND_NEWLINE)
            except (orjson.JSONEncodeError, TypeError, ValueError) as exc:
                report.unstorable.append((_record_key(raw), f"cannot be stored: {exc}"[:200], repr(raw)[:_MAX_REPR]))
                continue
            out.write(line)


def _record_key(raw: Any) -> str | None:
    """The record's userId as text (at most 40 characters), if it has one."""
    value = raw.get("userId") if isinstance(raw, dict) else None
    if value is None:
        return None
    return (value if isinstance(value, str) else repr(value))[:40]


_TS = "'%Y-%m-%d %H:%M:%S'"
_FIELDS = ("userId", "registrationDate", "updateTime", *_COLUMNS.values())
# Each line is parsed once: json_extract_string pulls every column in one pass, then the rows are
# checked the way mapping.user_key does (no userId, non-numeric userId, no valid date).
_STAGE = (
    "CREATE TEMP TABLE staged AS"  # noqa: S608 - built from this module's constant field names
    " WITH src AS (SELECT json AS raw, json_type(json) AS kind,"
    " json_extract_string(json, ["
    + ", ".join(f"'$.{f}'" for f in _FIELDS)
    + "]) AS v FROM read_json_objects($path, format = 'newline_delimited')),"
    " typed AS (SELECT raw, kind, trim(v[1]) AS user_id,"
    f" try_strptime(v[2], {_TS}) AS registration_date, try_strptime(v[3], {_TS}) AS update_time, "
    + ", ".join(f"v[{i + 4}] AS {column}" for i, column in enumerate(_COLUMNS))
    + " FROM src)"
    " SELECT *, CAST(CASE WHEN $by_update THEN update_time ELSE registration_date END AS DATE) AS day,"
    " CASE WHEN kind IS DISTINCT FROM 'OBJECT' THEN 'not an object: ' || CASE"
    " WHEN kind IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN 'number' WHEN kind = 'VARCHAR' THEN 'string'"
    " ELSE lower(coalesce(kind, 'null')) END"
    " WHEN user_id IS NULL OR user_id = '' THEN 'no userId'"
    " WHEN NOT regexp_full_match(user_id, '[0-9]{1,20}') THEN 'userId is not numeric: ' || left(user_id, 40)"
    " WHEN (CASE WHEN $by_update THEN update_time ELSE registration_date END) IS NULL"
    " THEN CASE WHEN $by_update THEN 'no valid updateTime' ELSE 'no valid registrationDate' END"
    " END AS reason FROM typed"
)
_GOOD = "(SELECT * FROM staged WHERE reason IS NULL)"
# A page shift can return a user twice: then keep its newest version (a sort, so only when needed).
_DEDUPE = (
    "DELETE FROM staged WHERE rowid IN (SELECT rowid FROM staged WHERE reason IS NULL"
    " QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY update_time DESC NULLS LAST) > 1)"
)
# No primary keys on the source tables: DuckDB keeps ART indexes in memory (a million-user load would
# not fit its memory limit), and uniqueness already follows from the dedupe above plus
# delete-then-insert in one transaction.
_INSERT_USERS = (
    f"INSERT INTO abcp_users (user_id, partition_date, {', '.join(_COLUMNS)}, registration_date,"  # noqa: S608
    " update_time, raw, fetched_at, run_id)"
    f" SELECT user_id, day, {', '.join(_COLUMNS)}, registration_date, update_time, raw, now(), $run_id FROM " + _GOOD
)
_INSERT_CHANGES = (
    "INSERT INTO abcp_user_changes (change_date, user_id, update_time, raw, fetched_at, run_id)"  # noqa: S608
    " SELECT day, user_id, update_time, raw, now(), $run_id FROM " + _GOOD
)


# per day of the range (a row's day as LoadReport says): before the dedupe, what the API returned;
# after the insert, what was stored
_COUNTED_DAY = "least(greatest(coalesce(day, $first), $first), $last)"
_FETCHED_PER_DAY = (
    f"SELECT {_COUNTED_DAY}, count(*), count(*) FILTER (WHERE reason IS NOT NULL)"  # noqa: S608
    " FROM staged GROUP BY 1"
)
_STORED_PER_DAY = f"SELECT {_COUNTED_DAY}, count(*) FROM staged WHERE reason IS NULL GROUP BY 1"  # noqa: S608


def _load(conn: Any, path: Path, by_update: bool, report: LoadReport) -> None:
    conn.execute(_STAGE, {"path": str(path), "by_update": by_update})
    first, last = min(report.per_day), max(report.per_day)
    counted = conn.execute(_FETCHED_PER_DAY, {"first": first, "last": last}).fetchall()
    for day, fetched, invalid in counted:
        report.per_day[day]["fetched"] += int(fetched)
        report.per_day[day]["invalid"] += int(invalid)
    report.per_day[first]["fetched"] += len(report.unstorable)
    report.per_day[first]["invalid"] += len(report.unstorable)
    rejects = conn.execute(
        "SELECT user_id, reason FROM staged WHERE reason IS NOT NULL ORDER BY user_id NULLS FIRST LIMIT 20"
    ).fetchall()
    report.rejected_samples = [(str(key), reason) for key, reason, _ in report.unstorable[:20]]
    report.rejected_samples += [(str(key), str(reason)) for key, reason in rejects][: 20 - len(report.rejected_samples)]
    row = conn.execute("SELECT count(*) FILTER (WHERE reason IS NOT NULL) FROM staged").fetchone()
    report.rejected = (int(row[0]) if row else 0) + len(report.unstorable)
    counts = conn.execute("SELECT count(user_id), count(DISTINCT user_id) FROM staged WHERE reason IS NULL").fetchone()
    if counts and counts[0] != counts[1]:
        conn.execute(_DEDUPE)


def _record_rejects(conn: Any, source: str, first_day: date, last_day: date, run_id: str, report: LoadReport) -> None:
    label = f"{first_day}..{last_day}"
    conn.execute(
        "DELETE FROM ingest_rejects WHERE flow = ? AND source = ? AND partition_key = ?", [FLOW, source, label]
    )
    conn.execute(
        "INSERT INTO ingest_rejects (flow, source, partition_key, record_key, reason, raw, run_id, rejected_at)"
        " SELECT ?, ?, ?, user_id, reason, raw, ?, now() FROM staged WHERE reason IS NOT NULL",
        [FLOW, source, label, run_id],
    )
    if report.unstorable:
        # raw holds the record's Python repr as a JSON string: the record itself is not valid JSON for us
        conn.executemany(
            "INSERT INTO ingest_rejects (flow, source, partition_key, record_key, reason, raw, run_id, rejected_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, now())",
            [
                [FLOW, source, label, key, reason, orjson.dumps(text).decode(), run_id]
                for key, reason, text in report.unstorable
            ],
        )


def store_users(
    warehouse: Warehouse,
    users: Iterable[Any],
    *,
    first_day: date,
    last_day: date,
    run_id: str,
    by_update: bool = False,
) -> LoadReport:
    """Replace partitions first_day..last_day with `users`: of `abcp_users` (registration days), or
    with `by_update` of `abcp_user_changes` (update days)."""
    report = LoadReport(per_day=_zeros(first_day, last_day, ("fetched", "stored", "invalid")))
    source = "user_changes" if by_update else "users"
    with tempfile.TemporaryDirectory(prefix=f"abcp-{source}-") as tmp:
        path = Path(tmp) / "staged.ndjson"
        _stage(users, path, report)
        with warehouse.transaction() as conn:
            _load(conn, path, by_update, report)
            if by_update:
                conn.execute("DELETE FROM abcp_user_changes WHERE change_date BETWEEN ? AND ?", [first_day, last_day])
            else:
                conn.execute(
                    "DELETE FROM abcp_users WHERE partition_date BETWEEN ? AND ?"
                    " OR user_id IN (SELECT user_id FROM staged WHERE reason IS NULL)",
                    [first_day, last_day],
                )
            insert = _INSERT_CHANGES if by_update else _INSERT_USERS
            report.stored = _inserted(conn.execute(insert, {"run_id": run_id}))
            stored = conn.execute(_STORED_PER_DAY, {"first": first_day, "last": last_day}).fetchall()
            for day, count in stored:
                report.per_day[day]["stored"] = int(count)
            _record_rejects(conn, source, first_day, last_day, run_id, report)
            conn.execute("DROP TABLE staged")
    return report


def _zeros(first_day: date, last_day: date, names: Sequence[str]) -> dict[date, dict[str, int]]:
    return {first_day + timedelta(days=n): dict.fromkeys(names, 0) for n in range((last_day - first_day).days + 1)}


def _inserted(cursor: Any) -> int:
    row = cursor.fetchone()
    return int(row[0]) if row else 0


_LATEST_USERS = """
    WITH latest_change AS (
        SELECT user_id, raw, update_time FROM abcp_user_changes
        QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY update_time DESC NULLS LAST, change_date DESC) = 1
    )
    SELECT COALESCE(u.user_id, c.user_id) AS user_id,
           CASE WHEN c.user_id IS NOT NULL
                 AND (u.user_id IS NULL OR c.update_time >= u.update_time OR u.update_time IS NULL)
                THEN c.raw ELSE u.raw END AS raw
    FROM abcp_users u FULL OUTER JOIN latest_change c ON u.user_id = c.user_id
    ORDER BY 1
"""


def latest_users(warehouse: Warehouse) -> Iterator[dict[str, Any]]:
    """Every known user in its newest version (a later change wins over the registration snapshot)."""
    with warehouse.connect() as conn:
        rows = conn.execute(_LATEST_USERS).fetchall()
    for _, raw in rows:
        value = json.loads(raw) if isinstance(raw, str) else raw
        if isinstance(value, dict):
            yield value


def partition_count(warehouse: Warehouse, first_day: date, last_day: date) -> int:
    """Users stored for the registration days first_day..last_day."""
    with warehouse.connect() as conn:
        return _count(
            conn, "SELECT count(*) FROM abcp_users WHERE partition_date BETWEEN ? AND ?", [first_day, last_day]
        )


def _count(conn: Any, sql: str, params: Sequence[Any] = ()) -> int:
    row = conn.execute(sql, list(params)).fetchone()
    return int(row[0]) if row else 0


def turned_away(warehouse: Warehouse, since: date) -> tuple[int, int]:
    """Users turned away by the loads since `since` (UTC midnight), and all users those loads kept
    or turned away (both sources: registrations and changes).

    A record turned away by two overlapping ranges (a day loaded alone, then in a backfill) is in
    `ingest_rejects` under both ranges' labels; it counts once."""
    start = datetime.combine(since, time(0), UTC)
    with warehouse.connect() as conn:
        rejected = _count(
            conn,
            "SELECT count(DISTINCT (source, coalesce(record_key, md5(CAST(raw AS VARCHAR)))))"
            " FROM ingest_rejects WHERE flow = ? AND rejected_at >= ?",
            [FLOW, start],
        )
        kept = _count(
            conn,
            "SELECT (SELECT count(*) FROM abcp_users WHERE fetched_at >= ?)"
            " + (SELECT count(*) FROM abcp_user_changes WHERE fetched_at >= ?)",
            [start, start],
        )
    return rejected, rejected + kept


def trace_source(warehouse: Warehouse, key: str) -> dict[str, Any] | None:
    """`integration-sync trace`: the user's registration snapshots and later changes, newest first."""
    with warehouse.connect() as conn:
        snapshots = conn.execute(
            "SELECT partition_date, update_time, fetched_at, run_id, raw FROM abcp_users"
            " WHERE user_id = ? ORDER BY fetched_at DESC LIMIT 5",
            [key],
        ).fetchall()
        changes = conn.execute(
            "SELECT change_date, update_time, fetched_at, run_id, raw FROM abcp_user_changes"
            " WHERE user_id = ? ORDER BY fetched_at DESC LIMIT 5",
            [key],
        ).fetchall()
    if not snapshots and not changes:
        return None
    names = ("day", "update_time", "fetched_at", "run_id", "raw")
    return {
        "abcp_users": [dict(zip(names, (*row[:4], json.loads(row[4])), strict=True)) for row in snapshots],
        "abcp_user_changes": [dict(zip(names, (*row[:4], json.loads(row[4])), strict=True)) for row in changes],
    }
