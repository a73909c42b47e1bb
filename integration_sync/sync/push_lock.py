"""The engine's own guard that one flow's push to one target never runs twice at once.

Dagster's pools keep runs that go through its queue in line, but a run launched outside it (the
CLI's `dagster asset materialize`, a second instance, a test) would still overlap. So every push holds
an OS-level exclusive lock on a file beside the warehouse for its whole length: the kernel releases it
when the process dies, however it dies, so a killed run never leaves a stale lock behind (a row in a
table would). A second push waits for the first, then finds the work done; after `timeout_s` it stops
with a message naming the push that holds the lock.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

DEFAULT_TIMEOUT_S = 900.0
TIMEOUT_ENV = "PUSH_LOCK_TIMEOUT_S"


def default_timeout_s() -> float:
    """How long a push waits for another push of the same flow and target (PUSH_LOCK_TIMEOUT_S)."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{TIMEOUT_ENV} must be >= 0, got {raw!r}")
    return value


# Re-entrant per thread: a push body that holds its lock may call code that takes it again.
_held: dict[tuple[str, int], int] = {}
_held_guard = threading.Lock()


class PushBusyError(RuntimeError):
    """Another push of the same flow and target held the lock for longer than this one would wait."""


def lock_path(warehouse_path: Path, flow: str, target: str) -> Path:
    """The lock file of one flow's pushes to one target (the target names the account when there are several)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{flow}.{target}")
    return warehouse_path.parent / "locks" / f"push.{safe}.lock"


def _holder(info_path: Path) -> str:
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return "another process"
    return f"pid {info.get('pid')}, run {info.get('run_id')}, since {info.get('since')}"


@contextmanager
def push_lock(
    warehouse_path: Path,
    flow: str,
    target: str,
    *,
    run_id: str = "",
    timeout_s: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the exclusive push lock of `flow` → `target` for the block (waiting up to `timeout_s`)."""
    path = lock_path(warehouse_path, flow, target)
    key = (str(path), threading.get_ident())
    with _held_guard:
        if _held.get(key):
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    wait = default_timeout_s() if timeout_s is None else timeout_s
    info_path = path.with_suffix(".holder")
    lock = FileLock(str(path), is_singleton=False)
    started = time.monotonic()
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait(f"another push of {flow} to {target} is running ({_holder(info_path)}); waiting for it")
        try:
            lock.acquire(timeout=wait)
        except Timeout:
            raise PushBusyError(
                f"another push of {flow} to {target} is still running ({_holder(info_path)}) after"
                f" {wait:.0f} s; this run stops without sending anything"
            ) from None
    try:
        info_path.write_text(
            json.dumps({"pid": os.getpid(), "run_id": run_id, "since": datetime.now(UTC).isoformat(timespec="seconds")})
        )
        with _held_guard:
            _held[key] = 1
        waited = time.monotonic() - started
        if waited > 1 and on_wait is not None:
            on_wait(f"got the push lock of {flow} to {target} after {waited:.0f} s")
        yield
    finally:
        with _held_guard:
            _held.pop(key, None)
        lock.release()
