"""Token-bucket rate limiter, in-process or shared by several processes through a state file.

``acquire()`` reserves one token and sleeps until it is due (no busy loop): the bucket may go
negative, and each caller waits ``-tokens / rate`` seconds, so callers queue in order.
``penalize(seconds)`` blocks every holder (in every process sharing the state file) until the
penalty ends and empties the bucket, after a throttle answer from the service.

With ``window=(n, seconds)`` the limiter also keeps the service's own rule, "at most n requests in
any window of that many seconds", as the service sees it: a request counts from when it is sent
until ``seconds`` after its answer came back (``finished()``). An even pace at the service's rate is
not enough: a request that reaches the service late (a slow network, a descheduled thread) shares a
window with the requests paced after it, and the service answers 429. Anchored on the answer, the
request ``n`` places later can never share its window, whatever the delays; so the bucket can pace
at the service's full rate.

With ``state_path`` the state (tokens, last refill time, blocked-until) lives in a small JSON file
guarded by an exclusive ``filelock`` lock held only for the read-modify-write, never while sleeping.
Wall-clock time (``time.time``) is used because it is shared between processes.

``BlockFlag`` is the "stop everything" switch of one service (amoCRM's 403 block page): tripped by
one process, it stops every process sharing its file until an operator clears it or a cool-down
passes.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

logger = logging.getLogger(__name__)


@dataclass
class _State:
    tokens: float
    updated_at: float
    blocked_until: float = 0.0
    # [ticket, until] per request still counted in the service's window (``window`` only)
    recent: list[list[Any]] = field(default_factory=list)


class RateLimiter:
    """A token bucket: ``rate_per_s`` tokens per second, at most ``burst`` stored."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        state_path: str | Path | None = None,
        name: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        window: tuple[int, float] | None = None,
        hold_s: float = 60.0,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if window is not None and (window[0] < 1 or window[1] <= 0):
            raise ValueError("window must be (at least 1 request, a positive number of seconds)")
        self.window = window
        self.hold_s = hold_s  # how long a request never reported finished (a crashed process) counts
        self._local = threading.local()
        self._tickets = itertools.count()
        self.rate = float(rate_per_s)
        self.burst = int(burst)
        self.name = name
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._path = Path(state_path) if state_path is not None else None
        self._file_lock = FileLock(str(self._path) + ".lock") if self._path is not None else None
        self._memory = _State(tokens=float(self.burst), updated_at=clock())
        self.waited_s = 0.0  # total time this instance spent sleeping in acquire()

    # -- state storage -------------------------------------------------------------------------

    def _load(self, now: float) -> _State:
        if self._path is None:
            return self._memory
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
            return _State(
                tokens=float(raw["tokens"]),
                updated_at=float(raw["updated_at"]),
                blocked_until=float(raw.get("blocked_until", 0.0)),
                recent=[[str(ticket), float(until)] for ticket, until in raw.get("recent", [])],
            )
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return _State(tokens=float(self.burst), updated_at=now)

    def _save(self, state: _State) -> None:
        if self._path is None:
            self._memory = state
            return
        tmp = self._path.with_name(f"{self._path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(asdict(state)), encoding="utf-8")
        os.replace(tmp, self._path)

    def _update(self, change: Callable[[_State, float], float]) -> float:
        """Run ``change(state, now)`` under the locks, persist, return its result."""
        with self._lock:
            if self._file_lock is not None and self._path is not None:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                with self._file_lock:
                    return self._apply(change)
            return self._apply(change)

    def _apply(self, change: Callable[[_State, float], float]) -> float:
        now = self._clock()
        state = self._load(now)
        elapsed = max(0.0, now - state.updated_at)
        state.tokens = min(float(self.burst), state.tokens + elapsed * self.rate)
        state.updated_at = now
        result = change(state, now)
        self._save(state)
        return result

    # -- public API ----------------------------------------------------------------------------

    def acquire(self) -> float:
        """Take one token, sleeping until it is available. Returns the seconds waited."""

        def reserve(state: _State, now: float) -> float:
            state.tokens -= 1.0
            wait = -state.tokens / self.rate if state.tokens < 0 else 0.0
            return max(wait, state.blocked_until - now)

        waited = 0.0
        wait = self._update(reserve)
        while wait > 0:
            self._sleep(wait)
            waited += wait
            # a penalty may have been imposed while we slept: honour it before going ahead
            wait = self._update(lambda state, now: max(0.0, state.blocked_until - now))
        if self.window is not None:
            waited += self._take_slot()
        self.waited_s += waited
        return waited

    def _take_slot(self) -> float:
        """Wait for a place in the service's window and hold it until ``finished()``."""
        assert self.window is not None
        limit, _ = self.window
        ticket = f"{os.getpid()}.{threading.get_ident()}.{next(self._tickets)}"

        def take(state: _State, now: float) -> float:
            state.recent = [entry for entry in state.recent if entry[1] > now]
            if now < state.blocked_until:
                return state.blocked_until - now
            if len(state.recent) < limit:
                state.recent.append([ticket, now + self.hold_s])
                return 0.0
            ends = sorted(until for _, until in state.recent)
            return float(ends[len(ends) - limit]) - now

        waited = 0.0
        while (wait := self._update(take)) > 0:
            self._sleep(wait)
            waited += wait
        self._local.ticket = ticket
        return waited

    def finished(self) -> None:
        """The request this thread last acquired for has its answer (or failed): with a ``window``, it
        counts for ``window[1]`` seconds from now. Without a window, nothing to do."""
        ticket = getattr(self._local, "ticket", None)
        if self.window is None or ticket is None:
            return
        self._local.ticket = None
        until = self.window[1]

        def release(state: _State, now: float) -> float:
            for entry in state.recent:
                if entry[0] == ticket:
                    entry[1] = now + until
            return 0.0

        self._update(release)

    def penalize(self, seconds: float) -> None:
        """Block every holder for ``seconds`` from now and drain the bucket (after a throttle)."""
        if seconds <= 0:
            return

        def block(state: _State, now: float) -> float:
            state.blocked_until = max(state.blocked_until, now + seconds)
            state.tokens = min(state.tokens, 0.0)
            return 0.0

        self._update(block)
        logger.info("rate limiter %s: penalized for %.2f s", self.name, seconds)

    def blocked_for(self) -> float:
        """Seconds left of the current penalty (0 when none)."""
        return self._update(lambda state, now: max(0.0, state.blocked_until - now))

    def available(self) -> float:
        """Tokens currently in the bucket (negative when callers are queued)."""
        return self._update(lambda state, now: state.tokens)


@dataclass(frozen=True)
class BlockInfo:
    """An active block: when it was recorded, when it lapses (epoch seconds), and why."""

    since: float
    until: float
    reason: str
    status: int | None = None

    def describe(self) -> str:
        def iso(ts: float) -> str:
            return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")

        return f"blocked since {iso(self.since)} until {iso(self.until)} ({self.reason})"


class BlockFlag:
    """A "stop calling this service" flag shared by every process through a small JSON file.

    ``trip()`` records the block with a timestamp; ``active()`` tells whether it still holds (it
    lapses after ``cooldown_s``, so one probe request goes out per cool-down at most); ``clear()``
    is the operator's switch (deleting the file does the same). Without ``state_path`` the flag
    lives in this process only.
    """

    def __init__(
        self,
        *,
        name: str,
        state_path: str | Path | None = None,
        cooldown_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if cooldown_s <= 0:
            raise ValueError("cooldown_s must be positive")
        self.name = name
        self.cooldown_s = float(cooldown_s)
        self.path = Path(state_path) if state_path is not None else None
        self._clock = clock
        self._lock = threading.Lock()
        self._file_lock = FileLock(str(self.path) + ".lock") if self.path is not None else None
        self._memory: BlockInfo | None = None

    def _read(self) -> BlockInfo | None:
        if self.path is None:
            return self._memory
        try:
            raw: Any = json.loads(self.path.read_text(encoding="utf-8"))
            return BlockInfo(
                since=float(raw["since"]),
                until=float(raw["until"]),
                reason=str(raw.get("reason", "")),
                status=int(raw["status"]) if raw.get("status") is not None else None,
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            # a damaged file still means someone recorded a block: honour it for one cool-down
            # from the file's modification time (an operator clears it by deleting the file)
            try:
                since = self.path.stat().st_mtime
            except OSError:
                return None
            return BlockInfo(since=since, until=since + self.cooldown_s, reason="unreadable block file")

    def active(self) -> BlockInfo | None:
        """The current block, or None when there is none or it has lapsed."""
        info = self._read()
        if info is None or info.until <= self._clock():
            return None
        return info

    def trip(self, reason: str, *, status: int | None = None, cooldown_s: float | None = None) -> BlockInfo:
        """Record a block from now for ``cooldown_s`` (default: the flag's cool-down)."""
        now = self._clock()
        info = BlockInfo(since=now, until=now + (cooldown_s or self.cooldown_s), reason=reason[:500], status=status)
        with self._lock:
            if self.path is None or self._file_lock is None:
                self._memory = info
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                record = {**asdict(info), "since_iso": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")}
                with self._file_lock:
                    tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                    tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
                    os.replace(tmp, self.path)
        logger.error("%s: calls suspended: %s", self.name, info.describe())
        return info

    def clear(self) -> bool:
        """Lift the block (operator action). True when there was a record to remove."""
        with self._lock:
            if self.path is None or self._file_lock is None:
                had = self._memory is not None
                self._memory = None
                return had
            with self._file_lock:
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    return False
        logger.warning("%s: block cleared", self.name)
        return True
