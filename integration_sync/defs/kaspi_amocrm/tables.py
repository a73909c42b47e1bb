"""The Kaspi orders tables: schema, idempotent partition loads, status history, desired-state query.

A partition (a Kazakhstan calendar day) is replaced as a whole by each load. An order's lines never
change, so they are fetched once and kept; a status that differs from the stored one is recorded in
`kaspi_order_status_changes` before the partition is replaced. An order that cannot be stored (e.g.
an integer past 64 bits, text that is not UTF-8) is quarantined in `ingest_rejects` with its reason
and the rest of the load goes on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson

from integration_sync.sync.bulk import insert_rows
from integration_sync.sync.warehouse import Migration, Warehouse

FLOW = "kaspi_amocrm"
SOURCE = "kaspi_orders"
_INT32 = 2**31

KASPI_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "kaspi_0001_orders",
        """
        CREATE TABLE kaspi_orders (
            partition_date DATE NOT NULL,
            code VARCHAR NOT NULL,
            order_id VARCHAR,
            status VARCHAR,
            state VARCHAR,
            creation_date TIMESTAMPTZ,
            total_price DOUBLE,
            customer_id VARCHAR,
            cell_phone VARCHAR,
            raw JSON NOT NULL,
            fetched_at TIMESTAMPTZ NOT NULL,
            run_id VARCHAR
        );
        CREATE TABLE kaspi_order_entries (
            order_code VARCHAR NOT NULL,
            entry_id VARCHAR,
            entry_number INTEGER,
            code VARCHAR,
            name VARCHAR,
            quantity DOUBLE,
            base_price DOUBLE,
            total_price DOUBLE,
            raw JSON,
            fetched_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE kaspi_order_status_changes (
            order_code VARCHAR NOT NULL,
            old_status VARCHAR,
            new_status VARCHAR,
            old_state VARCHAR,
            new_state VARCHAR,
            observed_at TIMESTAMPTZ NOT NULL,
            run_id VARCHAR
        );
        CREATE TABLE kaspi_partition_counts (
            partition_date DATE NOT NULL,
            api_total INTEGER,
            stored INTEGER NOT NULL,
            fetched_at TIMESTAMPTZ NOT NULL
        );
        """,
    ),
    # its phone → contact index goes to the shared index of the account (`targets.amocrm_contacts`),
    # which adopts it at the flow's next push (the account's URL is not in the warehouse)
    Migration(
        "kaspi_0002_shared_contact_index",
        """
        INSERT INTO id_map
            SELECT 'amocrm:legacy:kaspi_amocrm', 'contact_by_identity', 'phone:' || source_key, target_id, updated_at
            FROM id_map WHERE flow = 'kaspi_amocrm' AND entity = 'contact_by_phone'
            ON CONFLICT DO NOTHING;
        DELETE FROM id_map WHERE flow = 'kaspi_amocrm' AND entity = 'contact_by_phone';
        UPDATE flow_state SET flow = 'amocrm:legacy:kaspi_amocrm'
            WHERE flow = 'kaspi_amocrm' AND key = 'contacts_updated_at';
        """,
    ),
)

_ORDER_COLUMNS = {
    "partition_date": "DATE",
    "code": "VARCHAR",
    "order_id": "VARCHAR",
    "status": "VARCHAR",
    "state": "VARCHAR",
    "creation_date": "TIMESTAMPTZ",
    "total_price": "DOUBLE",
    "customer_id": "VARCHAR",
    "cell_phone": "VARCHAR",
    "raw": "JSON",
    "fetched_at": "TIMESTAMPTZ",
    "run_id": "VARCHAR",
}
_ENTRY_COLUMNS = {
    "order_code": "VARCHAR",
    "entry_id": "VARCHAR",
    "entry_number": "INTEGER",
    "code": "VARCHAR",
    "name": "VARCHAR",
    "quantity": "DOUBLE",
    "base_price": "DOUBLE",
    "total_price": "DOUBLE",
    "raw": "JSON",
    "fetched_at": "TIMESTAMPTZ",
}


@dataclass
class OrderRow:
    """One fetched order: its JSON:API attributes (+ id) and its lines, ready to store."""

    code: str
    order_id: str
    day: date
    attributes: dict[str, Any]
    entries: list[dict[str, Any]]


@dataclass
class OrdersLoadReport:
    """What one load fetched, added, stored, saw move and quarantined: over the run's range, and in
    `per_day` for each of its days (zeros for a day with nothing) under the asset's metadata names,
    with `kaspi_total`, Kaspi's totalCount of the day, when the run asked for it (a full load).

    An order counts on its `OrderRow.day`: its creation day, or the range's first day when the asset
    could not tell it (the order is then quarantined there, once); a day outside the range counts on
    the range's nearest day."""

    fetched: int = 0
    new: int = 0
    stored: int = 0
    status_changes: int = 0
    status_change_samples: list[tuple[str, str]] = field(default_factory=list)
    quarantined: int = 0
    quarantine_samples: list[tuple[str, str]] = field(default_factory=list)
    per_day: dict[date, dict[str, int]] = field(default_factory=dict)

    def count(self, day: date, name: str) -> None:
        """One more `name` on `day` (kept within the range)."""
        self.per_day[min(max(day, min(self.per_day)), max(self.per_day))][name] += 1


_PER_DAY = ("fetched", "new", "stored", "status_changes", "quarantined")


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def known_entries(warehouse: Warehouse, codes: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Stored lines by order code (all, or of `codes`): lines never change, so they are fetched once."""
    with warehouse.connect() as conn:
        rows = conn.execute(
            "SELECT order_code, entry_id, entry_number, code, name, quantity, base_price, total_price, raw"
            " FROM kaspi_order_entries WHERE $all OR list_contains($codes, order_code)"
            " ORDER BY order_code, entry_number",
            {"all": codes is None, "codes": list(codes or [])},
        ).fetchall()
    result: dict[str, list[dict[str, Any]]] = {}
    for code, entry_id, number, product, name, quantity, base, total, raw in rows:
        result.setdefault(code, []).append(
            {
                "id": entry_id,
                "entry_number": number,
                "code": product,
                "name": name,
                "quantity": quantity,
                "base_price": base,
                "total_price": total,
                "raw": json.loads(raw) if isinstance(raw, str) else raw,
            }
        )
    return result


def store_orders(
    warehouse: Warehouse,
    orders: Sequence[OrderRow],
    *,
    first_day: date,
    last_day: date,
    api_totals: Mapping[date, int],
    run_id: str,
    replace: bool = True,
) -> OrdersLoadReport:
    """Replace the creation-day partitions first_day..last_day with `orders` (or with `replace=False`
    merge them in) and record status moves."""
    days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    report = OrdersLoadReport(fetched=len(orders), per_day={day: dict.fromkeys(_PER_DAY, 0) for day in days})
    for order in orders:
        report.count(order.day, "fetched")
    for day, total in api_totals.items():
        if day in report.per_day:
            report.per_day[day]["kaspi_total"] = total
    now = datetime.now(UTC)
    unique = {o.code: o for o in orders}
    rows: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    good: list[OrderRow] = []
    bad: list[tuple[OrderRow, str]] = []
    for order in unique.values():
        try:
            rows[order.code] = _rows(order, now, run_id)
        except ValueError as exc:
            bad.append((order, str(exc)))
        else:
            good.append(order)
            report.count(order.day, "stored")
    for order, _ in bad:
        report.count(order.day, "quarantined")
    report.quarantined = len(bad)
    report.quarantine_samples = [(o.code, reason) for o, reason in bad[:20]]
    with warehouse.transaction() as conn:
        before = {
            code: (status, state)
            for code, status, state in conn.execute(
                "SELECT code, status, state FROM kaspi_orders WHERE list_contains(?, code)", [list(unique)]
            ).fetchall()
        }
        changes = []
        for order in unique.values():
            status, state = order.attributes.get("status"), order.attributes.get("state")
            if order.code not in before:
                report.new += 1
                report.count(order.day, "new")
            elif before[order.code] != (status, state):
                changes.append([order.code, *before[order.code], status, state])
                report.count(order.day, "status_changes")
        for code, old_status, old_state, new_status, new_state in changes:
            conn.execute(
                "INSERT INTO kaspi_order_status_changes VALUES (?, ?, ?, ?, ?, ?, ?)",
                [code, old_status, new_status, old_state, new_state, now, run_id],
            )
        report.status_changes = len(changes)
        report.status_change_samples = [(c[0], f"{c[1]} → {c[3]}") for c in changes[:20]]
        conn.execute(
            "DELETE FROM kaspi_orders WHERE (? AND partition_date BETWEEN ? AND ?) OR list_contains(?, code)",
            [replace, first_day, last_day, list(unique)],
        )
        report.stored = insert_rows(conn, "kaspi_orders", _ORDER_COLUMNS, (rows[o.code][0] for o in good))
        conn.execute("DELETE FROM kaspi_order_entries WHERE list_contains(?, order_code)", [list(unique)])
        insert_rows(conn, "kaspi_order_entries", _ENTRY_COLUMNS, (e for o in good for e in rows[o.code][1]))
        _quarantine(conn, first_day, last_day, list(unique), bad, run_id, now)
        stored_per_day: dict[date, int] = {}
        for order in good:
            stored_per_day[order.day] = stored_per_day.get(order.day, 0) + 1
        for day, total in api_totals.items():
            conn.execute("DELETE FROM kaspi_partition_counts WHERE partition_date = ?", [day])
            conn.execute(
                "INSERT INTO kaspi_partition_counts VALUES (?, ?, ?, ?)", [day, total, stored_per_day.get(day, 0), now]
            )
    return report


def _rows(o: OrderRow, now: datetime, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The order's row and its lines' rows, checked to be storable; ValueError says why not."""
    customer = o.attributes.get("customer") if isinstance(o.attributes.get("customer"), dict) else {}
    assert isinstance(customer, dict)
    try:
        created = _ms(o.attributes.get("creationDate"))
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"creationDate out of range: {o.attributes.get('creationDate')!r:.40}") from None
    order = {
        "partition_date": o.day,
        "code": o.code,
        "order_id": o.order_id,
        "status": o.attributes.get("status"),
        "state": o.attributes.get("state"),
        "creation_date": created,
        "total_price": _number(o.attributes.get("totalPrice")),
        "customer_id": customer.get("id"),
        "cell_phone": customer.get("cellPhone"),
        "raw": {"id": o.order_id, **o.attributes},
        "fetched_at": now,
        "run_id": run_id,
    }
    entries = [
        {
            "order_code": o.code,
            "entry_id": e.get("id"),
            "entry_number": e.get("entry_number"),
            "code": e.get("code"),
            "name": e.get("name"),
            "quantity": _number(e.get("quantity")),
            "base_price": _number(e.get("base_price")),
            "total_price": _number(e.get("total_price")),
            "raw": e.get("raw"),
            "fetched_at": now,
        }
        for e in o.entries
    ]
    for entry in entries:
        number = entry["entry_number"]
        if number is not None and (isinstance(number, bool) or not isinstance(number, int) or abs(number) >= _INT32):
            raise ValueError(f"line entry_number is not a 32-bit integer: {number!r:.40}")
    for row in (order, *entries):
        for name, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                row[name] = None
        try:
            orjson.dumps(row, default=_text, option=orjson.OPT_PASSTHROUGH_DATETIME)
        except (TypeError, orjson.JSONEncodeError) as exc:  # ints past 64 bits, text that is not UTF-8
            raise ValueError(f"cannot be stored: {exc}") from None
    return order, entries


def _text(value: Any) -> Any:
    # as the bulk insert writes them
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _quarantine(
    conn: Any,
    first_day: date,
    last_day: date,
    codes: list[str],
    bad: Sequence[tuple[OrderRow, str]],
    run_id: str,
    now: datetime,
) -> None:
    """One `ingest_rejects` row per order that could not be stored (the latest reason); an order that
    stores now leaves quarantine."""
    conn.execute(
        "DELETE FROM ingest_rejects WHERE flow = ? AND source = ? AND list_contains(?, record_key)",
        [FLOW, SOURCE, codes],
    )
    for order, reason in bad:
        # raw as ASCII-escaped JSON text: the record itself could not be written as it is
        raw = json.dumps({"id": order.order_id, **order.attributes}, ensure_ascii=True, default=str)
        conn.execute(
            "INSERT INTO ingest_rejects (flow, source, partition_key, record_key, reason, raw, run_id, rejected_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [FLOW, SOURCE, f"{first_day}..{last_day}", order.code, reason, raw, run_id, now],
        )


def _ms(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    return None


def orders_to_sync(warehouse: Warehouse, since: date) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Orders created since `since`, plus any older one not yet synced: (attributes, lines)."""
    with warehouse.connect() as conn:
        rows = conn.execute(
            "SELECT o.code, o.raw FROM kaspi_orders o"
            " LEFT JOIN sync_state s ON s.flow = ? AND s.entity = 'order' AND s.source_key = o.code"
            " WHERE o.partition_date >= ? OR s.status IS NULL OR s.status <> 'synced'"
            " ORDER BY o.creation_date, o.code",
            [FLOW, since],
        ).fetchall()
    entries = known_entries(warehouse, [code for code, _ in rows])
    for code, raw in rows:
        attributes = json.loads(raw) if isinstance(raw, str) else raw
        yield attributes, entries.get(code, [])


def newest_per_day(warehouse: Warehouse, first_day: date, last_day: date) -> dict[date, datetime]:
    """The newest stored creationDate of each day (days with no order are absent)."""
    with warehouse.connect() as conn:
        rows = conn.execute(
            "SELECT partition_date, max(creation_date) FROM kaspi_orders"
            " WHERE partition_date BETWEEN ? AND ? AND creation_date IS NOT NULL GROUP BY 1",
            [first_day, last_day],
        ).fetchall()
    return {row[0]: row[1] for row in rows}


def partition_mismatches(warehouse: Warehouse) -> list[tuple[date, int, int]]:
    """Days whose stored order count differs from Kaspi's totalCount at the last load."""
    with warehouse.connect() as conn:
        rows = conn.execute(
            "SELECT partition_date, api_total, stored FROM kaspi_partition_counts"
            " WHERE api_total IS NOT NULL AND api_total <> stored ORDER BY 1"
        ).fetchall()
    return [(r[0], int(r[1]), int(r[2])) for r in rows]


def turned_away(warehouse: Warehouse, since: date) -> tuple[int, int]:
    """Orders quarantined by the loads since `since` (UTC midnight) and still there, and all orders
    those loads stored or quarantined (a load stores each order once, however often it was fetched)."""
    start = datetime.combine(since, time(0), UTC)
    with warehouse.connect() as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM ingest_rejects"
            "        WHERE flow = $flow AND source = $source AND rejected_at >= $start),"
            " (SELECT count(*) FROM kaspi_orders WHERE fetched_at >= $start)",
            {"flow": FLOW, "source": SOURCE, "start": start},
        ).fetchone()
    rejected, stored = (int(row[0]), int(row[1])) if row else (0, 0)
    return rejected, rejected + stored


def trace_source(warehouse: Warehouse, key: str) -> dict[str, Any] | None:
    """`integration-sync trace`: the order as last fetched, its entries and its status changes."""
    with warehouse.connect() as conn:
        order = conn.execute(
            "SELECT partition_date, status, state, fetched_at, run_id, raw FROM kaspi_orders"
            " WHERE code = ? ORDER BY fetched_at DESC LIMIT 1",
            [key],
        ).fetchone()
        entries = conn.execute(
            "SELECT entry_number, code, name, quantity, base_price, total_price FROM kaspi_order_entries"
            " WHERE order_code = ? ORDER BY entry_number",
            [key],
        ).fetchall()
        changes = conn.execute(
            "SELECT observed_at, old_status, new_status, old_state, new_state, run_id"
            " FROM kaspi_order_status_changes WHERE order_code = ? ORDER BY observed_at",
            [key],
        ).fetchall()
    if order is None:
        return None
    names = ("day", "status", "state", "fetched_at", "run_id")
    entry_names = ("entry_number", "code", "name", "quantity", "base_price", "total_price")
    change_names = ("observed_at", "old_status", "new_status", "old_state", "new_state", "run_id")
    return {
        "kaspi_orders": {**dict(zip(names, order[:5], strict=True)), "raw": json.loads(order[5])},
        "kaspi_order_entries": [dict(zip(entry_names, row, strict=True)) for row in entries],
        "kaspi_order_status_changes": [dict(zip(change_names, row, strict=True)) for row in changes],
    }
