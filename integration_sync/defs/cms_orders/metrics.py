"""The seed's numbers, measured: the receiver's webhook success rate, delivery lag and error rate (from
its receipts), and how long the flow took to recover after the shop or Bitrix24 was down (from the
flow's runs). Plain functions over the inbox and the Dagster instance; the checks and the ingest's
metadata call them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from integration_sync.webhooks.bitrix_order import SOURCE
from integration_sync.webhooks.receipts import receipt_stats

WINDOW = timedelta(hours=24)
RECOVERY_GOAL_S = 300.0


def webhook_metadata(inbox_path: str | Path, now: datetime | None = None) -> dict[str, Any]:
    """The receiver's last 24 hours of shop order webhooks, as `webhooks_*` metadata (None-free)."""
    stats = receipt_stats(inbox_path, SOURCE, (now or datetime.now(UTC)) - WINDOW)
    keep = (
        "received",
        "accepted",
        "duplicates",
        "refused_auth",
        "refused_size",
        "refused_payload",
        "errors",
        "success_rate",
        "error_rate",
        "latency_p99_ms",
        "delivery_lag_p95_s",
        "delivery_lag_max_s",
    )
    values = stats.as_dict()
    return {f"webhooks_{name}": values[name] for name in keep if values.get(name) is not None}


@dataclass(frozen=True)
class Recovery:
    """Outages seen in the flow's runs: each streak of failed runs up to the next success, in seconds
    (`open_s`: the current one, still failing)."""

    recoveries_s: Sequence[float]
    open_s: float | None

    @property
    def worst_s(self) -> float:
        return max([*self.recoveries_s, self.open_s or 0.0], default=0.0)


def recovery(
    instance: dg.DagsterInstance, tags: dict[str, str], since: datetime, now: datetime | None = None
) -> Recovery:
    """From the first failed run of a streak to the end of the next successful run, per streak."""
    records = instance.get_run_records(
        dg.RunsFilter(
            tags=tags,
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
            created_after=since,
        ),
        order_by="create_timestamp",
        ascending=True,
        limit=2000,
    )
    streak: float | None = None
    recoveries: list[float] = []
    for record in records:
        started = record.start_time or record.create_timestamp.timestamp()
        if record.dagster_run.status == dg.DagsterRunStatus.FAILURE:
            streak = started if streak is None else streak
        elif streak is not None:
            ended = record.end_time or started
            recoveries.append(max(0.0, ended - streak))
            streak = None
    current = (now or datetime.now(UTC)).timestamp()
    return Recovery(recoveries, None if streak is None else max(0.0, current - streak))
