"""ABCP users in the warehouse (two ingest assets), and the push that makes them Bitrix24 contacts and deals."""

from datetime import timedelta
from typing import Any

import dagster as dg

from integration_sync.defs.abcp_bitrix24.destination import UserDealsDestination
from integration_sync.defs.abcp_bitrix24.mapping import desired_user
from integration_sync.defs.abcp_bitrix24.preflight import push_preflight
from integration_sync.defs.abcp_bitrix24.tables import latest_users, store_users
from integration_sync.defs.metadata import samples_table
from integration_sync.defs.partitions import daily, window_days
from integration_sync.defs.resources import AbcpResource, WarehouseResource
from integration_sync.lib.push import OpenedDestination, Push, PushContext, partition_metadata
from integration_sync.sync.engine import Desired

GROUP = "abcp_bitrix24"
CRM = "bitrix24_abcp"

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
    run: dict[str, Any] = {"api_requests": requests}
    if report.rejected_samples:
        context.log.warning(f"{report.rejected} ABCP records turned away: {report.rejected_samples[:5]}")
        run["invalid_sample"] = samples_table(report.rejected_samples)
    return partition_metadata(context, report.per_day, run)


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


def _desired(ctx: PushContext) -> list[Desired]:
    settings = ctx.resources.users_pipeline.settings()
    return [desired_user(user, settings) for user in latest_users(ctx.store)]


def _destination(ctx: PushContext, client: Any) -> OpenedDestination:
    return OpenedDestination(UserDealsDestination(client, ctx.resources.users_pipeline.settings()))


PUSH = Push(
    key=["bitrix24", "user_deals"],
    entity="user",
    description=(
        "Each ABCP user's Bitrix24 contact and deal in the «Пользователи» pipeline.\n\n"
        "Only new and changed users are sent (diffed against what was last pushed); a contact with the"
        " same phone or email is reused; rejected users are retried on later runs."
    ),
    kind="bitrix24",
    client=CRM,
    resources=("users_pipeline",),
    desired=_desired,
    destination=_destination,
    target_ids=("contact", "deal"),
    unique_entity="deal",
    preflight=push_preflight,
)
