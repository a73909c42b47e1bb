"""Helpers to run the cms_orders flow through Dagster against the shop and its portal's emulators
(tests and benchmarks)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx

from integration_sync.defs.cms_orders.assets import shop_catalog, shop_deal_stages, shop_orders
from integration_sync.defs.cms_orders.definitions import FLOW, shop_deals
from integration_sync.defs.resources import warehouse_resource
from integration_sync.sync.normalize import KAZAKHSTAN
from integration_sync_tests.dagster_support import environment, materialize_range

PRODUCTS, CONTACTS, STATUSES = FLOW.more_push_assets
FORWARD = [shop_orders, shop_catalog, PRODUCTS, CONTACTS, shop_deals]
BACK = [shop_deal_stages, STATUSES]
EVERYTHING = [*FORWARD, *BACK]
ORDERS_OP = "bitrix_cms__shop_orders"


def today() -> date:
    return datetime.now(KAZAKHSTAN).date()


def flow_env(sandbox_env: Mapping[str, str], data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {
        **sandbox_env,
        "INTEGRATION_SYNC_DATA_DIR": str(data_dir),
        "WAREHOUSE_PATH": str(data_dir / "warehouse.duckdb"),
        "WEBHOOK_INBOX_PATH": str(data_dir / "inbox.sqlite"),
        "CMS_START_DATE": (today() - timedelta(days=40)).isoformat(),
    }
    env.update(overrides)
    return env


def resources() -> dict[str, Any]:
    return {"warehouse": warehouse_resource(), **FLOW.resources()}


def run(
    env: Mapping[str, str],
    selection: Sequence[Any] = EVERYTHING,
    *,
    days: int = 8,
    from_export: bool = True,
    run_config: Mapping[str, Any] | None = None,
    raise_on_error: bool = True,
    instance: dg.DagsterInstance | None = None,
    tags: Mapping[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """The selection over the last `days` Kazakhstan days (unpartitioned assets run once), with the
    flow's checks of the selected assets."""
    config: dict[str, Any] = {"ops": {}}
    if shop_orders in selection:
        config["ops"][ORDERS_OP] = {"config": {"from_export": from_export}}
    if run_config:
        config["ops"].update(run_config)
    keys = {key for asset in selection for key in asset.keys}
    selection = [*selection, *(c for c in FLOW.all_checks if {k.asset_key for k in c.check_keys} <= keys)]
    if not any(a.partitions_def for a in selection):
        with environment(env):
            return dg.materialize(
                list(selection),
                resources=resources(),
                instance=instance or dg.DagsterInstance.ephemeral(),
                run_config=config,
                tags=dict(tags or {}),
                raise_on_error=raise_on_error,
            )
    last = today()
    with environment(env):
        first = last - timedelta(days=days - 1)
        return dg.materialize(
            list(selection),
            resources=resources(),
            instance=instance or dg.DagsterInstance.ephemeral(),
            tags={
                "dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat(),
                **(tags or {}),
            },
            run_config=config,
            raise_on_error=raise_on_error,
        )


def shop_order(control: httpx.Client, order_id: int) -> dict[str, Any]:
    answer = control.get(f"/_sandbox/bitrix-shop/orders/{order_id}")
    answer.raise_for_status()
    result: dict[str, Any] = json.loads(answer.content.decode("utf-8", "replace"))  # a raw cp1251 name
    return result


def deals(control: httpx.Client) -> list[dict[str, Any]]:
    answer = control.get("/_sandbox/bitrix24-shop/deals")
    answer.raise_for_status()
    body = answer.json()
    rows: list[dict[str, Any]] = body["deals"] if isinstance(body, dict) else body
    return rows


__all__ = ["materialize_range", "shop_catalog", "shop_deal_stages", "shop_deals", "shop_orders"]
