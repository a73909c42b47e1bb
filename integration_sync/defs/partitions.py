"""Daily partitions in each source's business time zone, and their time windows."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta

import dagster as dg


def daily(timezone: str, start_env: str, default_start: str) -> dg.DailyPartitionsDefinition:
    """Days in `timezone` from the configured start date up to and including today."""
    return dg.DailyPartitionsDefinition(
        start_date=os.environ.get(start_env) or default_start, timezone=timezone, end_offset=1
    )


def window_days(context: dg.AssetExecutionContext) -> tuple[datetime, datetime, date, date]:
    """The run's partition window (one day, or a backfill's whole range) and its first/last day."""
    window = context.partition_time_window
    start, end = window.start, window.end
    return start, end, start.date(), (end - timedelta(days=1)).date()
