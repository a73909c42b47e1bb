"""The flow skeleton: one `SyncFlow` component per flow folder (as dagster-open-platform's Hightouch
component has one declaration per sync).

A flow declares what is its own — its name (its asset group and push tag), its partitions, its ingest
assets, its `Push` (desired state, destination, ids), its resources (settings and CRM account), its
own checks, schedules and sensors — and the component adds what every flow shares: the push asset,
the generic asset checks, the flow's job carrying its tags. `flow_job` and `skip_while_running` are
the helpers a flow's schedules use. The folder registers itself: its `defs.yaml` names this
module's `FlowComponent` and the flow's declaration (`module:FLOW`), which `load_from_defs_folder`
loads — and, as for any YAML component, the folder's other modules are not scanned for definitions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, wraps
from importlib import import_module
from typing import TYPE_CHECKING, Any

import dagster as dg

from integration_sync.defs.runs import push_in_progress
from integration_sync.lib.checks import TurnedAway, ingest_checks, push_checks
from integration_sync.lib.push import Push, build_push_asset, push_tags
from integration_sync.lib.registry import plugins

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


def flow_job(
    flow: str,
    partitions: dg.PartitionsDefinition[Any] | None,
    description: str,
    *,
    name: str | None = None,
    selection: dg.AssetSelection | None = None,
    executor: dg.ExecutorDefinition | None = None,
) -> UnresolvedAssetJobDefinition:
    """A job of the flow (by default the whole group, `<flow>_job`), carrying the flow's push tag."""
    return dg.define_asset_job(
        name or f"{flow}_job",
        selection=selection or dg.AssetSelection.groups(flow),
        partitions_def=partitions,
        tags=push_tags(flow),
        executor_def=executor,
        description=description,
    )


Evaluation = Callable[..., Any]


def not_ready(flow: str) -> dg.SkipReason | None:
    """A tick of a flow that is not configured (or misses a variable) is skipped with that reason,
    instead of launching a run that fails on the missing setting."""
    known = {p.name: p for p in plugins()}
    reason = known[flow].not_ready(os.environ) if flow in known else None
    return dg.SkipReason(reason) if reason else None


def skip_while_running(flow: str, only: Mapping[str, str] | None = None) -> Callable[[Evaluation], Evaluation]:
    """Wrap a schedule's evaluation: a flow that is not configured skips with that reason (`not_ready`);
    while a run of the flow is queued or running the tick is skipped with that reason, so two runs never
    overlap and the queue never piles up. With `only` (more run tags), only such a run skips the tick:
    another run of the flow just makes this one wait in the queue."""
    tags = {**push_tags(flow), **(only or {})}
    which = " ".join([flow, *(only or {}).values()])

    def decorate(fn: Evaluation) -> Evaluation:
        @wraps(fn)
        def evaluate(context: dg.ScheduleEvaluationContext) -> Any:
            unready = not_ready(flow)
            if unready is not None:
                return unready
            if push_in_progress(context.instance, tags):
                return dg.SkipReason(f"a {which} run is queued or running")
            return fn(context)

        return evaluate

    return decorate


def last_run_failed(instance: dg.DagsterInstance, flow: str) -> bool:
    """Whether the flow's latest finished run failed (a target down, throttling, a refused key): a
    retry schedule pushes again even when no record is counted as waiting."""
    records = instance.get_run_records(
        dg.RunsFilter(tags=push_tags(flow), statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]),
        limit=1,
    )
    return bool(records) and records[0].dagster_run.status == dg.DagsterRunStatus.FAILURE


def latest_count(instance: dg.DagsterInstance, key: Sequence[str], name: str) -> int:
    """An integer of an asset's latest materialization metadata (0 when absent)."""
    event = instance.get_latest_materialization_event(dg.AssetKey(list(key)))
    materialization = event.asset_materialization if event else None
    value = materialization.metadata.get(name) if materialization else None
    return int(value.value) if isinstance(value, dg.IntMetadataValue) and value.value else 0


@dataclass(frozen=True, eq=False)
class SyncFlow(dg.Component):
    """One flow, declared. See the module docstring; every field but the first five is optional.
    `resources` is a factory (read at load, after the environment is set); `rejected_share_var` names
    the variable holding the checks' threshold (default 0.05)."""

    name: str
    partitions: dg.PartitionsDefinition[Any]
    ingest: Sequence[dg.AssetsDefinition]
    push: Push
    resources: Callable[[], Mapping[str, Any]]
    job_description: str = ""
    executor: dg.ExecutorDefinition | None = None
    rejected_share_var: str = ""
    turned_away: TurnedAway | None = None
    checks: Sequence[dg.AssetChecksDefinition] = ()
    jobs: Sequence[UnresolvedAssetJobDefinition | dg.JobDefinition] = ()  # op jobs too (e.g. a tab rotation)
    schedules: Sequence[dg.ScheduleDefinition] = ()
    sensors: Sequence[dg.SensorDefinition] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    more_pushes: Sequence[Push] = ()
    assets: Sequence[dg.AssetsDefinition] = ()

    @cached_property
    def push_asset(self) -> dg.AssetsDefinition:
        return build_push_asset(self.name, self.push, self.ingest)

    @cached_property
    def more_push_assets(self) -> list[dg.AssetsDefinition]:
        """A two-way flow's other pushes (the way back), each with its own deps."""
        return [build_push_asset(self.name, push, self.ingest) for push in self.more_pushes]

    @cached_property
    def generic_checks(self) -> list[dg.AssetChecksDefinition]:
        pushes = [(self.push, self.push_asset), *zip(self.more_pushes, self.more_push_assets, strict=True)]
        return [
            *(c for push, asset in pushes for c in push_checks(self.name, push, asset, self.rejected_share_var)),
            *ingest_checks(self.ingest, self.turned_away, self.rejected_share_var),
        ]

    @property
    def all_checks(self) -> list[dg.AssetChecksDefinition]:
        return [*self.generic_checks, *self.checks]

    @cached_property
    def job(self) -> UnresolvedAssetJobDefinition:
        """The flow's main job: every asset of the group over a partition range."""
        existing = [j for j in self.jobs if j.name == f"{self.name}_job" and not isinstance(j, dg.JobDefinition)]
        if existing:
            return existing[0]
        return flow_job(self.name, self.partitions, self.job_description, executor=self.executor)

    def _validate(self) -> None:
        for asset in [*self.ingest, self.push_asset, *self.more_push_assets, *self.assets]:
            for key in asset.keys:
                group = asset.group_names_by_key.get(key)
                if group != self.name:
                    raise ValueError(f"{key.to_user_string()} is in group {group!r}, not its flow {self.name!r}")
        for job in [self.job, *self.jobs]:
            if dict(job.tags or {}).get(next(iter(push_tags(self.name)))) != self.name:
                raise ValueError(f"job {job.name} does not carry the {self.name} push tag")

    def build_defs(self, context: dg.ComponentLoadContext | None = None) -> dg.Definitions:
        self._validate()
        jobs = [self.job, *(j for j in self.jobs if j is not self.job)]
        return dg.Definitions(
            assets=[*self.ingest, self.push_asset, *self.more_push_assets, *self.assets],
            asset_checks=self.all_checks,
            jobs=jobs,
            schedules=list(self.schedules),
            sensors=list(self.sensors),
            resources=dict(self.resources()),
        )


class FlowComponent(dg.Component, dg.Resolvable, dg.Model):
    """What a flow folder's `defs.yaml` names: `declaration` is `package.module:NAME` of its `SyncFlow`."""

    declaration: str

    def flow(self) -> SyncFlow:
        module, _, name = self.declaration.partition(":")
        flow = getattr(import_module(module), name or "FLOW")
        if not isinstance(flow, SyncFlow):
            raise TypeError(f"{self.declaration} is not a SyncFlow")
        return flow

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return self.flow().build_defs(context)
