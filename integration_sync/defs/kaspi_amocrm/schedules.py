"""Kaspi → amoCRM job and its reconciliation every 10 minutes; new orders come from a sensor
(`sensors.py`), which uses this module's window and request.

Both run the same job over a partition range in one run. New-order runs cover yesterday and today,
and reach further back when the last successful load is older (API or Dagster down for hours), up to
the 14-day window Kaspi serves; reconciliation re-reads the whole window so status changes of older,
non-final orders reach amoCRM. Reconciliation is queued even while a new-orders run is active (the
flow's run tag limit and push pool keep them one after the other), and skipped only while another
reconciliation is queued or running; the sensor skips while any run of the flow is. So the 10-minute
tick always runs, and at most one reconciliation waits.
"""

from datetime import datetime, timedelta

import dagster as dg

from integration_sync.defs.kaspi_amocrm.assets import GROUP, MODE_TAG, kazakhstan_days
from integration_sync.lib.flow import flow_job, skip_while_running
from integration_sync.sync.normalize import KAZAKHSTAN, KAZAKHSTAN_ZONE

WINDOW_DAYS = 14
_RANGE_START = "dagster/asset_partition_range_start"
_RANGE_END = "dagster/asset_partition_range_end"

kaspi_amocrm_job = flow_job(
    GROUP, kazakhstan_days, "Load Kaspi orders for a range of days, then push new orders and status changes to amoCRM."
)


def _first_day(today: datetime, last_success: float | None) -> datetime:
    earliest = today - timedelta(days=WINDOW_DAYS - 1)
    start = today - timedelta(days=1)
    if last_success is not None:
        last = datetime.fromtimestamp(last_success, KAZAKHSTAN) - timedelta(minutes=10)
        start = min(start, max(earliest, last))
    return max(start, earliest, _partition_start())


def _partition_start() -> datetime:
    first = kazakhstan_days.get_first_partition_key()
    return datetime.fromisoformat(first or "1970-01-01").replace(tzinfo=KAZAKHSTAN)


def _request(first: datetime, today: datetime, key: str, mode: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=key,
        tags={_RANGE_START: first.date().isoformat(), _RANGE_END: today.date().isoformat(), MODE_TAG: mode},
    )


@dg.schedule(
    job=kaspi_amocrm_job,
    cron_schedule="*/10 * * * *",
    execution_timezone=KAZAKHSTAN_ZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
@skip_while_running(GROUP, only={MODE_TAG: "full"})
def kaspi_reconciliation(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Re-read the last 14 days so non-final orders' status changes reach amoCRM."""
    now = context.scheduled_execution_time.astimezone(KAZAKHSTAN)
    first = max(now - timedelta(days=WINDOW_DAYS - 1), _partition_start())
    return _request(first, now, f"reconcile@{now:%Y-%m-%dT%H:%M}", "full")
