"""The demo flow, declared: three notes a day → an in-memory target, through the shared skeleton."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import dagster as dg

from integration_sync.defs.partitions import daily, window_days
from integration_sync.defs.resources import WarehouseResource
from integration_sync.lib.flow import SyncFlow, flow_job, skip_while_running
from integration_sync.lib.push import OpenedDestination, Push, PushContext, partition_metadata
from integration_sync.sync.engine import Change, Desired, Outcome

GROUP = "demo_notes"
days = daily("UTC", "DEMO_NOTES_START_DATE", "2026-01-01")


@dg.asset(key=["demo", "notes"], group_name=GROUP, partitions_def=days, backfill_policy=dg.BackfillPolicy.single_run())
def demo_notes(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult[None]:
    """Day N holds N % 3 + 1 notes."""
    _, _, first, last = window_days(context)
    per_day: dict[Any, dict[str, int]] = {}
    with warehouse.warehouse().transaction() as conn:
        day = first
        while day <= last:
            conn.execute("DELETE FROM demo_notes WHERE day = ?", [day])
            count = day.toordinal() % 3 + 1
            for n in range(count):
                conn.execute("INSERT INTO demo_notes VALUES (?, ?, ?)", [day, f"{day}:{n}", f"note {n} of {day}"])
            per_day[day] = {"stored": count}
            day += timedelta(days=1)
    return partition_metadata(context, per_day, {"api_requests": 0})


@dataclass
class MemoryTarget:
    """The demo's destination: records kept in this process."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    name: str = "memory"
    primary_entity: str = "record"
    batch_size: int = 10

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        return {c.key: {"record": c.key} for c in changes if c.key in self.records}

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        for change in changes:
            self.records[change.key] = dict(change.payload)
        return [Outcome(c.key, "succeeded", c.operation, {"record": c.key}) for c in changes]

    def requests_used(self) -> int:
        return 0


TARGET = MemoryTarget()


class DemoTargetResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    @contextmanager
    def client(self) -> Iterator[MemoryTarget]:
        yield TARGET


def _desired(ctx: PushContext) -> list[Desired]:
    with ctx.store.connect() as conn:
        rows = conn.execute("SELECT key, text FROM demo_notes ORDER BY key").fetchall()
    return [Desired(str(key), {"text": text}) for key, text in rows]


PUSH = Push(
    key=["memory", "demo_notes"],
    entity="note",
    description="Each demo note in the in-memory target.",
    kind="memory",
    client="demo_target",
    desired=_desired,
    destination=lambda ctx, client: OpenedDestination(client),
    target_ids=("record",),
    unique_entity="record",
)

demo_notes_job = flow_job(GROUP, days, "Demo: notes, then push.")


@dg.schedule(job=demo_notes_job, cron_schedule="0 3 * * *")
@skip_while_running(GROUP)
def demo_notes_daily(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(partition_key=context.scheduled_execution_time.date().isoformat())


FLOW = SyncFlow(
    name=GROUP,
    partitions=days,
    ingest=[demo_notes],
    push=PUSH,
    resources=lambda: {"demo_target": DemoTargetResource()},
    jobs=[demo_notes_job],
    schedules=[demo_notes_daily],
)
