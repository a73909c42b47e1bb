"""The engine writes the ledger in the background: a chunk's warehouse work overlaps the next chunk's
requests (the rate budget is not left idle), and a chunk is sent only once its in-flight mark is in."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from integration_sync.connectors.errors import AuthError
from integration_sync.sync.engine import Change, Outcome
from integration_sync.sync.state import ENGINE_MIGRATIONS
from integration_sync.sync.warehouse import Warehouse
from integration_sync_tests.sync.test_engine import MemoryTarget, desired, engine, statuses


@pytest.fixture()
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "w.duckdb", ENGINE_MIGRATIONS)


def test_the_next_chunk_is_marked_while_this_one_is_sent(warehouse: Warehouse) -> None:
    sent: set[str] = set()
    next_marked: list[bool] = []

    class Watching(MemoryTarget):
        def push(self, changes: Sequence[Change]) -> list[Outcome]:
            keys = {c.key for c in changes}
            assert {statuses(warehouse)[key] for key in keys} == {"in_flight"}  # marked before sent
            sent.update(keys)
            deadline = time.monotonic() + 2.0
            while not (ahead := set(statuses(warehouse)) - sent) and time.monotonic() < deadline:
                time.sleep(0.01)
            next_marked.append(bool(ahead))
            return super().push(changes)

    report = engine(warehouse).run(desired(12), Watching())
    assert report.created == 12
    assert next_marked == [True, True, False]  # batch_size 4: the last chunk has no next
    assert set(statuses(warehouse).values()) == {"synced"}


def test_a_failed_chunk_unmarks_the_next_one_it_never_sent(warehouse: Warehouse) -> None:
    target = MemoryTarget(auth_broken=True)
    with pytest.raises(AuthError):
        engine(warehouse).run(desired(12), target)
    assert statuses(warehouse) == {}
