"""A snapshot of the code location's wiring (as dagster-open-platform's `test_defs`): every asset key
with its group, partitions, pool and tags, every check, job, schedule and sensor. A wiring change
shows in review as a diff of `defs_snapshot.json`; regenerate it with `UPDATE_DEFS_SNAPSHOT=1 pytest
integration_sync_tests/test_defs.py` and read the diff before committing it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg

SNAPSHOT = Path(__file__).with_name("defs_snapshot.json")


def _partitions(definition: dg.PartitionsDefinition[Any] | None) -> str | None:
    if definition is None:
        return None
    if isinstance(definition, dg.TimeWindowPartitionsDefinition):
        return f"{definition.cron_schedule} {definition.timezone} from {definition.start.date().isoformat()}"
    return type(definition).__name__


def snapshot() -> dict[str, Any]:
    from integration_sync.definitions import defs

    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": _partitions(node.partitions_def),
            "backfill": node.backfill_policy.policy_type.value if node.backfill_policy else None,
            "pool": sorted(node.pools or []),
            "tags": dict(sorted(node.tags.items())),
            "kinds": sorted(node.kinds),
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
        }
    checks = sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys)
    repo = defs.get_repository_def()
    jobs = {
        job.name: dict(sorted(job.tags.items()))
        for job in sorted(repo.get_all_jobs(), key=lambda j: j.name)
        if not job.name.startswith("__")
    }
    schedules = {
        s.name: {
            "cron": s.cron_schedule,
            "timezone": s.execution_timezone,
            "job": s.job_name,
            "status": s.default_status.value,
        }
        for s in sorted(repo.schedule_defs, key=lambda s: s.name)
    }
    sensors = {
        s.name: {"interval_s": s.minimum_interval_seconds, "status": s.default_status.value}
        for s in sorted(repo.sensor_defs, key=lambda s: s.name)
    }
    return {"assets": assets, "checks": checks, "jobs": jobs, "schedules": schedules, "sensors": sensors}


def test_definitions_match_the_snapshot() -> None:
    current = snapshot()
    if os.environ.get("UPDATE_DEFS_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert current == expected, "the wiring changed: regenerate defs_snapshot.json (see the module docstring)"


def test_every_push_asset_is_in_its_flow_pool() -> None:
    """The push lock's Dagster half: a push asset outside a pool could run twice at once from the UI."""
    assets = snapshot()["assets"]
    pushes = {key: a for key, a in assets.items() if "integration_sync/push" in a["tags"]}
    assert pushes
    for key, asset in pushes.items():
        assert asset["pool"] == [f"push:{asset['group']}"], key
