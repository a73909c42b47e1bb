"""What schedules and sensors ask Dagster about runs: is a push already queued or running."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]
ACTIVE = [*WAITING, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def push_in_progress(instance: dg.DagsterInstance, tags: Mapping[str, str]) -> bool:
    """Whether a run with these tags (a flow's push tag) is queued or running: a tick is then skipped,
    so two runs never overlap and the queue never piles up."""
    return bool(instance.get_run_records(dg.RunsFilter(tags=dict(tags), statuses=ACTIVE), limit=1))


def push_pool(flow: str) -> str:
    """The Dagster pool of a flow's push asset: `dagster.yaml` gives every pool a limit of 1, so one push
    step per flow runs at a time across all runs, whoever launched them."""
    return f"push:{flow}"
