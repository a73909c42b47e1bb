"""The sensor body every webhook-fed flow shares: drain the inbox by cursor and ask for one run per
partition day of the new events.

The cursor is the inbox's identity and its last event id (a new inbox starts again from its first
event). Only the flow's own `sources` are read: the inbox is shared by every route. A day that already
has a run of the job waiting in the queue gets no second one: that run reads the inbox when it starts.
If Dagster is down, events wait in the inbox; the sensor picks them up from its cursor when it is back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date

import dagster as dg

from integration_sync.defs.runs import WAITING
from integration_sync.lib.flow import not_ready
from integration_sync.webhooks.inbox import Inbox
from integration_sync.webhooks.settings import inbox_path_from_env

SENSOR_BATCH = 5000


def _waiting_days(context: dg.SensorEvaluationContext, job_name: str) -> set[str]:
    records = context.instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=WAITING), limit=100)
    return {r.dagster_run.tags.get("dagster/partition", "") for r in records}


def drain_inbox(
    context: dg.SensorEvaluationContext,
    *,
    flow: str,
    sources: Sequence[str],
    job_name: str,
    bounds: Callable[[], tuple[date, date]],
    run_key_prefix: str,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, object] | None = None,
    nothing: str = "no new events",
) -> dg.SensorResult | dg.SkipReason:
    """New events of `sources` → a run of `job_name` per event day (kept within the partitions that
    exist: `bounds()` gives the first and last day)."""
    unready = not_ready(flow)
    if unready is not None:
        return unready
    path = inbox_path_from_env()
    if not path.exists():
        return dg.SkipReason(f"no inbox at {path} yet")
    inbox = Inbox(path)
    identity = inbox.identity()
    seen_inbox, _, seen_id = (context.cursor or "").rpartition(":")
    cursor = int(seen_id) if seen_inbox == identity and seen_id.isdigit() else 0  # a new inbox: from its start
    rows = inbox.ids_after(cursor, SENSOR_BATCH, sources=sources)
    if not rows:
        return dg.SensorResult(skip_reason=nothing, cursor=f"{identity}:{cursor}")
    first, last = bounds()
    by_day: dict[str, list[int]] = {}
    for event_id, event_date in rows:
        day = min(max(date.fromisoformat(event_date), first), last)
        by_day.setdefault(day.isoformat(), []).append(event_id)
    waiting = _waiting_days(context, job_name)
    requests = [
        dg.RunRequest(
            run_key=f"{run_key_prefix}:{day}:{ids[0]}-{ids[-1]}",
            partition_key=day,
            tags=dict(tags or {}),
            run_config=dict(run_config or {}),
        )
        for day, ids in sorted(by_day.items())
        if day not in waiting
    ]
    return dg.SensorResult(run_requests=requests, cursor=f"{identity}:{rows[-1][0]}")
