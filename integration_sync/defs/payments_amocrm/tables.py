"""The payment tables: events copied from the inbox, what each payment was applied to, lead baselines,
and the seed's event log as a view over them and the sync engine's state.

- `payment_events`: one row per payment_id, loaded from the webhook inbox by Moscow day (idempotent:
  a payment already there is left alone). Immutable facts: amount (sum of item costs), dates, payload.
- `payment_targets`: the contact and lead a payment was applied to, written as soon as they are
  known and before the lead is changed, so a retry after a crash reuses them instead of creating
  another lead.
- `payment_lead_baselines`: a lead's total paid and purchase count from before this project first
  touched it (0 for the leads it creates). Totals written to amoCRM are baseline + the sum of the
  payments applied to the lead, so re-applying a payment can never count it twice.
- `payment_event_log` (view): status pending / processing / success / failed / skipped, contact and
  lead ids, pipeline, lead created or found, error, retry count, payload; plus `redeliveries`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson
from pydantic import ValidationError

from integration_sync.defs.payments_amocrm.mapping import PaymentFacts
from integration_sync.sync.bulk import insert_rows
from integration_sync.sync.warehouse import Migration, Warehouse
from integration_sync.webhooks.inbox import PAYMENT_SOURCE, Event, Inbox, payment_of_key
from integration_sync.webhooks.limits import PayloadRefused, load_json
from integration_sync.webhooks.models import PaymentWebhook

FLOW = "payments_amocrm"
ENTITY = "payment"

PAYMENTS_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "payments_0001_events",
        """
        CREATE TABLE payment_events (
            payment_id VARCHAR PRIMARY KEY,
            event_id BIGINT NOT NULL,
            partition_date DATE NOT NULL,
            received_at TIMESTAMPTZ NOT NULL,
            paid_at TIMESTAMPTZ NOT NULL,
            inbox_status VARCHAR NOT NULL,
            skip_reason VARCHAR,
            order_status VARCHAR,
            amount DECIMAL(18, 2) NOT NULL,
            currency VARCHAR,
            invoice_id VARCHAR,
            redeliveries INTEGER NOT NULL DEFAULT 0,
            payload JSON NOT NULL,
            ingested_at TIMESTAMPTZ NOT NULL,
            run_id VARCHAR
        );
        CREATE TABLE payment_targets (
            payment_id VARCHAR PRIMARY KEY,
            contact_id BIGINT,
            lead_id BIGINT,
            pipeline_id BIGINT,
            lead_created BOOLEAN,
            contact_created BOOLEAN,
            resolved_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE payment_lead_baselines (
            lead_id BIGINT PRIMARY KEY,
            total_paid DECIMAL(18, 2) NOT NULL,
            purchase_count INTEGER NOT NULL,
            captured_at TIMESTAMPTZ NOT NULL
        );
        CREATE VIEW payment_event_log AS
        SELECT
            e.payment_id, e.event_id, e.partition_date, e.received_at, e.paid_at, e.amount, e.currency,
            CASE
                WHEN e.inbox_status = 'skipped' THEN 'skipped'
                WHEN s.status IS NULL THEN 'pending'
                WHEN s.status = 'in_flight' THEN 'processing'
                WHEN s.status = 'synced' THEN 'success'
                ELSE 'failed'
            END AS status,
            t.contact_id, t.lead_id, t.pipeline_id, t.lead_created,
            COALESCE(e.skip_reason, CASE WHEN s.status <> 'synced' THEN s.last_error END) AS error_message,
            COALESCE(s.attempts, 0) AS retry_count,
            s.next_attempt_at,
            CASE WHEN s.status IN ('synced', 'rejected', 'invalid') THEN s.updated_at END AS processed_at,
            e.redeliveries,
            e.payload
        FROM payment_events e
        LEFT JOIN sync_state s ON s.flow = 'payments_amocrm' AND s.entity = 'payment' AND s.source_key = e.payment_id
        LEFT JOIN payment_targets t ON t.payment_id = e.payment_id;
        """,
    ),
    # the note of a payment found in amoCRM by a warehouse that did not apply it (one lost or new)
    Migration("payments_0002_target_note", "ALTER TABLE payment_targets ADD COLUMN note_id BIGINT;"),
    # its identity → contact index goes to the shared index of the account (`targets.amocrm_contacts`),
    # which adopts it at the flow's next push (the account's URL is not in the warehouse)
    Migration(
        "payments_0003_shared_contact_index",
        """
        UPDATE id_map SET flow = 'amocrm:legacy:payments_amocrm'
            WHERE flow = 'payments_amocrm' AND entity = 'contact_by_identity';
        UPDATE flow_state SET flow = 'amocrm:legacy:payments_amocrm'
            WHERE flow = 'payments_amocrm' AND key = 'contacts_updated_at';
        """,
    ),
)

_EVENT_COLUMNS = {
    "payment_id": "VARCHAR",
    "event_id": "BIGINT",
    "partition_date": "DATE",
    "received_at": "TIMESTAMPTZ",
    "paid_at": "TIMESTAMPTZ",
    "inbox_status": "VARCHAR",
    "skip_reason": "VARCHAR",
    "order_status": "VARCHAR",
    "amount": "DECIMAL(18, 2)",
    "currency": "VARCHAR",
    "invoice_id": "VARCHAR",
    "redeliveries": "INTEGER",
    "payload": "JSON",
    "ingested_at": "TIMESTAMPTZ",
    "run_id": "VARCHAR",
}
_TARGET_COLUMNS = {
    "payment_id": "VARCHAR",
    "contact_id": "BIGINT",
    "lead_id": "BIGINT",
    "pipeline_id": "BIGINT",
    "lead_created": "BOOLEAN",
    "contact_created": "BOOLEAN",
    "note_id": "BIGINT",
    "resolved_at": "TIMESTAMPTZ",
}
STATUSES = ("pending", "processing", "success", "failed", "skipped")
_CENT = Decimal("0.01")


@dataclass
class IngestReport:
    """What one load read from the inbox, added, and could not read: over the run's days, and in
    `per_day` for each of them (zeros for a day with nothing) under the asset's metadata names.

    An event counts on its partition day (`partition_of`), known before its payload is read, so an
    unreadable one counts on the day it was loaded for; `new` and `skipped_by_receiver` count each
    payment added, on the day of the webhook kept for it."""

    fetched: int = 0
    new: int = 0
    skipped: int = 0
    redelivered: int = 0
    unreadable: int = 0
    unreadable_samples: list[tuple[str, str]] = field(default_factory=list)
    per_day: dict[date, dict[str, int]] = field(default_factory=dict)


_PER_DAY = ("fetched", "new", "skipped_by_receiver", "unreadable")


def ingest_events(
    warehouse: Warehouse,
    events: Sequence[Event],
    partition_of: Mapping[int, date],
    run_id: str,
    *,
    days: tuple[date, date] | None = None,
) -> IngestReport:
    """Copy inbox events into `payment_events` (new payments only; redelivery counts refreshed).

    `partition_of` maps an event id to its partition day; `days` (first, last) are the run's days,
    each of which gets a `per_day` entry (without it, the days of the events). An event that cannot be stored (it does
    not parse, breaks a bound of `webhooks.limits`, or was received before those bounds) is
    quarantined in `ingest_rejects` with the reason, once; it never fails the day's load.
    """
    report = IngestReport(fetched=len(events))
    loaded = [partition_of[event.id] for event in events]
    first, last = days or (min(loaded, default=None), max(loaded, default=None))
    if first is not None and last is not None:
        report.per_day = {first + timedelta(days=n): dict.fromkeys(_PER_DAY, 0) for n in range((last - first).days + 1)}
    for event in events:
        report.per_day.setdefault(partition_of[event.id], dict.fromkeys(_PER_DAY, 0))["fetched"] += 1
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for event in events:
        try:
            rows.append(_event_row(event, partition_of[event.id], now, run_id))
        except Exception as exc:  # one bad event is quarantined, never the whole day
            reason = _unreadable_reason(exc)
            report.unreadable += 1
            report.per_day[partition_of[event.id]]["unreadable"] += 1
            if len(report.unreadable_samples) < 20:
                report.unreadable_samples.append((event.event_key, reason))
            rejects.append(
                {
                    "flow": FLOW,
                    "source": "inbox",
                    "partition_key": partition_of[event.id].isoformat(),
                    "record_key": event.event_key,
                    "reason": reason,
                    "raw": _storable_raw(event.payload),
                    "run_id": run_id,
                    "rejected_at": now,
                }
            )
    # one row per payment: its accepted webhook, else the first skipped one (a PENDING, then CONFIRMED)
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        held = best.get(row["payment_id"])
        if held is None or (held["inbox_status"] == "skipped" and row["inbox_status"] == "accepted"):
            best[row["payment_id"]] = row
    with warehouse.transaction() as conn:
        known = {
            row[0]: (row[1], row[2])
            for row in conn.execute(
                "SELECT payment_id, inbox_status, redeliveries FROM payment_events WHERE list_contains(?, payment_id)",
                [list(best)],
            ).fetchall()
        }
        confirmed = [
            p
            for p, row in best.items()
            if p in known and known[p][0] == "skipped" and row["inbox_status"] == "accepted"
        ]
        if confirmed:
            conn.execute("DELETE FROM payment_events WHERE list_contains(?, payment_id)", [confirmed])
        fresh = [row for p, row in best.items() if p not in known or p in confirmed]
        report.new = insert_rows(conn, "payment_events", _EVENT_COLUMNS, fresh, on_conflict="ON CONFLICT DO NOTHING")
        report.skipped = sum(1 for r in fresh if r["inbox_status"] == "skipped")
        for row in fresh:
            report.per_day[row["partition_date"]]["new"] += 1
            report.per_day[row["partition_date"]]["skipped_by_receiver"] += int(row["inbox_status"] == "skipped")
        for payment_id, row in best.items():
            if payment_id in known and payment_id not in confirmed and known[payment_id][1] != row["redeliveries"]:
                conn.execute(
                    "UPDATE payment_events SET redeliveries = ? WHERE payment_id = ? AND event_id = ?",
                    [row["redeliveries"], payment_id, row["event_id"]],
                )
        report.redelivered = sum(int(r["redeliveries"] or 0) for r in rows)
        if rejects:  # quarantined once: a reload of the day does not add the same event again
            quarantined = {
                str(r[0])
                for r in conn.execute(
                    "SELECT record_key FROM ingest_rejects WHERE flow = ? AND list_contains(?, record_key)",
                    [FLOW, [r["record_key"] for r in rejects]],
                ).fetchall()
            }
            rejects = [r for r in rejects if r["record_key"] not in quarantined]
        if rejects:
            insert_rows(
                conn,
                "ingest_rejects",
                {
                    "flow": "VARCHAR",
                    "source": "VARCHAR",
                    "partition_key": "VARCHAR",
                    "record_key": "VARCHAR",
                    "reason": "VARCHAR",
                    "raw": "JSON",
                    "run_id": "VARCHAR",
                    "rejected_at": "TIMESTAMPTZ",
                },
                rejects,
            )
    return report


def event_stats(warehouse: Warehouse, first_day: date | None = None, last_day: date | None = None) -> dict[str, Any]:
    """Counts by event-log status (all days, or first_day..last_day), amount applied, redeliveries."""
    with warehouse.connect() as conn:
        rows = conn.execute(
            "SELECT status, count(*), sum(amount), sum(redeliveries) FROM payment_event_log"
            " WHERE ($first IS NULL OR partition_date >= $first) AND ($last IS NULL OR partition_date <= $last)"
            " GROUP BY status",
            {"first": first_day, "last": last_day},
        ).fetchall()
    counts = dict.fromkeys(STATUSES, 0)
    applied = Decimal(0)
    redeliveries = 0
    for status, count, amount, redelivered in rows:
        counts[str(status)] = int(count)
        redeliveries += int(redelivered or 0)
        if status == "success":
            applied = Decimal(amount or 0)
    return {**counts, "amount_applied": float(applied), "redeliveries": redeliveries}


def turned_away(warehouse: Warehouse, since: date) -> tuple[int, int]:
    """Inbox events the loads since `since` (UTC midnight) could not read, and those plus the payments
    they added (each is loaded, or quarantined, once)."""
    start = datetime.combine(since, time(0), UTC)
    with warehouse.connect() as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM ingest_rejects"
            "        WHERE flow = $flow AND rejected_at >= $start),"
            " (SELECT count(*) FROM payment_events WHERE ingested_at >= $start)",
            {"flow": FLOW, "start": start},
        ).fetchone()
    rejected, added = (int(row[0]), int(row[1])) if row else (0, 0)
    return rejected, rejected + added


def events_to_push(warehouse: Warehouse) -> list[str]:
    """Payloads of accepted payments not yet applied (pending, failed, or in flight), oldest first."""
    with warehouse.connect() as conn:
        rows = conn.execute(
            "SELECT e.payload FROM payment_events e"
            " LEFT JOIN sync_state s ON s.flow = ? AND s.entity = ? AND s.source_key = e.payment_id"
            " WHERE e.inbox_status = 'accepted' AND (s.status IS NULL OR s.status <> 'synced')"
            " ORDER BY e.paid_at, e.payment_id",
            [FLOW, ENTITY],
        ).fetchall()
    return [row[0] if isinstance(row[0], str) else json.dumps(row[0]) for row in rows]


def outstanding(warehouse: Warehouse) -> dict[str, int]:
    """Accepted payments not yet in amoCRM: waiting for a first try, failing, parked, in flight."""
    with warehouse.connect() as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM payment_event_log WHERE status IN ('pending', 'processing', 'failed')"
            " GROUP BY 1"
        ).fetchall()
    return {str(status): int(count) for status, count in rows}


@dataclass(frozen=True)
class Target:
    """The contact and lead a payment goes to (`lead_created`: the lead was made for it; `note_id`:
    its note, found in amoCRM, so it is applied whatever this warehouse's sync state says)."""

    payment_id: str
    contact_id: int | None
    lead_id: int | None
    pipeline_id: int | None = None
    lead_created: bool = False
    contact_created: bool = False
    note_id: int | None = None


@dataclass(frozen=True)
class LeadLedger:
    """What a lead's payment fields must say, from its baseline and the payments applied to it."""

    total_paid: Decimal = Decimal(0)
    purchase_count: int = 0
    last: PaymentFacts | None = None


class PaymentLedger:
    """Short reads and writes of payment targets, lead baselines and applied totals for the push."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def targets(self, payment_ids: Iterable[str]) -> dict[str, Target]:
        with self.warehouse.connect() as conn:
            rows = conn.execute(
                "SELECT payment_id, contact_id, lead_id, pipeline_id, lead_created, contact_created, note_id"
                " FROM payment_targets WHERE list_contains(?, payment_id)",
                [list(payment_ids)],
            ).fetchall()
        return {
            row[0]: Target(
                row[0],
                _int(row[1]),
                _int(row[2]),
                _int(row[3]),
                bool(row[4]),
                bool(row[5]),
                _int(row[6]),
            )
            for row in rows
        }

    def record(self, targets: Sequence[Target], baselines: Mapping[int, tuple[Decimal, int]]) -> None:
        """Save where payments go and the baselines of leads seen for the first time (first write wins)."""
        if not targets and not baselines:
            return
        now = datetime.now(UTC)
        with self.warehouse.transaction() as conn:
            insert_rows(
                conn,
                "payment_lead_baselines",
                {
                    "lead_id": "BIGINT",
                    "total_paid": "DECIMAL(18, 2)",
                    "purchase_count": "INTEGER",
                    "captured_at": "TIMESTAMPTZ",
                },
                (
                    {"lead_id": lead_id, "total_paid": str(total), "purchase_count": count, "captured_at": now}
                    for lead_id, (total, count) in baselines.items()
                ),
                on_conflict="ON CONFLICT DO NOTHING",
            )
            insert_rows(
                conn,
                "payment_targets",
                _TARGET_COLUMNS,
                ({**t.__dict__, "resolved_at": now} for t in {t.payment_id: t for t in targets}.values()),
                on_conflict="ON CONFLICT (payment_id) DO UPDATE SET contact_id = excluded.contact_id,"
                " lead_id = excluded.lead_id, pipeline_id = excluded.pipeline_id,"
                " lead_created = excluded.lead_created, contact_created = excluded.contact_created,"
                " note_id = COALESCE(excluded.note_id, payment_targets.note_id), resolved_at = excluded.resolved_at",
            )

    def amounts(self, payment_ids: Iterable[str]) -> dict[str, Decimal]:
        """The amounts of these payments that are accepted in `payment_events`."""
        with self.warehouse.connect() as conn:
            rows = conn.execute(
                "SELECT payment_id, amount FROM payment_events"
                " WHERE inbox_status = 'accepted' AND list_contains(?, payment_id)",
                [list(payment_ids)],
            ).fetchall()
        return {str(row[0]): Decimal(row[1]) for row in rows}

    def known_baselines(self, lead_ids: Iterable[int]) -> set[int]:
        with self.warehouse.connect() as conn:
            rows = conn.execute(
                "SELECT lead_id FROM payment_lead_baselines WHERE list_contains(?, lead_id)", [list(lead_ids)]
            ).fetchall()
        return {int(row[0]) for row in rows}

    def leads(self, lead_ids: Iterable[int]) -> dict[int, LeadLedger]:
        """Baseline + every payment applied to each lead (synced, or its note found in amoCRM), and
        the latest of them."""
        with self.warehouse.connect() as conn:
            rows = conn.execute(
                "WITH applied AS ("
                "  SELECT t.lead_id, e.payment_id, e.invoice_id, e.amount, e.paid_at FROM payment_targets t"
                "  JOIN payment_events e ON e.payment_id = t.payment_id"
                "  LEFT JOIN sync_state s ON s.flow = $flow AND s.entity = $entity AND s.source_key = t.payment_id"
                "  WHERE (s.status = 'synced' OR t.note_id IS NOT NULL) AND list_contains($leads, t.lead_id)),"
                " sums AS (SELECT lead_id, sum(amount) AS total, count(*) AS n,"
                "  arg_max(payment_id, (paid_at, payment_id)) AS last_id,"
                "  arg_max(invoice_id, (paid_at, payment_id)) AS last_invoice,"
                "  arg_max(amount, (paid_at, payment_id)) AS last_amount,"
                "  max(paid_at) AS last_paid FROM applied GROUP BY lead_id)"
                " SELECT l.lead_id, b.total_paid, b.purchase_count, s.total, s.n, s.last_id, s.last_invoice,"
                "  s.last_amount, s.last_paid"
                " FROM (SELECT unnest($leads) AS lead_id) l"
                " LEFT JOIN payment_lead_baselines b ON b.lead_id = l.lead_id"
                " LEFT JOIN sums s ON s.lead_id = l.lead_id",
                {"flow": FLOW, "entity": ENTITY, "leads": [int(x) for x in lead_ids]},
            ).fetchall()
        result: dict[int, LeadLedger] = {}
        for lead_id, base_total, base_count, total, count, last_id, invoice, amount, paid in rows:
            last = None
            if last_id is not None:
                last = PaymentFacts(str(last_id), invoice, Decimal(amount), int(paid.timestamp()))
            result[int(lead_id)] = LeadLedger(
                total_paid=Decimal(base_total or 0) + Decimal(total or 0),
                purchase_count=int(base_count or 0) + int(count or 0),
                last=last,
            )
        return result


def _event_row(event: Event, partition: date, now: datetime, run_id: str) -> dict[str, Any]:
    """The `payment_events` row of an inbox event; raises if the event cannot be stored."""
    payload = load_json(event.payload)
    order = PaymentWebhook.model_validate(payload).course_order
    row = {
        "payment_id": order.payment_id,
        "event_id": event.id,
        "partition_date": partition,
        "received_at": datetime.fromisoformat(event.received_at),
        "paid_at": order.created_at,
        "inbox_status": event.status,
        "skip_reason": event.reason,
        "order_status": order.status,
        # plain digits at the column's scale: DuckDB cannot cast "1E-30" or "0E+1000000"
        "amount": format(order.total_cost.quantize(_CENT, ROUND_HALF_UP), "f"),
        "currency": order.currency,
        "invoice_id": order.invoice_id,
        "redeliveries": event.redeliveries,
        "payload": payload,
        "ingested_at": now,
        "run_id": run_id,
    }
    orjson.dumps(row, default=str, option=orjson.OPT_PASSTHROUGH_DATETIME)  # what the bulk insert will write
    return row


def _unreadable_reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        return f"payload does not parse: {error['msg']}" + (f" at {where}" if where else "")
    if isinstance(exc, PayloadRefused):
        return f"payload refused: {exc.reason}" + (f" at {'.'.join(exc.loc)}" if exc.loc else "")
    return f"payload cannot be stored: {type(exc).__name__}"


def _storable_raw(text: str) -> Any:
    """The payload as JSON when it is storable, else its text (lone surrogates escaped)."""
    try:
        return load_json(text)
    except PayloadRefused:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def inbox_keys_missing_from_log(warehouse: Warehouse, inbox: Inbox) -> list[str]:
    """Inbox events up to the newest one loaded whose payment is neither in `payment_events` nor
    recorded as unreadable in `ingest_rejects`."""
    with warehouse.connect() as conn:
        row = conn.execute("SELECT max(event_id) FROM payment_events").fetchone()
        newest = int(row[0]) if row and row[0] is not None else 0
        loaded = {str(r[0]) for r in conn.execute("SELECT payment_id FROM payment_events").fetchall()}
        unreadable = {
            str(r[0]) for r in conn.execute("SELECT record_key FROM ingest_rejects WHERE flow = ?", [FLOW]).fetchall()
        }
    return [
        key
        for _, key in inbox.keys_until(newest, sources=(PAYMENT_SOURCE,))
        if payment_of(key) not in loaded and key not in unreadable
    ]


def payment_of(event_key: str) -> str:
    """The payment id of an inbox key: ``payment:{id}`` or ``payment:{id}:skipped:{STATUS}``."""
    return payment_of_key(event_key)


def payments_applied_twice(warehouse: Warehouse) -> tuple[list[str], list[int]]:
    """Payments the sync log shows applied more than once, and leads created for two payments."""
    with warehouse.connect() as conn:
        twice = conn.execute(
            "SELECT source_key FROM sync_log WHERE flow = ? AND entity = ? AND status = 'succeeded'"
            " GROUP BY source_key HAVING count(*) > 1 ORDER BY 1",
            [FLOW, ENTITY],
        ).fetchall()
        shared = conn.execute(
            "SELECT lead_id FROM payment_targets WHERE lead_created GROUP BY lead_id HAVING count(*) > 1 ORDER BY 1"
        ).fetchall()
    return [str(r[0]) for r in twice], [int(r[0]) for r in shared]


def late_payments(warehouse: Warehouse, received_before: datetime) -> list[tuple[str, str]]:
    """Accepted payments received before the cutoff and still not in amoCRM, with why."""
    with warehouse.connect() as conn:
        rows = conn.execute(
            "SELECT payment_id, status, error_message, retry_count FROM payment_event_log"
            " WHERE status IN ('pending', 'processing', 'failed') AND received_at < ? ORDER BY received_at",
            [received_before],
        ).fetchall()
    return [
        (str(pid), f"{status} after {retries} tries: {error or 'not tried yet'}")
        for pid, status, error, retries in rows
    ]


def trace_source(warehouse: Warehouse, key: str) -> dict[str, Any] | None:
    """`integration-sync trace`: the payment event as received and the contact and lead it resolved to."""
    with warehouse.connect() as conn:
        event = conn.execute(
            "SELECT event_id, partition_date, received_at, paid_at, inbox_status, skip_reason, amount, currency,"
            " redeliveries, payload FROM payment_events WHERE payment_id = ?",
            [key],
        ).fetchone()
        target = conn.execute(
            "SELECT contact_id, lead_id, pipeline_id, lead_created, contact_created, resolved_at"
            " FROM payment_targets WHERE payment_id = ?",
            [key],
        ).fetchone()
    if event is None:
        return None
    names = (
        "event_id", "day", "received_at", "paid_at", "inbox_status", "skip_reason", "amount", "currency",
        "redeliveries",
    )  # fmt: skip
    target_names = ("contact_id", "lead_id", "pipeline_id", "lead_created", "contact_created", "resolved_at")
    return {
        "payment_events": {**dict(zip(names, event[:9], strict=True)), "payload": json.loads(event[9])},
        "payment_targets": dict(zip(target_names, target, strict=True)) if target else None,
    }
