"""The push asset every flow shares, generated from a flow's `Push` declaration.

A flow says what it wants in the target (`desired`), how to open its destination on a CRM client
(`destination`, returning the destination and its lookup state) and which ids a synced record has;
this module builds the Dagster asset around the engine: run config, the flow's pool and tags, the
lookup state saved even when the push fails, the counts as metadata, a warning with samples of the
records the target refused. An asset body no longer knows a destination's internals.
"""

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import dagster as dg

from integration_sync.connectors.errors import ConfigError
from integration_sync.defs.metadata import PushConfig, sync_metadata
from integration_sync.defs.runs import push_pool
from integration_sync.sync.engine import Desired, Destination, SyncEngine
from integration_sync.sync.state import redrive
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
      `before(ctx)` and `after(ctx)` add metadata around the run (the config's re-drive, `redrive_keys`
      or `redrive_all_failed`, is done by `run_push` itself before `before`).
    - `preflight(ctx, client)`: problems with what the configuration names in the target (one line
      each, naming the variable); any stops the push before it writes (a `PreflightError`).
    - `deps`: the asset keys the push reads (default: the flow's ingest assets); a two-way flow's
      second push names its own source here.
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
    preflight: Callable[[PushContext, Any], list[str]] | None = None
    deps: tuple[Sequence[str], ...] = ()


class PreflightError(ConfigError):
    """A push refused to start: the configuration names a pipeline, stage or field the target lacks."""


# A passed preflight is not asked again for this long by the same process with the same settings:
# a retried step, or back-to-back runs in one process, cost no request ("unchanged costs nothing").
PREFLIGHT_TTL_S = 900.0
_PREFLIGHT_PASSED: dict[str, float] = {}


def _settings_key(flow: str, push: Push, resources: Any) -> str:
    """The flow and the values of its CRM account and settings resources, hashed (they hold secrets)."""
    parts = [flow, *(repr(getattr(resources, key, None)) for key in (push.client, *push.resources))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def run_preflight(flow: str, push: Push, ctx: PushContext, client: Any) -> int:
    """Raise `PreflightError` naming each variable whose value does not exist in the target; else
    the number of requests the check cost (0 when it passed recently)."""
    if push.preflight is None or ctx.config.dry_run:  # a dry run calls nothing
        return 0
    key = _settings_key(flow, push, ctx.resources)
    if time.monotonic() - _PREFLIGHT_PASSED.get(key, -PREFLIGHT_TTL_S) < PREFLIGHT_TTL_S:
        return 0
    start = int(getattr(client, "requests_used", 0))
    problems = push.preflight(ctx, client)
    if problems:
        raise PreflightError(flow, "the push did not start: " + "; ".join(problems))
    _PREFLIGHT_PASSED[key] = time.monotonic()
    return int(getattr(client, "requests_used", 0)) - start


def redrive_before_push(flow: str, push: Push, ctx: PushContext) -> dict[str, Any]:
    """The run config's re-drive (`redrive_keys` or `redrive_all_failed`): those failed records are due
    now with a fresh retry budget, so this push tries them."""
    selection = ctx.config.redrive_selection()
    if selection == []:
        return {"redriven": 0}
    redriven = redrive(ctx.store, flow, push.entity, selection)
    ctx.log.info(f"re-driven: {len(redriven)} failed {push.entity} records")
    return {"redriven": len(redriven)}


def run_push(flow: str, push: Push, context: dg.AssetExecutionContext, config: PushConfig) -> dict[str, Any]:
    """One push: the engine over the desired state, the lookup state saved whatever happens; its metadata."""
    store: Warehouse = context.resources.warehouse.warehouse()
    ctx = PushContext(context.run_id, store, config, context.resources, context.log)
    before = redrive_before_push(flow, push, ctx)
    if push.before:
        before.update(push.before(ctx))
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
        preflight_requests = run_preflight(flow, push, ctx, client)
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
    if push.preflight is not None:
        metadata["preflight_requests"] = preflight_requests  # beside api_requests, which are the engine's
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
        deps=[dg.AssetKey(list(key)) for key in push.deps] if push.deps else list(deps),
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
