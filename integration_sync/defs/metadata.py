"""What every push shares in Dagster: its run options, and its metadata (the engine's counts, API
requests and samples of bad records)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from integration_sync.sync.engine import SyncReport


class PushConfig(dg.Config):
    """Run options of a push: a dry run (plan recorded in sync_log, nothing sent) and at most N records
    (the ABCP seed's `sync-b24 --limit N`)."""

    dry_run: bool = False
    limit: int | None = None


def samples_table(samples: Sequence[tuple[str, str]]) -> dg.MetadataValue:
    lines = ["| key | reason |", "| --- | --- |"]
    for key, reason in samples:
        lines.append(f"| {key} | {reason.replace('|', '/').replace(chr(10), ' ')[:200]} |")
    return dg.MetadataValue.md("\n".join(lines))


def sync_metadata(report: SyncReport) -> dict[str, Any]:
    metadata: dict[str, Any] = dict(report.as_counts())
    metadata["dry_run"] = report.dry_run
    if report.rejected_samples:
        metadata["rejected_sample"] = samples_table(report.rejected_samples)
    if report.invalid_samples:
        metadata["invalid_sample"] = samples_table(report.invalid_samples)
    return metadata
