"""Running a flow through Dagster in tests and benchmarks: a partition range in one run, as a
single-run backfill or a schedule's range request does, with the environment a deployment has."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any

import dagster as dg


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def materialize_range(
    env: Mapping[str, str],
    selection: Sequence[Any],
    resources: Any,
    *,
    first_day: date,
    last_day: date,
    push: tuple[Any, str] | None = None,
    push_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """Materialize `selection` for first_day..last_day; `push` = (push asset, its node name) gets `push_config`.

    `resources` is a callable building the resources after the environment is set (the real factories).
    """
    run_config: dict[str, Any] = {}
    if push is not None and push[0] in selection and push_config is not None:
        run_config = {"ops": {push[1]: {"config": dict(push_config)}}}
    with environment(env):
        return dg.materialize(
            list(selection),
            resources=resources(),
            instance=dg.DagsterInstance.ephemeral(),
            tags={
                "dagster/asset_partition_range_start": first_day.isoformat(),
                "dagster/asset_partition_range_end": last_day.isoformat(),
                **(tags or {}),
            },
            run_config=run_config,
            raise_on_error=raise_on_error,
        )


def asset_metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    """The metadata of a node's last materialization, values unwrapped."""
    materializations = result.asset_materializations_for_node(node)
    assert materializations, f"{node} was not materialized"
    return {key: getattr(value, "value", value) for key, value in materializations[-1].metadata.items()}


def push_config(dry_run: bool, limit: int | None) -> dict[str, Any]:
    config: dict[str, Any] = {"dry_run": dry_run}
    if limit is not None:
        config["limit"] = limit
    return config
