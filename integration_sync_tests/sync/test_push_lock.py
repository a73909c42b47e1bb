"""The engine's push lock: one push of a flow to a target at a time, across threads and processes,
released by the kernel when its holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from integration_sync.sync.engine import Change, Desired, Outcome, SyncEngine
from integration_sync.sync.push_lock import PushBusyError, lock_path, push_lock
from integration_sync.sync.state import ENGINE_MIGRATIONS
from integration_sync.sync.warehouse import Warehouse
from integration_sync_tests.sync.test_engine import MemoryTarget


class BlindSlowTarget(MemoryTarget):
    """A target whose lookup finds nothing (as a lead search by a code that is not indexed) and whose
    writes take a while: two overlapping pushes would both create every record."""

    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.max_active = 0
        self.guard = threading.Lock()

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        return {}

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        with self.guard:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(0.05)
            return super().push(changes)
        finally:
            with self.guard:
                self.active -= 1


def test_two_pushes_at_once_create_each_record_once(tmp_path: Path) -> None:
    """Guards `SyncEngine.run` taking `self.exclusive(...)`: without it both threads plan the same
    creates and the target ends with two records per key."""
    target = BlindSlowTarget()
    desired = [Desired(f"k{i}", {"n": i}) for i in range(12)]
    path = tmp_path / "warehouse.duckdb"
    errors: list[BaseException] = []

    def push(run_id: str) -> None:
        try:
            SyncEngine(Warehouse(path, ENGINE_MIGRATIONS), flow="f", entity="e", run_id=run_id).run(desired, target)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(f"run-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert target.max_active == 1
    assert sorted(rec["key"] for rec in target.records.values()) == sorted(d.key for d in desired)


def test_a_push_that_waits_too_long_stops_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with push_lock(path, "kaspi_amocrm", "amocrm", run_id="run-A"):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        waits: list[str] = []
        with (
            pytest.raises(PushBusyError) as info,
            push_lock(path, "kaspi_amocrm", "amocrm", run_id="run-B", timeout_s=0.3, on_wait=waits.append),
        ):
            pass
        assert "run-A" in str(info.value) and f"pid {os.getpid()}" in str(info.value)
        assert waits and "waiting" in waits[0]
        # another flow, or the same flow to another target, is not held up
        with push_lock(path, "payments_amocrm", "amocrm", timeout_s=0):
            pass
        with push_lock(path, "kaspi_amocrm", "bitrix24", timeout_s=0):
            pass
    finally:
        release.set()
        thread.join(10)
    with (  # re-entrant in one thread
        push_lock(path, "kaspi_amocrm", "amocrm", timeout_s=0),
        push_lock(path, "kaspi_amocrm", "amocrm", timeout_s=0),
    ):
        pass


def test_the_lock_dies_with_a_killed_process(tmp_path: Path) -> None:
    """Guards the OS-level lock: a SIGKILLed push leaves nothing behind that blocks the next one."""
    path = tmp_path / "warehouse.duckdb"
    script = (
        "import sys, time; from pathlib import Path; from integration_sync.sync.push_lock import push_lock\n"
        "with push_lock(Path(sys.argv[1]), 'abcp_bitrix24', 'bitrix24', run_id='doomed'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(PushBusyError, match="doomed"), push_lock(path, "abcp_bitrix24", "bitrix24", timeout_s=0.2):
            pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert lock_path(path, "abcp_bitrix24", "bitrix24").exists()  # the file stays; the lock does not
    with push_lock(path, "abcp_bitrix24", "bitrix24", timeout_s=0):
        pass


def test_the_timeout_comes_from_the_environment_and_a_bad_value_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUSH_LOCK_TIMEOUT_S", "soon")
    with pytest.raises(ValueError, match="PUSH_LOCK_TIMEOUT_S"), push_lock(tmp_path / "w.duckdb", "f", "t"):
        pass
