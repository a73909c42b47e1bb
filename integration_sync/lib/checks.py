"""The asset checks every flow gets: on its push, every synced record has its target ids, no target
record stands for two source records, and the share the target rejects stays under the flow's
threshold; on each ingest asset, the share of records turned away at load stays under it too."""

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from integration_sync.defs.resources import WarehouseResource, env_float
from integration_sync.lib.push import Push
from integration_sync.sync.warehouse import Warehouse

TurnedAway = Callable[[Warehouse, date], tuple[int, int]]
"""A flow's count of records turned away at load since a day, and of all records loaded since then."""

TURNED_AWAY_DAYS = 7
DEFAULT_SHARE = 0.05


def threshold(variable: str) -> float:
    """The flow's threshold, read when the check runs (a changed .env needs no reload of the code)."""
    return env_float(variable, DEFAULT_SHARE) if variable else DEFAULT_SHARE


def _target_ids_present(flow: str, push: Push, asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    joins = "".join(
        f" LEFT JOIN id_map m{n} ON m{n}.flow = s.flow AND m{n}.source_key = s.source_key AND m{n}.entity = ?"
        for n in range(len(push.target_ids))
    )
    missing = " OR ".join(f"m{n}.target_id IS NULL" for n in range(len(push.target_ids)))
    query = (
        f"SELECT count(*), count(*) FILTER (WHERE {missing}) FROM sync_state s{joins}"  # noqa: S608 - only our own column aliases
        " WHERE s.flow = ? AND s.entity = ? AND s.status = 'synced'"
    )

    @dg.asset_check(
        asset=asset,
        name="target_ids_present",
        description=f"Every synced {push.entity} has its {', '.join(push.target_ids)} id(s) in {push.kind}.",
    )
    def check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.warehouse().connect() as conn:
            row = conn.execute(query, [*push.target_ids, flow, push.entity]).fetchone()
        synced, absent = (int(row[0]), int(row[1])) if row else (0, 0)
        return dg.AssetCheckResult(passed=absent == 0, metadata={"synced": synced, "missing_ids": absent})

    return check


def _one_target_per_record(flow: str, push: Push, asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="one_target_per_record",
        description=f"No {push.kind} {push.unique_entity} stands for two source records (nothing created twice).",
    )
    def check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.warehouse().connect() as conn:
            rows = conn.execute(
                "SELECT target_id, list(source_key ORDER BY source_key) FROM id_map"
                " WHERE flow = ? AND entity = ? GROUP BY target_id HAVING count(*) > 1 ORDER BY 1 LIMIT 20",
                [flow, push.unique_entity],
            ).fetchall()
        return dg.AssetCheckResult(
            passed=not rows,
            metadata={
                "shared_targets": len(rows),
                "sample": dg.MetadataValue.md(
                    "\n".join(f"- {target}: {', '.join(map(str, keys))}" for target, keys in rows) or "none"
                ),
            },
        )

    return check


def _rejected_share(flow: str, push: Push, asset: dg.AssetsDefinition, variable: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="rejected_share_below_threshold",
        description=f"The share of {push.entity} records {push.kind} rejects stays under {variable or 'the limit'}.",
    )
    def check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        limit = threshold(variable)
        with warehouse.warehouse().connect() as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'rejected'), count(*) FILTER (WHERE status <> 'invalid')"
                " FROM sync_state WHERE flow = ? AND entity = ?",
                [flow, push.entity],
            ).fetchone()
        rejected, total = (int(row[0]), int(row[1])) if row else (0, 0)
        share = rejected / total if total else 0.0
        return dg.AssetCheckResult(
            passed=share <= limit,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"rejected": rejected, "total": total, "share": share, "threshold": limit},
        )

    return check


def push_checks(flow: str, push: Push, asset: dg.AssetsDefinition, variable: str) -> list[dg.AssetChecksDefinition]:
    return [
        _target_ids_present(flow, push, asset),
        _one_target_per_record(flow, push, asset),
        _rejected_share(flow, push, asset, variable),
    ]


def turned_away_check(
    asset: dg.AssetsDefinition, turned_away: TurnedAway, variable: str, days: int = TURNED_AWAY_DAYS
) -> dg.AssetChecksDefinition:
    """Records the loader quarantined (in `ingest_rejects`, with the reason) over the last `days` days,
    against all it loaded: a source sending broken records warns before the business notices."""

    @dg.asset_check(
        asset=asset,
        name="turned_away_below_threshold",
        description=f"Records turned away at load over {days} days stay under {variable or 'the limit'}.",
    )
    def check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        limit = threshold(variable)
        since = datetime.now(UTC).date() - timedelta(days=days)
        rejected, total = turned_away(warehouse.warehouse(), since)
        share = rejected / total if total else 0.0
        return dg.AssetCheckResult(
            passed=share <= limit,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"turned_away": rejected, "loaded": total, "share": share, "threshold": limit},
        )

    return check


def ingest_checks(
    assets: Sequence[dg.AssetsDefinition], turned_away: TurnedAway | None, variable: str
) -> list[dg.AssetChecksDefinition]:
    if turned_away is None:
        return []
    return [turned_away_check(asset, turned_away, variable) for asset in assets]
