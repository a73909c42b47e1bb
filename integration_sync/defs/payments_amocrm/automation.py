"""What starts payment runs: the inbox sensor (new webhooks, within seconds), the retry schedule
(failed payments and amoCRM outages), the hourly reconciliation, and the jobs they run.

The sensor drains the inbox by cursor (the inbox's identity and its last event id) and requests one
run per Moscow day of the new payments (run key = the day and the event ids). A day that already has
a run waiting in the queue gets no second one: that run reads the inbox when it starts. If Dagster is
down, payments wait in the inbox; the sensor picks them up from its cursor when it is back.
"""

from datetime import timedelta

import dagster as dg

from integration_sync.defs.payments_amocrm.assets import GROUP, LEADS_KEY, moscow_days, partition_bounds
from integration_sync.lib.flow import flow_job, last_run_failed, latest_count, skip_while_running
from integration_sync.lib.inbox_sensor import drain_inbox
from integration_sync.webhooks.inbox import PAYMENT_SOURCE

MOSCOW_TZ = "Europe/Moscow"
_RANGE_START = "dagster/asset_partition_range_start"
_RANGE_END = "dagster/asset_partition_range_end"
SENSOR_BATCH = 5000

payments_amocrm_job = flow_job(
    GROUP,
    moscow_days,
    "Copy a day's payments from the webhook inbox to the event log, then apply them to amoCRM.",
    executor=dg.in_process_executor,  # one process per run: webhook → amoCRM in seconds
)

payments_push_job = flow_job(
    GROUP,
    None,
    name="payments_push_job",
    selection=dg.AssetSelection.assets(LEADS_KEY),
    executor=dg.in_process_executor,
    description=(
        "Apply pending and due failed payments to amoCRM. To re-drive failed payments, launch it with"
        " config ops.amocrm__payment_leads.config.redrive_keys (or redrive_all_failed: true), or run"
        " `integration-sync redrive payments_amocrm KEY…`."
    ),
)


@dg.sensor(
    job=payments_amocrm_job,
    minimum_interval_seconds=2,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def payment_inbox(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """New payment webhooks in the inbox → a run for each Moscow day they belong to."""
    return drain_inbox(
        context,
        flow=GROUP,
        sources=(PAYMENT_SOURCE,),
        job_name=payments_amocrm_job.name,
        bounds=partition_bounds,
        run_key_prefix="payments",
        nothing="no new payments",
    )


@dg.schedule(
    job=payments_push_job,
    cron_schedule="*/5 * * * *",
    execution_timezone=MOSCOW_TZ,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
@skip_while_running(GROUP)
def payments_retry(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Every 5 minutes: push again when payments are still outstanding or the last run failed (amoCRM
    down, throttled or blocked): every payment lands once amoCRM is back."""
    left = latest_count(context.instance, LEADS_KEY.path, "outstanding")
    if left == 0 and not last_run_failed(context.instance, GROUP):
        return dg.SkipReason("nothing outstanding")
    now = context.scheduled_execution_time
    return dg.RunRequest(run_key=f"retry@{now:%Y-%m-%dT%H:%M}")


@dg.schedule(
    job=payments_amocrm_job,
    cron_schedule="7 * * * *",
    execution_timezone=MOSCOW_TZ,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
@skip_while_running(GROUP)
def payments_reconciliation(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Hourly: load yesterday and today from the inbox again (a run the sensor asked for may have
    failed before its load) and push what is outstanding."""
    now = context.scheduled_execution_time
    first, last = partition_bounds()
    today = min(max(now.date(), first), last)
    start = max(today - timedelta(days=1), first)
    return dg.RunRequest(
        run_key=f"reconcile@{now:%Y-%m-%dT%H}",
        tags={_RANGE_START: start.isoformat(), _RANGE_END: today.isoformat()},
    )
