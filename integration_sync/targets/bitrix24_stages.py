"""A pipeline's deal stage history from Bitrix24 (`crm.stagehistory.list`), in as few requests as possible.

Every stage a deal enters is one history row (TYPE_ID 1 created, 2 moved to an in-progress stage, 3 to a
final one, 5 moved to another pipeline); CREATED_TIME is the move's time. Rows are read with
`entityTypeId=2`, filtered on `CATEGORY_ID` and `>=CREATED_TIME`, ordered by ID, 50 a page by
`start`. The first page answers `total`, so the other pages are asked for all at once, 50 commands in
a `batch` request: 2,500 rows cost 2 requests. Rows saved while reading get higher IDs, after the
ones counted: the next read (from an overlapping `since`) finds them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from integration_sync.connectors.bitrix24 import BATCH_LIMIT, LIST_PAGE_SIZE, Bitrix24Client
from integration_sync.connectors.errors import ApiError, RateLimitedError, TransientError

SERVICE: Final = "bitrix24"
METHOD: Final = "crm.stagehistory.list"
DEAL_ENTITY_TYPE: Final = 2


@dataclass(frozen=True)
class StageMove:
    """One history row: deal `deal_id` entered `stage_id` of pipeline `category_id` at `at`."""

    id: int
    deal_id: int
    stage_id: str
    category_id: int
    at: datetime
    type_id: int


def portal_time(value: datetime) -> str:
    """An aware datetime as the portal writes one (ISO 8601 with offset), floored to its whole second."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("since must be an aware datetime")
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


def read_stage_history(client: Bitrix24Client, *, category_id: int, since: datetime | None) -> list[StageMove]:
    """Every deal stage move of pipeline `category_id` made at or after `since` (None: all), by ID."""
    query: dict[str, Any] = {"CATEGORY_ID": category_id}
    if since is not None:
        query[">=CREATED_TIME"] = portal_time(since)
    params: dict[str, Any] = {"entityTypeId": DEAL_ENTITY_TYPE, "filter": query, "order": {"ID": "ASC"}}
    first = client.call_raw(METHOD, {**params, "start": 0}, idempotent=True)
    rows = list(_items(first.get("result")))
    total, following = _int(first.get("total")), _int(first.get("next"))
    if following is not None and total is not None:
        starts = list(range(following, total, LIST_PAGE_SIZE))
        for index in range(0, len(starts), BATCH_LIMIT):
            rows += _batched_pages(client, params, starts[index : index + BATCH_LIMIT])
    elif following is not None:  # no total: page after page
        start: int | None = following
        while start is not None:
            page = client.call_raw(METHOD, {**params, "start": start}, idempotent=True)
            rows += _items(page.get("result"))
            after = _int(page.get("next"))
            start = after if after is not None and after > start else None
    moves = {move.id: move for move in (_move(row) for row in rows)}
    return sorted(moves.values(), key=lambda m: m.id)


def _batched_pages(client: Bitrix24Client, params: Mapping[str, Any], starts: Sequence[int]) -> list[Any]:
    commands = {f"p{start}": (METHOD, {**params, "start": start}) for start in starts}
    outcome = client.batch(commands, halt=False)
    for key, error in outcome.errors.items():
        error_type = RateLimitedError if error.throttled else TransientError
        detail = error.description or error.error or "no description"
        raise error_type(SERVICE, f"{METHOD} ({key}) failed in a batch: {detail}", code=error.error or None)
    rows: list[Any] = []
    for key in commands:
        if key not in outcome.results:
            raise TransientError(SERVICE, f"{METHOD} ({key}) got no result in a batch")
        rows += _items(outcome.results[key])
    return rows


def _items(result: Any) -> list[Any]:
    items = result.get("items") if isinstance(result, dict) else None
    if not isinstance(items, list):
        raise ApiError(SERVICE, f"{METHOD}: expected {{items: [...]}}, got {type(result).__name__}")
    return items


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.strip().isdigit() else None


def _move(row: Any) -> StageMove:
    """A row as the portal answers it (integers as numbers or digit strings)."""
    try:
        at = datetime.fromisoformat(str(row["CREATED_TIME"]))
        if at.tzinfo is None:
            raise ValueError("no offset")
        return StageMove(
            id=int(row["ID"]),
            deal_id=int(row["OWNER_ID"]),
            stage_id=str(row["STAGE_ID"]),
            category_id=int(row["CATEGORY_ID"]),
            at=at,
            type_id=int(row["TYPE_ID"]),
        )
    except (KeyError, TypeError, ValueError):
        pass
    shown = {k: row.get(k) for k in ("ID", "OWNER_ID", "CREATED_TIME")} if isinstance(row, dict) else row
    raise ApiError(SERVICE, f"{METHOD}: unreadable history row {shown!r}")
