"""What starts cms_orders runs, and the jobs they run.

- `shop_order_hooks` (sensor): new order webhooks in the inbox → a run of the order's day, reading
  only the inbox (the export is for the migration and the reconciliation).
- `deal_stage_moves` (sensor, every 15 s): one `crm.stagehistory.list` request; a new row → a run of
  `cms_status_job` (history, then statuses to the shop). Its first look only sets its cursor: moves from
  before it (a new deployment, a lost cursor) are settled by the reconciliation's run, not one at start.
  Bitrix24's own outbound events are not re-sent when lost, so they could only speed this up; the
  history is the source.
- `cms_orders_reconciliation` (every 15 min): yesterday and today again from the export and the inbox,
  so an order whose webhook never came is still synced.
- `cms_retry` (every minute): a push again while records wait in the retry log or the last run failed,
  so the flow recovers within 5 minutes of the shop or Bitrix24 coming back.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from integration_sync.defs.cms_orders.assets import GROUP, STAGES_KEY, kazakhstan_days, partition_bounds
from integration_sync.defs.cms_orders.pushes import DEALS_PUSH, STATUS_PUSH
from integration_sync.defs.cms_orders.settings import CmsSettings
from integration_sync.defs.resources import Bitrix24Resource
from integration_sync.defs.runs import WAITING
from integration_sync.lib.flow import flow_job, last_run_failed, latest_count, not_ready, skip_while_running
from integration_sync.lib.inbox_sensor import drain_inbox
from integration_sync.sync.normalize import KAZAKHSTAN
from integration_sync.targets.bitrix24_stages import read_stage_history
from integration_sync.webhooks.bitrix_order import SOURCE

_RANGE_START = "dagster/asset_partition_range_start"
_RANGE_END = "dagster/asset_partition_range_end"
_ORDERS_OP = "bitrix_cms__shop_orders"
STAGE_POLL_OVERLAP = timedelta(minutes=10)

cms_orders_job = flow_job(
    GROUP,
    kazakhstan_days,
    "Load the shop's orders of a day range (webhooks, and the export unless told not to), the catalog,"
    " push products, contacts and deals to Bitrix24, then read deal stages and send managers' moves to"
    " the shop. A backfill of this job over the export's days is the migration.",
    executor=dg.in_process_executor,
)

cms_status_job = flow_job(
    GROUP,
    None,
    name="cms_status_job",
    selection=dg.AssetSelection.assets(STAGES_KEY, STATUS_PUSH.key),
    executor=dg.in_process_executor,
    description="Read the deals' stage history and send managers' moves to the shop as order statuses.",
)

cms_push_job = flow_job(
    GROUP,
    None,
    name="cms_push_job",
    selection=dg.AssetSelection.assets(DEALS_PUSH.key, STAGES_KEY, STATUS_PUSH.key),
    executor=dg.in_process_executor,
    description="Push what waits (new, changed or failed orders and statuses) without loading anything.",
)


@dg.sensor(job=cms_orders_job, minimum_interval_seconds=2, default_status=dg.DefaultSensorStatus.RUNNING)
def shop_order_hooks(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """New shop order webhooks in the inbox → a run for each Kazakhstan day they were placed on."""
    return drain_inbox(
        context,
        flow=GROUP,
        sources=(SOURCE,),
        job_name=cms_orders_job.name,
        bounds=partition_bounds,
        run_key_prefix="cms",
        run_config={"ops": {_ORDERS_OP: {"config": {"from_export": False}}}},
        nothing="no new orders",
    )


@dg.sensor(
    job=cms_status_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def deal_stage_moves(
    context: dg.SensorEvaluationContext, bitrix24_shop: Bitrix24Resource
) -> dg.SensorResult | dg.SkipReason:
    """A deal moved in Bitrix24 since the last look → a run of `cms_status_job`."""
    unready = not_ready(GROUP)
    if unready is not None:
        return unready
    seen_id, _, seen_at = (context.cursor or "").partition("|")
    since = datetime.fromisoformat(seen_at) - STAGE_POLL_OVERLAP if seen_at else datetime.now(UTC) - STAGE_POLL_OVERLAP
    with bitrix24_shop.client() as client:
        moves = read_stage_history(client, category_id=CmsSettings.from_env().category_id, since=since)
    newest = max((m.id for m in moves), default=0)
    last = int(seen_id) if seen_id.isdigit() else 0
    if newest <= last:
        return dg.SensorResult(skip_reason="no new stage moves", cursor=context.cursor)
    newest_at = max(m.at for m in moves).isoformat()
    cursor = f"{newest}|{newest_at}"
    if not context.cursor:  # a first look (a new deployment, a reset cursor): older moves are the reconciliation's
        return dg.SensorResult(skip_reason="first look: watching moves from here on", cursor=cursor)
    waiting = context.instance.get_run_records(dg.RunsFilter(job_name=cms_status_job.name, statuses=WAITING), limit=1)
    if waiting:  # that run reads the history when it starts
        return dg.SensorResult(skip_reason="a status run is already waiting", cursor=cursor)
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"stages:{newest}")], cursor=cursor)


@dg.schedule(
    job=cms_orders_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="Asia/Almaty",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
@skip_while_running(GROUP)
def cms_orders_reconciliation(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Every 15 minutes: yesterday and today from the export and the inbox, then every push."""
    now = context.scheduled_execution_time
    first, last = partition_bounds()
    today = min(max(now.astimezone(KAZAKHSTAN).date(), first), last)
    start = max(today - timedelta(days=1), first)
    return dg.RunRequest(
        run_key=f"reconcile@{now:%Y-%m-%dT%H:%M}", tags={_RANGE_START: start.isoformat(), _RANGE_END: today.isoformat()}
    )


def _waiting(context: dg.ScheduleEvaluationContext) -> bool:
    if any(latest_count(context.instance, push.key, "retry_queue") for push in (DEALS_PUSH, STATUS_PUSH)):
        return True
    return last_run_failed(context.instance, GROUP)


@dg.schedule(
    job=cms_push_job,
    cron_schedule="* * * * *",
    execution_timezone="Asia/Almaty",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
@skip_while_running(GROUP)
def cms_retry(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Every minute: push again while records wait for a retry or the last run failed."""
    if not _waiting(context):
        return dg.SkipReason("nothing waits for a retry")
    return dg.RunRequest(run_key=f"retry@{context.scheduled_execution_time:%Y-%m-%dT%H:%M}")
