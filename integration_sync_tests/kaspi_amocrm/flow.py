"""Helpers to run the kaspi_amocrm flow through Dagster against a sandbox (tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx

from integration_sync.defs.kaspi_amocrm.assets import kaspi_orders
from integration_sync.defs.kaspi_amocrm.definitions import FLOW, amocrm_kaspi_leads
from integration_sync.defs.resources import warehouse_resource
from integration_sync.sync.normalize import KAZAKHSTAN
from integration_sync_tests.dagster_support import asset_metadata, materialize_range, push_config

ASSETS = [kaspi_orders, amocrm_kaspi_leads]
CHECKS = FLOW.all_checks


def flow_env(sandbox_env: Mapping[str, str], data_dir: Path, **overrides: str) -> dict[str, str]:
    """The sandbox's settings with this test's data dir and warehouse."""
    return {
        **sandbox_env,
        "INTEGRATION_SYNC_DATA_DIR": str(data_dir),
        "WAREHOUSE_PATH": str(data_dir / "warehouse.duckdb"),
        **overrides,
    }


def today() -> date:
    return datetime.now(KAZAKHSTAN).date()


def resources() -> dict[str, Any]:
    return {"warehouse": warehouse_resource(), **FLOW.resources()}


def run_flow(
    env: Mapping[str, str],
    *,
    days: int = 3,
    first_day: date | None = None,
    selection: Sequence[Any] = (*ASSETS, *CHECKS),
    dry_run: bool = False,
    limit: int | None = None,
    raise_on_error: bool = True,
    incremental: bool = False,
) -> dg.ExecuteInProcessResult:
    """Materialize the flow over a range of days in one run, as the schedules do."""
    return materialize_range(
        env,
        selection,
        resources,
        first_day=first_day or today() - timedelta(days=days),
        last_day=today(),
        push=(amocrm_kaspi_leads, "amocrm__kaspi_leads"),
        push_config=push_config(dry_run, limit),
        tags={"integration_sync/kaspi_mode": "incremental" if incremental else "full"},
        raise_on_error=raise_on_error,
    )


def push_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return asset_metadata(result, "amocrm__kaspi_leads")


def amo(control: httpx.Client, kind: str) -> list[dict[str, Any]]:
    rows: Any = control.get(f"/_sandbox/amocrm/{kind}").json()
    if isinstance(rows, dict):
        rows = rows.get(kind) or rows.get("items") or list(rows.values())
    return list(rows)


def amo_requests(control: httpx.Client) -> int:
    return int(control.get("/_sandbox/stats").json()["amocrm"]["requests"])
