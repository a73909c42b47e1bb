"""Helpers to run the abcp_bitrix24 flow through Dagster against a sandbox (shared by tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import httpx

from integration_sync.defs.abcp_bitrix24.assets import abcp_user_changes, abcp_users
from integration_sync.defs.abcp_bitrix24.definitions import FLOW, bitrix24_user_deals
from integration_sync.defs.resources import warehouse_resource
from integration_sync.sync.warehouse import Warehouse
from integration_sync_tests.dagster_support import asset_metadata, environment, materialize_range, push_config

MOSCOW = ZoneInfo("Europe/Moscow")
ASSETS = [abcp_users, abcp_user_changes, bitrix24_user_deals]
CHECKS = FLOW.all_checks


def flow_env(sandbox_env: Mapping[str, str], data_dir: Path, **overrides: str) -> dict[str, str]:
    return {
        **sandbox_env,
        "INTEGRATION_SYNC_DATA_DIR": str(data_dir),
        "WAREHOUSE_PATH": str(data_dir / "warehouse.duckdb"),
        **overrides,
    }


def resources() -> dict[str, Any]:
    """The real resource factories, reading the environment as in production."""
    return {"warehouse": warehouse_resource(), **FLOW.resources()}


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
    return materialize_range(
        env,
        selection,
        resources,
        first_day=first_day,
        last_day=last_day or first_day,
        push=(bitrix24_user_deals, "bitrix24__user_deals"),
        push_config=push_config(dry_run, limit),
        raise_on_error=raise_on_error,
    )


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
