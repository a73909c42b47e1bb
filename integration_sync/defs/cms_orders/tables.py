"""The cms_orders warehouse tables: the shop's orders (the canonical copy), users and products.

An order is one row whatever brought it — a webhook, the export, or both (`via`) — holding its
newest version: a version older than the stored one (a late re-delivery, an export read before a
save) changes nothing but `via`. Nothing is deleted when a day is loaded again, so orders that came
only through the export stay. An order that cannot be read is turned away into `ingest_rejects`
with its reason, and a fixed copy loaded later replaces nothing but that reject's effect.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any

from integration_sync.defs.cms_orders.settings import FLOW
from integration_sync.defs.cms_orders.status_rules import Pair
from integration_sync.sync.bulk import insert_rows
from integration_sync.sync.warehouse import Migration, Warehouse
from integration_sync.webhooks.bitrix_order import ShopOrder

ORDERS_SOURCE = "shop_orders"

CMS_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "cms_0001_orders",
        """
        CREATE TABLE cms_orders (
            order_id BIGINT PRIMARY KEY,
            account_number VARCHAR,
            status_id VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            price DECIMAL(18, 2) NOT NULL,
            currency VARCHAR,
            user_id BIGINT,
            date_insert TIMESTAMPTZ NOT NULL,
            date_update TIMESTAMPTZ NOT NULL,
            date_status TIMESTAMPTZ,
            partition_date DATE NOT NULL,
            version VARCHAR NOT NULL,
            via VARCHAR NOT NULL,
            recoded VARCHAR,
            body JSON NOT NULL,
            loaded_at TIMESTAMPTZ NOT NULL,
            run_id VARCHAR
        );
        CREATE TABLE cms_users (
            user_id BIGINT PRIMARY KEY,
            body JSON NOT NULL,
            loaded_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE cms_products (
            product_id BIGINT PRIMARY KEY,
            body JSON NOT NULL,
            loaded_at TIMESTAMPTZ NOT NULL
        );
        """,
    ),
)

_ORDER_COLUMNS = {
    "order_id": "BIGINT",
    "account_number": "VARCHAR",
    "status_id": "VARCHAR",
    "status": "VARCHAR",
    "price": "DECIMAL(18, 2)",
    "currency": "VARCHAR",
    "user_id": "BIGINT",
    "date_insert": "TIMESTAMPTZ",
    "date_update": "TIMESTAMPTZ",
    "date_status": "TIMESTAMPTZ",
    "partition_date": "DATE",
    "version": "VARCHAR",
    "via": "VARCHAR",
    "recoded": "VARCHAR",
    "body": "JSON",
    "loaded_at": "TIMESTAMPTZ",
    "run_id": "VARCHAR",
}


@dataclass(frozen=True)
class OrderVersion:
    """One version of an order as it arrived, and through what (`webhook` or `export`)."""

    order: ShopOrder
    via: str
    recoded: tuple[str, ...] = ()

    def row(self, run_id: str, now: datetime) -> dict[str, Any]:
        from integration_sync.defs.cms_orders.mapping import effective_status

        order = self.order
        return {
            "order_id": order.ID,
            "account_number": order.ACCOUNT_NUMBER,
            "status_id": order.STATUS_ID,
            "status": effective_status(order),
            "price": order.PRICE,
            "currency": order.CURRENCY,
            "user_id": order.USER_ID,
            "date_insert": order.DATE_INSERT,
            "date_update": order.DATE_UPDATE,
            "date_status": order.DATE_STATUS,
            "partition_date": order.order_day(),
            "version": order.version(),
            "via": self.via,
            "recoded": ", ".join(self.recoded) or None,
            "body": order.model_dump(mode="json"),
            "loaded_at": now,
            "run_id": run_id,
        }


def _newest(versions: Iterable[OrderVersion]) -> dict[int, tuple[OrderVersion, set[str]]]:
    """Per order id: its newest version here (by DATE_UPDATE, then version text) and every way it came."""
    best: dict[int, tuple[OrderVersion, set[str]]] = {}
    for version in versions:
        known = best.get(version.order.ID)
        vias = (known[1] if known else set()) | {version.via}
        if known is None or _rank(version) > _rank(known[0]):
            best[version.order.ID] = (version, vias)
        else:
            best[version.order.ID] = (known[0], vias)
    return best


def _rank(version: OrderVersion) -> tuple[datetime, str]:
    return version.order.DATE_UPDATE, version.order.version()


def store_orders(store: Warehouse, versions: Sequence[OrderVersion], run_id: str) -> dict[str, int]:
    """Keep each order's newest version; counts of new, updated (a newer version), unchanged and older."""
    best = _newest(versions)
    counts = {"orders_new": 0, "orders_updated": 0, "orders_unchanged": 0, "orders_older_ignored": 0}
    if not best:
        return counts
    now = datetime.now(UTC)
    with store.transaction() as conn:
        stored = {
            int(order_id): (date_update, str(version), str(via))
            for order_id, date_update, version, via in conn.execute(
                "SELECT order_id, date_update, version, via FROM cms_orders WHERE list_contains(?, order_id)",
                [list(best)],
            ).fetchall()
        }
        rows: list[dict[str, Any]] = []
        for order_id, (version, vias) in best.items():
            row = version.row(run_id, now)
            old = stored.get(order_id)
            if old is not None:
                vias |= set(old[2].split("+"))
            row["via"] = "+".join(sorted(vias))
            if old is None:
                counts["orders_new"] += 1
            elif old[1] == row["version"]:
                counts["orders_unchanged"] += 1
                if old[2] == row["via"]:
                    continue
            elif (old[0], old[1]) > (version.order.DATE_UPDATE, row["version"]):
                counts["orders_older_ignored"] += 1
                conn.execute("UPDATE cms_orders SET via = ? WHERE order_id = ?", [row["via"], order_id])
                continue
            else:
                counts["orders_updated"] += 1
            rows.append(row)
        insert_rows(
            conn,
            "cms_orders",
            _ORDER_COLUMNS,
            rows,
            on_conflict="ON CONFLICT (order_id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in _ORDER_COLUMNS if c != "order_id"),
        )
    return counts


def store_catalog(store: Warehouse, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
    """Upsert the export's users (`cms_users`) or products (`cms_products`) by ID; the count stored."""
    key = {"cms_users": "user_id", "cms_products": "product_id"}[table]
    now = datetime.now(UTC)
    unique = {int(row["ID"]): row for row in rows}
    with store.transaction() as conn:
        insert_rows(
            conn,
            table,
            {key: "BIGINT", "body": "JSON", "loaded_at": "TIMESTAMPTZ"},
            ({key: item_id, "body": dict(row), "loaded_at": now} for item_id, row in unique.items()),
            on_conflict=f"ON CONFLICT ({key}) DO UPDATE SET body = excluded.body, loaded_at = excluded.loaded_at",
        )
    return len(unique)


def reject(store: Warehouse, source: str, day: date | str, key: str | None, reason: str, raw: Any, run_id: str) -> None:
    """Turn a record away at load, with its reason (shown by `trace` and the ingest's metadata)."""
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO ingest_rejects (flow, source, partition_key, record_key, reason, raw, run_id, rejected_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [FLOW, source, str(day), key, reason[:500], json.dumps(raw, ensure_ascii=False), run_id, datetime.now(UTC)],
        )


@dataclass
class StoredOrder:
    """An order's newest version, its status as the shop has it now (a status we set there counts from
    the shop's answer on), and when that status was set. The order itself is read from its stored JSON
    only when asked for (the status push needs only the status)."""

    order_id: int
    body: str
    recoded: str | None
    status: str
    status_at: datetime | None

    @cached_property
    def order(self) -> ShopOrder:
        return ShopOrder.model_validate_json(self.body)


def all_orders(store: Warehouse) -> list[StoredOrder]:
    """Every stored order, oldest id first."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT order_id, CAST(body AS VARCHAR), recoded, status, coalesce(date_status, date_update)"
            " FROM cms_orders ORDER BY order_id"
        ).fetchall()
    return [StoredOrder(int(i), str(b), r, str(s), at) for i, b, r, s, at in rows]


def target_ids(store: Warehouse, entity: str, keys: Sequence[str] | None = None) -> dict[str, str]:
    """Source key → the `entity` id the flow's pushes recorded (id_map)."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT source_key, target_id FROM id_map WHERE flow = ? AND entity = ?"
            " AND (? IS NULL OR list_contains(?, source_key))",
            [FLOW, entity, None if keys is None else True, list(keys or [])],
        ).fetchall()
    return {str(k): str(v) for k, v in rows}


def apply_sent_statuses(store: Warehouse, entity: str, run_id: str) -> int:
    """The statuses this run set in the shop (its answers were 200) become the orders' statuses here
    now, before the shop's webhook of that save arrives: the deals push must not read the old one."""
    with store.transaction() as conn:
        rows = conn.execute(
            "SELECT source_key, payload->>'$.status_id' FROM sync_log WHERE run_id = ? AND flow = ? AND entity = ?"
            " AND status = 'succeeded' AND operation <> 'validate'",
            [run_id, FLOW, entity],
        ).fetchall()
        now = datetime.now(UTC)
        for key, status in rows:
            if status and str(key).isdigit():
                conn.execute(
                    "UPDATE cms_orders SET status = ?, status_id = ?, date_status = ? WHERE order_id = ?",
                    [status, status, now, int(key)],
                )
    return len(rows)


def first_with_account(store: Warehouse) -> dict[int, int]:
    """Order id → the lowest other order id with the same ACCOUNT_NUMBER (the duplicates only)."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT order_id, first FROM (SELECT order_id, min(order_id) OVER (PARTITION BY account_number) AS first"
            " FROM cms_orders WHERE account_number IS NOT NULL AND account_number <> '') WHERE first <> order_id"
        ).fetchall()
    return {int(order_id): int(first) for order_id, first in rows}


def catalog(store: Warehouse, table: str) -> dict[int, dict[str, Any]]:
    key = {"cms_users": "user_id", "cms_products": "product_id"}[table]
    with store.connect() as conn:
        rows = conn.execute(f"SELECT {key}, body FROM {table}").fetchall()  # noqa: S608 (names from code)
    return {int(item_id): json.loads(body) for item_id, body in rows}


def base_pairs(store: Warehouse, entities: Sequence[str], keys: Sequence[str]) -> dict[str, tuple[Pair, datetime]]:
    """The newest status/stage pair either push wrote for each order (its sync log), and when."""
    if not keys:
        return {}
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT source_key, payload->'$.pair', created_at FROM sync_log WHERE flow = ? AND list_contains(?, entity)"
            " AND status = 'succeeded' AND list_contains(?, source_key) AND (payload->'$.pair') IS NOT NULL"
            " QUALIFY row_number() OVER (PARTITION BY source_key ORDER BY created_at DESC, id DESC) = 1",
            [FLOW, list(entities), list(keys)],
        ).fetchall()
    found: dict[str, tuple[Pair, datetime]] = {}
    for key, pair, at in rows:
        parsed = Pair.from_dict(json.loads(pair) if isinstance(pair, str) else pair)
        if parsed is not None:
            found[str(key)] = (parsed, at)
    return found


def turned_away(warehouse: Warehouse, since: date) -> tuple[int, int]:
    """Orders turned away at load since `since`, and orders loaded since then (for the generic check)."""
    with warehouse.connect() as conn:
        rejected = conn.execute(
            "SELECT count(DISTINCT coalesce(record_key, '')) FROM ingest_rejects WHERE flow = ? AND rejected_at >= ?",
            [FLOW, since],
        ).fetchone()
        loaded = conn.execute("SELECT count(*) FROM cms_orders WHERE loaded_at >= ?", [since]).fetchone()
    bad = int(rejected[0]) if rejected else 0
    return bad, bad + (int(loaded[0]) if loaded else 0)


def trace_source(warehouse: Warehouse, key: str) -> dict[str, Any] | None:
    """`integration-sync trace cms_orders <order id>`: the order as stored and why it was turned away."""
    if not key.strip().isdigit():
        return None
    with warehouse.connect() as conn:
        row = conn.execute(
            "SELECT partition_date, status_id, status, price, via, version, recoded, loaded_at, body"
            " FROM cms_orders WHERE order_id = ?",
            [int(key)],
        ).fetchone()
        rejects = conn.execute(
            "SELECT partition_key, reason, rejected_at FROM ingest_rejects WHERE flow = ? AND record_key = ?"
            " ORDER BY rejected_at",
            [FLOW, key.strip()],
        ).fetchall()
    if row is None and not rejects:
        return None
    names = ("day", "status_id", "status", "price", "via", "version", "recoded_text", "loaded_at")
    return {
        "cms_orders": {**dict(zip(names, row[:8], strict=True)), "order": json.loads(row[8])} if row else None,
        "turned_away": [{"day": r[0], "reason": r[1], "at": r[2]} for r in rejects],
    }


def retry_queue(store: Warehouse, entity: str, max_attempts: int) -> int:
    """Records of `entity` refused or undelivered that later runs will try again (not yet parked)."""
    with store.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM sync_state WHERE flow = ? AND entity = ? AND status IN ('rejected', 'in_flight')"
            " AND attempts < ?",
            [FLOW, entity, max_attempts],
        ).fetchone()
    return int(row[0]) if row else 0


def accounted(store: Warehouse, entity: str, deal_entity: str) -> dict[str, int]:
    """Every stored order: in Bitrix24 (a deal id), quarantined (refused with its reason), or neither yet."""
    with store.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE m.target_id IS NOT NULL),"
            " count(*) FILTER (WHERE m.target_id IS NULL AND s.status IN ('invalid', 'rejected')"
            "   AND coalesce(s.last_error, '') <> ''),"
            " count(*) FILTER (WHERE m.target_id IS NULL AND (s.status IS NULL"
            "   OR s.status NOT IN ('invalid', 'rejected') OR coalesce(s.last_error, '') = '')),"
            " count(*)"
            " FROM cms_orders o"
            " LEFT JOIN id_map m ON m.flow = ? AND m.entity = ? AND m.source_key = CAST(o.order_id AS VARCHAR)"
            " LEFT JOIN sync_state s ON s.flow = ? AND s.entity = ? AND s.source_key = CAST(o.order_id AS VARCHAR)",
            [FLOW, deal_entity, FLOW, entity],
        ).fetchone()
    in_crm, quarantined, neither, total = (int(v) for v in (row or (0, 0, 0, 0)))
    return {"orders_in_crm": in_crm, "orders_quarantined": quarantined, "orders_unaccounted": neither, "orders": total}
