"""The daily ABCP → Bitrix24 job: import today and yesterday at 02:10 Moscow time, then push."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from integration_sync.defs.abcp_bitrix24.assets import GROUP, moscow_days
from integration_sync.lib.flow import flow_job

abcp_bitrix24_job = flow_job(
    GROUP, moscow_days, "Import ABCP users (registered and changed) for a day, then push the delta to Bitrix24."
)


@dg.schedule(
    job=abcp_bitrix24_job,
    cron_schedule="10 2 * * *",
    execution_timezone="Europe/Moscow",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def abcp_bitrix24_daily(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """Yesterday and today, so a late-evening sign-up is never missed (the seed's import-today)."""
    today = context.scheduled_execution_time.astimezone(ZoneInfo("Europe/Moscow")).date()
    days = [today - timedelta(days=1), today]
    return [
        dg.RunRequest(run_key=f"{day.isoformat()}@{today.isoformat()}", partition_key=day.isoformat()) for day in days
    ]
