"""ABCP users in the warehouse, and their Bitrix24 contacts and deals."""

from datetime import timedelta
from typing import Any

import dagster as dg

from integration_sync.defs.abcp_bitrix24.destination import UserDealsDestination
from integration_sync.defs.abcp_bitrix24.mapping import desired_user
from integration_sync.defs.abcp_bitrix24.resources import UsersPipelineResource
from integration_sync.defs.abcp_bitrix24.tables import FLOW, latest_users, store_users
from integration_sync.defs.metadata import PushConfig, samples_table, sync_metadata
from integration_sync.defs.partitions import daily, window_days
from integration_sync.defs.resources import AbcpResource, Bitrix24Resource, WarehouseResource
from integration_sync.defs.runs import push_pool
from integration_sync.sync.engine import SyncEngine

GROUP = "abcp_bitrix24"
PUSH_TAG = {"integration_sync/push": "bitrix24_user_deals"}

moscow_days = daily("Europe/Moscow", "ABCP_START_DATE", "2024-01-01")
_LAST_SECOND = timedelta(seconds=1)


def _ingest(
    context: dg.AssetExecutionContext, abcp: AbcpResource, warehouse: WarehouseResource, *, by_update: bool
) -> dg.MaterializeResult[None]:
    """Fetch the run's window by registration or update time and replace its partitions."""
    start, end, first_day, last_day = window_days(context)
    window = {
        "updated_from" if by_update else "registered_from": start,
        "updated_to" if by_update else "registered_to": end - _LAST_SECOND,
    }
    with abcp.client() as client:
        report = store_users(
            warehouse.warehouse(),
            client.fetch_users(**window),
            first_day=first_day,
            last_day=last_day,
            run_id=context.run_id,
            by_update=by_update,
        )
        requests = client.stats.requests
    metadata: dict[str, Any] = {
        "fetched": report.fetched,
        "stored": report.stored,
        "invalid": report.rejected,
        "api_requests": requests,
    }
    if report.rejected_samples:
        context.log.warning(f"{report.rejected} ABCP records turned away: {report.rejected_samples[:5]}")
        metadata["invalid_sample"] = samples_table(report.rejected_samples)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    key=["abcp", "users"],
    group_name=GROUP,
    partitions_def=moscow_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"duckdb"},
)
def abcp_users(
    context: dg.AssetExecutionContext, abcp: AbcpResource, warehouse: WarehouseResource
) -> dg.MaterializeResult[None]:
    """ABCP users registered on the partition's day(s), Moscow time: every field plus the raw JSON.

    Fetched with dateRegistredStart/End and paging; a re-run replaces the partition.
    """
    return _ingest(context, abcp, warehouse, by_update=False)


@dg.asset(
    key=["abcp", "user_changes"],
    group_name=GROUP,
    partitions_def=moscow_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"duckdb"},
)
def abcp_user_changes(
    context: dg.AssetExecutionContext, abcp: AbcpResource, warehouse: WarehouseResource
) -> dg.MaterializeResult[None]:
    """ABCP users updated on the partition's day(s), Moscow time (saldo, INN, organization, name, contacts).

    Fetched with dateUpdatedStart/End, so users changed after their first sync reach Bitrix24 within a
    day without a full re-import.
    """
    return _ingest(context, abcp, warehouse, by_update=True)


@dg.asset(
    key=["bitrix24", "user_deals"],
    group_name=GROUP,
    deps=[abcp_users, abcp_user_changes],
    kinds={"bitrix24"},
    tags=PUSH_TAG,
    pool=push_pool(GROUP),
)
def bitrix24_user_deals(
    context: dg.AssetExecutionContext,
    config: PushConfig,
    bitrix24: Bitrix24Resource,
    users_pipeline: UsersPipelineResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult[None]:
    """Each ABCP user's Bitrix24 contact and deal in the «Пользователи» pipeline.

    Only new and changed users are sent (diffed against what was last pushed); a contact with the
    same phone or email is reused; rejected users are retried on later runs.
    """
    store = warehouse.warehouse()
    settings = users_pipeline.settings()
    desired = [desired_user(user, settings) for user in latest_users(store)]
    engine = SyncEngine(
        store, flow=FLOW, entity="user", run_id=context.run_id, dry_run=config.dry_run, mode=config.mode
    )
    with bitrix24.client() as client:
        report = engine.run(desired, UserDealsDestination(client, settings), limit=config.limit)
    if report.rejected:
        context.log.warning(f"{report.rejected} users rejected by Bitrix24: {report.rejected_samples[:5]}")
    return dg.MaterializeResult(metadata=sync_metadata(report))
