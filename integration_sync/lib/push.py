"""The push asset every flow shares, generated from a flow's `Push` declaration.

A flow says what it wants in the target (`desired`), how to open its destination on a CRM client
(`destination`, returning the destination and its lookup state) and which ids a synced record has;
this module builds the Dagster asset around the engine: run config, the flow's pool and tags, the
lookup state saved even when the push fails, the counts as metadata, a warning with samples of the
records the target refused. An asset body no longer knows a destination's internals.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import dagster as dg

from integration_sync.defs.metadata import PushConfig, sync_metadata
from integration_sync.defs.runs import push_pool
from integration_sync.sync.engine import Desired, Destination, SyncEngine
from integration_sync.sync.warehouse import Warehouse

PUSH_TAG_KEY = "integration_sync/push"


def push_tags(flow: str) -> dict[str, str]:
    """The tag every run and push asset of a flow carries: schedules skip while one is active."""
    return {PUSH_TAG_KEY: flow}


class LookupState(Protocol):
    """A destination's lookup tables and watermarks (an amoCRM index, a table of catalog ids): loaded
    when the destination opens, saved after the push — also when it fails, so what was learnt stays."""

    def save(self) -> None: ...


@dataclass
class OpenedDestination:
    """A destination ready to push, its lookup state, and the counts it reports afterwards."""

    destination: Destination
    states: Sequence[LookupState] = ()
    counts: Callable[[], Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class PushContext:
    """What a flow's push hooks get: the run, its config, the warehouse and the run's resources."""

    run_id: str
    store: Warehouse
    config: PushConfig
    resources: Any
    log: Any
    scratch: dict[str, Any] = field(default_factory=dict)  # what one hook leaves for a later one


@dataclass(frozen=True)
class Push:
    """A flow's push, declared.

    - `key`, `entity`, `description` (the asset's docstring), `kind` (the target system, a Dagster kind).
    - `client`: the resource key of the CRM account (a resource with `client()`, a context manager).
    - `desired(ctx)`: the records the target should hold (the desired-state query and its mapping).
    - `destination(ctx, client)`: the destination and its lookup state.
    - `target_ids`: the target ids every synced record has (checked); `unique_entity`: the target
      record no two source keys may share (checked).
    - `config`: the run config class (a `PushConfig`); `engine_options(ctx)`: retries and backoff;
      `before(ctx)` (e.g. a re-drive) and `after(ctx)` add metadata around the run.
    """

    key: Sequence[str]
    entity: str
    description: str
    kind: str
    client: str
    desired: Callable[[PushContext], Sequence[Desired]]
    destination: Callable[[PushContext, Any], OpenedDestination]
    target_ids: tuple[str, ...]
    unique_entity: str
    resources: tuple[str, ...] = ()
    config: type[PushConfig] = PushConfig
    engine_options: Callable[[PushContext], Mapping[str, Any]] | None = None
    before: Callable[[PushContext], Mapping[str, Any]] | None = None
    after: Callable[[PushContext], Mapping[str, Any]] | None = None
    extra_tags: Mapping[str, str] = field(default_factory=dict)


def run_push(flow: str, push: Push, context: dg.AssetExecutionContext, config: PushConfig) -> dict[str, Any]:
    """One push: the engine over the desired state, the lookup state saved whatever happens; its metadata."""
    store: Warehouse = context.resources.warehouse.warehouse()
    ctx = PushContext(context.run_id, store, config, context.resources, context.log)
    before = dict(push.before(ctx)) if push.before else {}
    desired = push.desired(ctx)
    options = dict(push.engine_options(ctx)) if push.engine_options else {}
    engine = SyncEngine(
        store,
        flow=flow,
        entity=push.entity,
        run_id=context.run_id,
        dry_run=config.dry_run,
        mode=config.mode,
        **options,
    )
    with getattr(context.resources, push.client).client() as client:
        opened = push.destination(ctx, client)
        try:
            report = engine.run(desired, opened.destination, limit=config.limit)
        finally:
            for state in opened.states:
                state.save()
    if report.rejected:
        context.log.warning(
            f"{report.rejected} {push.entity} records rejected by {push.kind}: {report.rejected_samples[:5]}"
        )
    metadata = sync_metadata(report)
    if opened.counts is not None:
        metadata.update(opened.counts())
    metadata.update(before)
    if push.after is not None:
        metadata.update(push.after(ctx))
    return metadata


def build_push_asset(flow: str, push: Push, deps: Sequence[Any]) -> dg.AssetsDefinition:
    """The flow's push asset: in the pool `push:<flow>` (one push step per flow at a time) and tagged
    with the flow, so the engine's push lock and the schedules' skip-while-running both hold."""

    def body(context: dg.AssetExecutionContext, config: PushConfig) -> dg.MaterializeResult[None]:
        return dg.MaterializeResult(metadata=run_push(flow, push, context, config))

    # Dagster reads the run config's class from the annotation: each flow may bring its own.
    body.__annotations__ = {**body.__annotations__, "config": push.config}
    body.__doc__ = push.description
    return dg.asset(
        key=list(push.key),
        group_name=flow,
        deps=list(deps),
        kinds={push.kind},
        tags={**push_tags(flow), **push.extra_tags},
        pool=push_pool(flow),
        description=push.description,
        required_resource_keys={"warehouse", push.client, *push.resources},
    )(body)


def partition_metadata(
    context: dg.AssetExecutionContext,
    per_day: Mapping[Any, Mapping[str, Any]],
    run: Mapping[str, Any],
) -> dg.MaterializeResult[None]:
    """An ingest's metadata with each partition's own counts (`per_day`, keyed by day) and, on every
    partition, what belongs to the run as a whole (`run`: API requests, samples). A run over one day
    reports that day's counts as before."""
    if len(per_day) <= 1:
        counts = next(iter(per_day.values()), {})
        return dg.MaterializeResult(metadata={**counts, **run})
    for day, counts in sorted(per_day.items()):
        context.add_asset_metadata({**counts, **run}, partition_key=str(day))
    return dg.MaterializeResult()
