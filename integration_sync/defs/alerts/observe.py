"""What the alerts sensor reads from the Dagster instance: finished runs, the latest evaluation of every
asset check, each push's latest counts, reduced to the plain facts `alerts.rules` judges."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Literal

import dagster as dg
from dagster._core.definitions.repository_definition import RepositoryDefinition

from integration_sync.alerts.rules import CheckFact, PushCounts, RunFact
from integration_sync.lib.push import PUSH_TAG_KEY

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
RUNS_PER_TICK = 500
ERROR_CHARS = 300


def _subject(run: dg.DagsterRun, repo: RepositoryDefinition | None) -> str:
    """The flow a run belongs to: its push tag, else the group of the assets it selected (a run
    launched from the UI carries no job tags), else its job."""
    flow = run.tags.get(PUSH_TAG_KEY)
    if flow:
        return flow
    if repo is not None and run.asset_selection:
        graph = repo.asset_graph
        groups = sorted({graph.get(key).group_name or "" for key in run.asset_selection if graph.has(key)} - {""})
        if groups:
            return ",".join(groups)
    return run.job_name


def _failure_reason(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first failed step's error (first line), else the run failure's message."""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1).records:
        event = record.event_log_entry.dagster_event
        data = event.event_specific_data if event is not None else None
        error = getattr(data, "error", None)
        while getattr(error, "cause", None) is not None:  # Dagster wraps the op's own exception
            error = error.cause  # type: ignore[union-attr]
        message = str(getattr(error, "message", None) or "").strip()
        if message:
            step = f"{event.step_key}: " if event is not None and event.step_key else ""
            return (step + message.splitlines()[0])[:ERROR_CHARS]
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE, limit=1).records:
        return (record.event_log_entry.message or "").strip()[:ERROR_CHARS]
    return ""


def finished_runs(
    instance: dg.DagsterInstance, repo: RepositoryDefinition | None, after: float
) -> tuple[list[RunFact], float]:
    """Runs that finished (succeeded or failed) since `after` (an update timestamp), oldest first, and
    the newest update timestamp seen (the next `after`)."""
    records = instance.get_run_records(
        dg.RunsFilter(statuses=FINISHED, updated_after=datetime.fromtimestamp(after, UTC)),
        limit=RUNS_PER_TICK,
        order_by="update_timestamp",
        ascending=True,
    )
    facts: list[RunFact] = []
    newest = after
    for record in records:
        run = record.dagster_run
        newest = max(newest, record.update_timestamp.timestamp())
        failed = run.status == dg.DagsterRunStatus.FAILURE
        facts.append(
            RunFact(
                subject=_subject(run, repo),
                run_id=run.run_id,
                failed=failed,
                end_time=record.end_time or record.update_timestamp.timestamp(),
                error=_failure_reason(instance, run.run_id) if failed else "",
            )
        )
    return facts, newest


def check_facts(instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey]) -> list[CheckFact]:
    """The latest evaluation of each check (checks never evaluated, or only planned, are left out)."""
    keys = sorted(check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name))
    if not keys:
        return []
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    facts = []
    for key in keys:
        record = latest.get(key)
        evaluation = record.evaluation if record is not None else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation):  # never run, or only planned (skipped)
            continue
        severity: Literal["ERROR", "WARN"] = "ERROR" if evaluation.severity == dg.AssetCheckSeverity.ERROR else "WARN"
        facts.append(
            CheckFact(
                check=f"{key.asset_key.to_user_string()}:{key.name}",
                passed=evaluation.passed,
                severity=severity,
                description=_check_detail(evaluation.metadata),
            )
        )
    return facts


def _check_detail(metadata: Mapping[str, dg.MetadataValue]) -> str:
    """The check's numeric metadata, e.g. ``missing_ids=3``: enough to know what to look at."""
    numbers = sorted((name, value.value) for name, value in metadata.items() if isinstance(value.value, int | float))
    parts = [f"{name}={number}" for name, number in numbers]
    return ", ".join(parts[:6])


def push_counts(instance: dg.DagsterInstance, repo: RepositoryDefinition) -> list[PushCounts]:
    """Each push asset's latest counts (a dry run changes nothing and is skipped)."""
    graph = repo.asset_graph
    counts = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        flow = graph.get(key).tags.get(PUSH_TAG_KEY)
        if not flow:
            continue
        event = instance.get_latest_materialization_event(key)
        materialization = event.asset_materialization if event is not None else None
        if materialization is None:
            continue
        values = {name: value.value for name, value in materialization.metadata.items()}
        if values.get("dry_run") is True:
            continue
        counts.append(
            PushCounts(
                flow=flow,
                fetched=_int(values.get("fetched")),
                rejected=_int(values.get("rejected")),
                parked=_int(values.get("parked")),
            )
        )
    return counts


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
