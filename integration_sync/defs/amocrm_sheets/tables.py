"""The amocrm_sheets warehouse tables: the seller's leads as last read from amoCRM, the sheet as last
read (rows, Staff, tabs, layout problems) and the status hooks already handled (the dedup window).

Migration ids start with `sheets_`. Loads are short transactions: read the API first, then write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any

from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.mapping import LeadSnapshot, code_key
from integration_sync.defs.amocrm_sheets.sheet_source import SheetRow, SheetSnapshot
from integration_sync.sync.bulk import insert_rows
from integration_sync.sync.warehouse import Migration, Warehouse

SHEETS_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "sheets_0001_tables",
        """
        CREATE TABLE sheets_leads (
            lead_id BIGINT PRIMARY KEY,
            partition_date DATE NOT NULL,      -- the lead's creation day in the flow's zone
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            pipeline_id BIGINT NOT NULL,
            pipeline_name VARCHAR,
            status_id BIGINT NOT NULL,
            status_name VARCHAR,
            stage VARCHAR NOT NULL,            -- trigger | sent | won | lost | other
            tracked BOOLEAN NOT NULL,          -- has reached a trigger stage: it has (or gets) a row
            contact_name VARCHAR,
            phone VARCHAR,
            company VARCHAR,
            product VARCHAR,
            order_date VARCHAR,                -- as shown in the sheet (DD.MM.YYYY in the flow's zone)
            region VARCHAR,
            employee_code VARCHAR,
            order_no VARCHAR,
            raw JSON NOT NULL,
            loaded_at TIMESTAMPTZ NOT NULL,
            run_id VARCHAR
        );
        CREATE TABLE sheets_rows (
            tab_id BIGINT NOT NULL,
            tab_title VARCHAR NOT NULL,
            row_number INTEGER NOT NULL,       -- 1-based, as the sheet shows it (row 1 is the header)
            lead_id BIGINT,                    -- NULL when the id cell is empty or not a number
            cells JSON NOT NULL,               -- the row's cells, padded to the layout's width
            read_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE sheets_staff (
            code VARCHAR NOT NULL,
            code_key VARCHAR NOT NULL,         -- the code without leading zeros: 0134 = 134
            name VARCHAR NOT NULL,
            department VARCHAR,
            read_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE sheets_tabs (
            tab_id BIGINT PRIMARY KEY,
            title VARCHAR NOT NULL,
            role VARCHAR NOT NULL,             -- active | archive | staff | dashboard | other
            period VARCHAR,                    -- an archive's period (2026-11, 2026-11-30 14h)
            header_ok BOOLEAN NOT NULL,
            seen_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE sheets_layout_issues (
            tab_title VARCHAR NOT NULL,
            row_number INTEGER,
            column_name VARCHAR,
            value VARCHAR,
            problem VARCHAR NOT NULL,
            seen_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE sheets_hook_events (
            event_key VARCHAR PRIMARY KEY,     -- the inbox's key: a re-delivered hook is one event
            lead_id BIGINT NOT NULL,
            status_id BIGINT,
            received_at TIMESTAMPTZ NOT NULL,
            outcome VARCHAR NOT NULL,          -- loaded | duplicate | too_old | other_pipeline | not_found
            loaded_at TIMESTAMPTZ NOT NULL,
            run_id VARCHAR
        );
        """,
    ),
    Migration(  # rows recorded by their tab alone (every lead of a tab shared one target id): tab:lead
        "sheets_0002_row_target_ids",
        "UPDATE id_map SET target_id = target_id || ':' || source_key"
        " WHERE flow = 'amocrm_sheets' AND entity = 'sheet_row' AND target_id NOT LIKE '%:%';",
    ),
)


_LEAD_COLUMNS = {
    "lead_id": "BIGINT",
    "partition_date": "DATE",
    "created_at": "TIMESTAMPTZ",
    "updated_at": "TIMESTAMPTZ",
    "pipeline_id": "BIGINT",
    "pipeline_name": "VARCHAR",
    "status_id": "BIGINT",
    "status_name": "VARCHAR",
    "stage": "VARCHAR",
    "tracked": "BOOLEAN",
    "contact_name": "VARCHAR",
    "phone": "VARCHAR",
    "company": "VARCHAR",
    "product": "VARCHAR",
    "order_date": "VARCHAR",
    "region": "VARCHAR",
    "employee_code": "VARCHAR",
    "order_no": "VARCHAR",
    "raw": "JSON",
    "loaded_at": "TIMESTAMPTZ",
    "run_id": "VARCHAR",
}
_UPDATE_LEAD = "ON CONFLICT (lead_id) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in _LEAD_COLUMNS if c != "lead_id"
)


def _ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def known_tracked(store: Warehouse, lead_ids: Sequence[int]) -> set[int]:
    """Leads that already have (or had) a row: tracked before, or found in the sheet's last read."""
    if not lead_ids:
        return set()
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT lead_id FROM sheets_leads WHERE tracked AND list_contains($ids, lead_id)"
            " UNION SELECT lead_id FROM sheets_rows WHERE list_contains($ids, lead_id)",
            {"ids": list(lead_ids)},
        ).fetchall()
    return {int(r[0]) for r in rows}


def store_leads(
    store: Warehouse,
    snapshots: Sequence[LeadSnapshot],
    partition_of: Mapping[int, date],
    run_id: str,
    events: Iterable[Mapping[str, Any]] = (),
) -> int:
    """Upsert the leads read (a lead at a trigger stage, or one that has a row, is tracked) and record
    the hook events they answer, in one transaction. Returns how many leads are tracked."""
    now = datetime.now(UTC)
    tracked_before = known_tracked(store, [s.lead_id for s in snapshots])
    rows = []
    tracked = 0
    for snap in snapshots:
        is_tracked = snap.stage == "trigger" or snap.lead_id in tracked_before
        tracked += is_tracked
        rows.append(
            {
                **asdict(snap),
                "created_at": _ts(snap.created_at),
                "updated_at": _ts(snap.updated_at),
                "partition_date": partition_of[snap.lead_id],
                "tracked": is_tracked,
                "raw": asdict(snap),
                "loaded_at": now,
                "run_id": run_id,
            }
        )
    with store.transaction() as conn:
        insert_rows(conn, "sheets_leads", _LEAD_COLUMNS, rows, on_conflict=_UPDATE_LEAD)
        insert_rows(
            conn,
            "sheets_hook_events",
            {
                "event_key": "VARCHAR",
                "lead_id": "BIGINT",
                "status_id": "BIGINT",
                "received_at": "TIMESTAMPTZ",
                "outcome": "VARCHAR",
                "loaded_at": "TIMESTAMPTZ",
                "run_id": "VARCHAR",
            },
            ({**e, "loaded_at": now, "run_id": run_id} for e in events),
            on_conflict="ON CONFLICT (event_key) DO NOTHING",
        )
    return tracked


def loaded_event_keys(store: Warehouse, keys: Sequence[str]) -> set[str]:
    if not keys:
        return set()
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT event_key FROM sheets_hook_events WHERE list_contains(?, event_key)", [list(keys)]
        ).fetchall()
    return {str(r[0]) for r in rows}


def recently_loaded(store: Warehouse, pairs: Sequence[tuple[int, int]], since: datetime) -> set[tuple[int, int]]:
    """(lead, status) pairs a hook received since `since` already loaded: the seed's dedup window."""
    if not pairs:
        return set()
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT DISTINCT lead_id, status_id FROM sheets_hook_events"
            " WHERE outcome = 'loaded' AND received_at >= ? AND list_contains(?, lead_id)",
            [since, sorted({p[0] for p in pairs})],
        ).fetchall()
    return {(int(a), int(b)) for a, b in rows} & set(pairs)


def store_sheet(store: Warehouse, snapshot: SheetSnapshot) -> None:
    """Replace the warehouse's copy of the sheet (rows, Staff, tabs, layout problems) in one transaction."""
    now = datetime.now(UTC)
    staff = []
    for row in snapshot.staff_rows[1:]:
        cells = layout.pad(row, len(layout.STAFF_COLUMNS))
        if code_key(cells[1]) and cells[2].strip():
            staff.append(
                {
                    "code": cells[1].strip(),
                    "code_key": code_key(cells[1]),
                    "name": cells[2].strip(),
                    "department": cells[3].strip(),
                    "read_at": now,
                }
            )
    with store.transaction() as conn:
        for table in ("sheets_rows", "sheets_staff", "sheets_tabs", "sheets_layout_issues"):
            conn.execute(f"DELETE FROM {table}")  # noqa: S608 - table names from code
        insert_rows(
            conn,
            "sheets_rows",
            {
                "tab_id": "BIGINT",
                "tab_title": "VARCHAR",
                "row_number": "INTEGER",
                "lead_id": "BIGINT",
                "cells": "JSON",
                "read_at": "TIMESTAMPTZ",
            },
            (
                {
                    "tab_id": r.tab_id,
                    "tab_title": r.tab_title,
                    "row_number": r.row_number,
                    "lead_id": r.lead_id,
                    "cells": list(r.cells),
                    "read_at": now,
                }
                for r in snapshot.rows
            ),
        )
        insert_rows(
            conn,
            "sheets_staff",
            {
                "code": "VARCHAR",
                "code_key": "VARCHAR",
                "name": "VARCHAR",
                "department": "VARCHAR",
                "read_at": "TIMESTAMPTZ",
            },
            staff,
        )
        insert_rows(
            conn,
            "sheets_tabs",
            {
                "tab_id": "BIGINT",
                "title": "VARCHAR",
                "role": "VARCHAR",
                "period": "VARCHAR",
                "header_ok": "BOOLEAN",
                "seen_at": "TIMESTAMPTZ",
            },
            (
                {
                    "tab_id": t.id,
                    "title": t.title,
                    "role": t.role,
                    "period": t.period,
                    "header_ok": t.id not in snapshot.broken_tabs,
                    "seen_at": now,
                }
                for t in snapshot.tabs
            ),
        )
        insert_rows(
            conn,
            "sheets_layout_issues",
            {
                "tab_title": "VARCHAR",
                "row_number": "INTEGER",
                "column_name": "VARCHAR",
                "value": "VARCHAR",
                "problem": "VARCHAR",
                "seen_at": "TIMESTAMPTZ",
            },
            ({**asdict(i), "seen_at": now} for i in snapshot.issues),
        )


def stored_rows(store: Warehouse) -> list[SheetRow]:
    """The sheet's rows as last read (by the sheet_rows asset)."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT r.tab_id, r.tab_title, r.row_number, r.lead_id, r.cells FROM sheets_rows r"
            " JOIN sheets_tabs t USING (tab_id) WHERE t.header_ok ORDER BY r.tab_id, r.row_number"
        ).fetchall()
    return [
        SheetRow(int(a), str(b), int(c), None if d is None else int(d), tuple(json.loads(e))) for a, b, c, d, e in rows
    ]


def tracked_leads(store: Warehouse) -> list[dict[str, Any]]:
    """Every tracked lead's stored fields (the desired state of the sheet's amoCRM columns)."""
    with store.connect() as conn:
        cursor = conn.execute(
            "SELECT lead_id, pipeline_id, status_id, status_name, stage, updated_at, contact_name, phone, company,"
            " product, order_date, region, employee_code, order_no FROM sheets_leads WHERE tracked ORDER BY lead_id"
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def lead_states(store: Warehouse, lead_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    if not lead_ids:
        return {}
    with store.connect() as conn:
        cursor = conn.execute(
            "SELECT lead_id, pipeline_id, status_id, status_name, stage, updated_at FROM sheets_leads"
            " WHERE list_contains(?, lead_id)",
            [list(lead_ids)],
        )
        names = [d[0] for d in cursor.description]
        return {int(row[0]): dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def layout_issues(store: Warehouse) -> list[tuple[str, int | None, str | None, str | None, str]]:
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT tab_title, row_number, column_name, value, problem FROM sheets_layout_issues"
            " ORDER BY tab_title, row_number"
        ).fetchall()
    return [(str(a), b, c, d, str(e)) for a, b, c, d, e in rows]


def trace_source(store: Warehouse, key: str) -> dict[str, Any] | None:
    """`integration-sync trace amocrm_sheets LEAD_ID`: the lead as last read, its rows, its hooks."""
    if not key.isdigit():
        return None
    lead_id = int(key)
    with store.connect() as conn:
        lead = conn.execute(
            "SELECT raw, tracked, loaded_at, run_id FROM sheets_leads WHERE lead_id = ?", [lead_id]
        ).fetchone()
        rows = conn.execute(
            "SELECT tab_title, row_number, cells FROM sheets_rows WHERE lead_id = ?", [lead_id]
        ).fetchall()
        hooks = conn.execute(
            "SELECT event_key, status_id, received_at, outcome FROM sheets_hook_events WHERE lead_id = ?"
            " ORDER BY received_at",
            [lead_id],
        ).fetchall()
    if lead is None and not rows:
        return None
    return {
        "lead": json.loads(lead[0]) if lead else None,
        "tracked": bool(lead[1]) if lead else None,
        "loaded_at": str(lead[2]) if lead else None,
        "sheet_rows": [{"tab": t, "row": n, "cells": json.loads(c)} for t, n, c in rows],
        "hooks": [{"key": k, "status_id": s, "received_at": str(r), "outcome": o} for k, s, r, o in hooks],
    }
