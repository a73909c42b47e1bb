"""Helpers to run the abcp_bitrix24 flow through Dagster against a sandbox (shared by tests and benchmarks)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import httpx

from integration_sync.defs.abcp_bitrix24.assets import abcp_user_changes, abcp_users, bitrix24_user_deals
from integration_sync.defs.abcp_bitrix24.checks import (
    rejected_share_below_threshold,
    synced_users_have_contact_and_deal,
)
from integration_sync.defs.abcp_bitrix24.resources import users_pipeline_resource
from integration_sync.defs.resources import abcp_resource, bitrix24_resource, warehouse_resource
from integration_sync.sync.warehouse import Warehouse

MOSCOW = ZoneInfo("Europe/Moscow")
ASSETS = [abcp_users, abcp_user_changes, bitrix24_user_deals]
CHECKS = [synced_users_have_contact_and_deal, rejected_share_below_threshold]


@contextmanager
def environment(values: Mapping[str, str]) -> Any:
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


def flow_env(sandbox_env: Mapping[str, str], data_dir: Path, **overrides: str) -> dict[str, str]:
    return {
        **sandbox_env,
        "INTEGRATION_SYNC_DATA_DIR": str(data_dir),
        "WAREHOUSE_PATH": str(data_dir / "warehouse.duckdb"),
        **overrides,
    }


def resources() -> dict[str, Any]:
    """The real resource factories, reading the environment as in production."""
    return {
        "warehouse": warehouse_resource(),
        "abcp": abcp_resource(),
        "bitrix24": bitrix24_resource(),
        "users_pipeline": users_pipeline_resource(),
    }


def today() -> date:
    return datetime.now(MOSCOW).date()


def run_flow(
    env: Mapping[str, str],
    *,
    first_day: date,
    last_day: date | None = None,
    selection: Sequence[Any] = (*ASSETS, *CHECKS),
    dry_run: bool = False,
    limit: int | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """Materialize the flow for a partition range in one run, as a single-run backfill does."""
    last = last_day or first_day
    config: dict[str, Any] = {"dry_run": dry_run}
    if limit is not None:
        config["limit"] = limit
    run_config = {"ops": {"bitrix24__user_deals": {"config": config}}} if bitrix24_user_deals in selection else {}
    with environment(env):
        return dg.materialize(
            list(selection),
            resources=resources(),
            instance=dg.DagsterInstance.ephemeral(),
            tags={
                "dagster/asset_partition_range_start": first_day.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat(),
            },
            run_config=run_config,
            raise_on_error=raise_on_error,
        )


def asset_metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    """The metadata of a node's last materialization, values unwrapped."""
    materializations = result.asset_materializations_for_node(node)
    assert materializations, f"{node} was not materialized"
    return {key: getattr(value, "value", value) for key, value in materializations[-1].metadata.items()}


def push_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return asset_metadata(result, "bitrix24__user_deals")


def stats(control: httpx.Client) -> dict[str, Any]:
    body: dict[str, Any] = control.get("/_sandbox/stats").json()["bitrix24"]
    return body


def entities(control: httpx.Client, kind: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = control.get(f"/_sandbox/bitrix24/{kind}").json()
    return rows


def warehouse(env: Mapping[str, str]) -> Warehouse:
    with environment(env):
        return warehouse_resource().warehouse()
