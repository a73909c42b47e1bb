"""Helpers to run the kaspi_amocrm flow through Dagster against a sandbox (tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg
import httpx

from integration_sync.defs.kaspi_amocrm.assets import amocrm_kaspi_leads, kaspi_orders
from integration_sync.defs.kaspi_amocrm.checks import one_lead_per_order, orders_match_kaspi_total
from integration_sync.defs.kaspi_amocrm.mapping import KAZAKHSTAN
from integration_sync.defs.kaspi_amocrm.resources import amocrm_resource, kaspi_leads_resource, kaspi_resource
from integration_sync.defs.resources import warehouse_resource
from integration_sync_tests.abcp_bitrix24.flow import asset_metadata, environment

ASSETS = [kaspi_orders, amocrm_kaspi_leads]
CHECKS = [orders_match_kaspi_total, one_lead_per_order]


def today() -> date:
    return datetime.now(KAZAKHSTAN).date()


def resources() -> dict[str, Any]:
    return {
        "warehouse": warehouse_resource(),
        "kaspi": kaspi_resource(),
        "amocrm": amocrm_resource(),
        "kaspi_leads": kaspi_leads_resource(),
    }


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
    first = first_day or today() - timedelta(days=days)
    config: dict[str, Any] = {"dry_run": dry_run}
    if limit is not None:
        config["limit"] = limit
    run_config = {"ops": {"amocrm__kaspi_leads": {"config": config}}} if amocrm_kaspi_leads in selection else {}
    with environment(env):
        return dg.materialize(
            list(selection),
            resources=resources(),
            instance=dg.DagsterInstance.ephemeral(),
            tags={
                "dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": today().isoformat(),
                "integration_sync/kaspi_mode": "incremental" if incremental else "full",
            },
            run_config=run_config,
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
