"""What every push shares in Dagster: its run options, and its metadata (the engine's counts, API
requests, samples of bad records and, on a dry run, the planned changes field by field)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import dagster as dg
from pydantic import Field

from integration_sync.sync.engine import PlannedChange, SyncReport


class PushMode(StrEnum):
    """A push's mode in run config (Dagster config cannot take a `Literal`; an enum gives the
    launchpad a dropdown). Its values are the engine's `Mode` strings."""

    upsert = "upsert"
    create_only = "create_only"
    update_only = "update_only"


class PushConfig(dg.Config):
    """Run options of a push: a dry run (plan shown in the metadata and recorded in sync_log, nothing
    sent), at most N records (the ABCP seed's `sync-b24 --limit N`) and the mode: `upsert`,
    `create_only` (never update a record already synced: the ABCP seed's send-once behaviour) or
    `update_only` (never create); None keeps the flow's default."""

    dry_run: bool = False
    limit: int | None = None
    mode: PushMode | None = None
    # re-drive (`integration-sync redrive`): these failed records, or every one, get a fresh retry budget
    redrive_keys: list[str] = Field(default_factory=list)
    redrive_all_failed: bool = False

    def redrive_selection(self) -> list[str] | None:
        """The keys to re-drive before the push: a list (empty: none), or None for every failed record."""
        return None if self.redrive_all_failed else list(self.redrive_keys)


def _cell(value: Any, width: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("|", "/").replace(chr(10), " ")[:width]


def samples_table(samples: Sequence[tuple[str, str]]) -> dg.MetadataValue:
    lines = ["| key | reason |", "| --- | --- |"]
    for key, reason in samples:
        lines.append(f"| {key} | {_cell(reason)} |")
    return dg.MetadataValue.md("\n".join(lines))


def plan_table(plan: Sequence[PlannedChange]) -> dg.MetadataValue:
    """A dry run's planned changes, one row per changed field (old → new), as `drt --dry-run --diff`."""
    lines = ["| key | operation | field | old | new |", "| --- | --- | --- | --- | --- |"]
    for change in plan:
        for diff in change.fields or ():
            old = "" if diff.old is None else _cell(diff.old, 100)
            lines.append(f"| {change.key} | {change.operation} | {diff.path} | {old} | {_cell(diff.new, 100)} |")
        if not change.fields:
            lines.append(f"| {change.key} | {change.operation} | | | (same payload) |")
    return dg.MetadataValue.md("\n".join(lines))


def sync_metadata(report: SyncReport) -> dict[str, Any]:
    metadata: dict[str, Any] = dict(report.as_counts())
    metadata["dry_run"] = report.dry_run
    metadata["mode"] = report.mode
    if report.rejected_samples:
        metadata["rejected_sample"] = samples_table(report.rejected_samples)
    if report.invalid_samples:
        metadata["invalid_sample"] = samples_table(report.invalid_samples)
    if report.plan:
        metadata["plan_diff"] = plan_table(report.plan)
    return metadata
