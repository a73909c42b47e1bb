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
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from integration_sync.defs.abcp_bitrix24.mapping import parse_abcp_datetime, registration_day, user_key
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
        CREATE TABLE abcp_users (
            user_id VARCHAR PRIMARY KEY,
            partition_date DATE NOT NULL,
            {", ".join(f"{column} VARCHAR" for column in _COLUMNS)},
            registration_date TIMESTAMP,
            update_time TIMESTAMP,
            raw JSON NOT NULL,
            fetched_at TIMESTAMPTZ NOT NULL,
            run_id VARCHAR
        );
        CREATE INDEX abcp_users_partition ON abcp_users (partition_date);
        CREATE TABLE abcp_user_changes (
            change_date DATE NOT NULL,
            user_id VARCHAR NOT NULL,
            update_time TIMESTAMP,
            raw JSON NOT NULL,
            fetched_at TIMESTAMPTZ NOT NULL,
            run_id VARCHAR,
            PRIMARY KEY (change_date, user_id)
        );
        """,
    ),
)


@dataclass
class LoadReport:
    """What one partition load fetched, stored and turned away."""

    fetched: int = 0
    stored: int = 0
    rejected: int = 0
    rejected_samples: list[tuple[str, str]] = field(default_factory=list)


def _stage(records: Iterable[Any], day_of: str, directory: Path, report: LoadReport) -> tuple[Path, list[list[Any]]]:
    """Write usable records as NDJSON; collect the unusable ones with their reasons."""
    staged = directory / "staged.ndjson"
    rejects: list[list[Any]] = []
    with staged.open("w", encoding="utf-8") as out:
        for raw in records:
            report.fetched += 1
            key, reason = user_key(raw)
            day: date | None = None
            if reason is None and isinstance(raw, dict):
                if day_of == "registration":
                    day = registration_day(raw)
                else:
                    moment = parse_abcp_datetime(raw.get("updateTime"))
                    day = moment.date() if moment else None
                if day is None:
                    reason = f"no valid {'registrationDate' if day_of == 'registration' else 'updateTime'}"
            if reason is not None and key is None:
                rejects.append([key, reason, raw])
                continue
            if day is None:
                rejects.append([key, reason or "unusable record", raw])
                continue
            out.write(json.dumps({"user_id": key, "day": day.isoformat(), "raw": raw}, ensure_ascii=False))
            out.write("\n")
    report.rejected += len(rejects)
    report.rejected_samples.extend((str(r[0]), str(r[1])) for r in rejects[:20])
    return staged, rejects


_READ_STAGED = (
    "CREATE TEMP TABLE staged AS SELECT user_id, day, raw,"
    " try_strptime(raw->>'updateTime', '%Y-%m-%d %H:%M:%S') AS update_time"
    " FROM read_json(?, format = 'newline_delimited',"
    " columns = {'user_id': 'VARCHAR', 'day': 'DATE', 'raw': 'JSON'})"
    " QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY update_time DESC NULLS LAST) = 1"
)


def _record_rejects(conn: Any, source: str, days: Sequence[date], rejects: list[list[Any]], run_id: str) -> None:
    label = f"{min(days)}..{max(days)}" if days else ""
    conn.execute(
        "DELETE FROM ingest_rejects WHERE flow = ? AND source = ? AND partition_key = ?", [FLOW, source, label]
    )
    if rejects:
        now = datetime.now(UTC)
        conn.executemany(
            "INSERT INTO ingest_rejects (flow, source, partition_key, record_key, reason, raw, run_id, rejected_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [FLOW, source, label, key, reason, json.dumps(raw, ensure_ascii=False, default=str), run_id, now]
                for key, reason, raw in rejects
            ],
        )


# Built from this module's constant column names only.
_EXTRACTS = ", ".join("raw->>'" + source + "'" for source in _COLUMNS.values())
_INSERT_USERS = (
    f"INSERT INTO abcp_users (user_id, partition_date, {', '.join(_COLUMNS)}, registration_date,"  # noqa: S608
    f" update_time, raw, fetched_at, run_id) SELECT user_id, day, {_EXTRACTS},"
    " try_strptime(raw->>'registrationDate', '%Y-%m-%d %H:%M:%S'), update_time, raw, now(), ? FROM staged"
)


def store_users(
    warehouse: Warehouse, users: Iterable[Any], *, first_day: date, last_day: date, run_id: str
) -> LoadReport:
    """Replace the registration-day partitions first_day..last_day with `users`."""
    report = LoadReport()
    with tempfile.TemporaryDirectory(prefix="abcp-users-") as tmp:
        staged, rejects = _stage(users, "registration", Path(tmp), report)
        with warehouse.transaction() as conn:
            conn.execute(_READ_STAGED, [str(staged)])
            conn.execute(
                "DELETE FROM abcp_users WHERE partition_date BETWEEN ? AND ?"
                " OR user_id IN (SELECT user_id FROM staged)",
                [first_day, last_day],
            )
            conn.execute(_INSERT_USERS, [run_id])
            report.stored = _count(conn, "SELECT count(*) FROM staged")
            _record_rejects(conn, "users", [first_day, last_day], rejects, run_id)
            conn.execute("DROP TABLE staged")
    return report


def store_changes(
    warehouse: Warehouse, users: Iterable[Any], *, first_day: date, last_day: date, run_id: str
) -> LoadReport:
    """Replace the update-day partitions first_day..last_day of `abcp_user_changes`."""
    report = LoadReport()
    with tempfile.TemporaryDirectory(prefix="abcp-changes-") as tmp:
        staged, rejects = _stage(users, "update", Path(tmp), report)
        with warehouse.transaction() as conn:
            conn.execute(_READ_STAGED, [str(staged)])
            conn.execute("DELETE FROM abcp_user_changes WHERE change_date BETWEEN ? AND ?", [first_day, last_day])
            conn.execute(
                "INSERT INTO abcp_user_changes (change_date, user_id, update_time, raw, fetched_at, run_id)"
                " SELECT day, user_id, update_time, raw, now(), ? FROM staged"
                " ON CONFLICT (change_date, user_id) DO UPDATE SET update_time = excluded.update_time,"
                " raw = excluded.raw, fetched_at = excluded.fetched_at, run_id = excluded.run_id",
                [run_id],
            )
            report.stored = _count(conn, "SELECT count(*) FROM staged")
            _record_rejects(conn, "user_changes", [first_day, last_day], rejects, run_id)
            conn.execute("DROP TABLE staged")
    return report


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
