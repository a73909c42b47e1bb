"""What every emulator that calls us back shares (amoCRM's status hooks, the shop's order agent): a
queue of deliveries sent from one background thread — never inside the API request that caused them —
each re-sent on the service's schedule until it is answered as the service wants, and a log of every
attempt for the tests. A sandbox reset forgets the queue, the log, and any answer still in flight."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from integration_sync.sandbox.core import JsonDict

IDLE_EXIT_S = 2.0


@dataclass
class Delivery:
    """One message to one address; `context` is what the service keeps with it (a hook, an order id)."""

    id: int
    url: str
    body: bytes
    headers: Mapping[str, str]
    context: Any = None
    attempt: int = 0
    due: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Outbox:
    """Sends deliveries from its own thread. A service says what an accepted answer is (`accepted`),
    when to try again (`retry_delay`, in the service's own seconds, scaled by `time_scale`; None: stop)
    and what its attempt log shows (`record`)."""

    thread_name = "sandbox-outbox"

    def __init__(self, time_scale: float = 1 / 300, timeout_s: float = 2.0) -> None:
        self.time_scale = time_scale
        self.timeout_s = timeout_s
        self.attempts: list[JsonDict] = []
        self._queue: list[Delivery] = []
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._generation = 0

    # ---- what a service decides ------------------------------------------------------------------
    def accepted(self, status: int) -> bool:
        return 200 <= status < 300

    def retry_delay(self, delivery: Delivery, status: int | None) -> float | None:
        return None

    def record(self, delivery: Delivery) -> JsonDict:
        return {}

    def on_reset(self) -> None:
        """Forget what the service keeps beside the queue (called under the lock)."""

    # ---- the machinery ---------------------------------------------------------------------------
    def reset(self, time_scale: float) -> None:
        with self._cond:
            self.time_scale = time_scale
            self._queue.clear()
            self.attempts.clear()
            self._generation += 1
            self.on_reset()
            self._cond.notify_all()

    def enqueue(self, url: str, body: bytes, headers: Mapping[str, str], context: Any = None) -> None:
        """Queue a delivery (call with the lock held: `with outbox.lock:`)."""
        self._queue.append(Delivery(next(self._ids), url, body, dict(headers), context, due=time.monotonic()))
        self._cond.notify_all()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    @property
    def lock(self) -> threading.Condition:
        return self._cond

    def drop_queue(self) -> None:
        with self._cond:
            self._queue.clear()

    def describe(self) -> list[JsonDict]:
        with self._cond:
            return [dict(a) for a in self.attempts]

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            idle_since = time.monotonic()
            while True:
                with self._cond:
                    now = time.monotonic()
                    ready = [d for d in self._queue if d.due <= now]
                    if not ready:
                        if not self._queue and now - idle_since > IDLE_EXIT_S:
                            self._thread = None
                            return
                        wait = min((d.due for d in self._queue), default=now + IDLE_EXIT_S) - now
                        self._cond.wait(max(0.01, min(wait, 0.5)))
                        continue
                    delivery = min(ready, key=lambda d: (d.due, d.id))
                    self._queue.remove(delivery)
                    generation = self._generation
                self._deliver(client, delivery, generation)
                idle_since = time.monotonic()

    def _deliver(self, client: httpx.Client, delivery: Delivery, generation: int) -> None:
        delivery.attempt += 1
        started, status, error = time.time(), None, None
        try:
            status = client.post(delivery.url, content=delivery.body, headers=dict(delivery.headers)).status_code
        except httpx.TimeoutException:
            error = "timeout"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        ok = status is not None and self.accepted(status)
        with self._cond:
            if generation != self._generation:
                return  # the sandbox was reset while this was in flight
            self.attempts.append(
                {
                    "delivery_id": delivery.id,
                    **self.record(delivery),
                    "attempt": delivery.attempt,
                    "at": started,
                    "status": status,
                    "error": error,
                    "ok": ok,
                    "body": delivery.body.decode("utf-8", "replace"),
                }
            )
            if ok:
                return
            delay = self.retry_delay(delivery, status)
            if delay is not None:
                delivery.due = time.monotonic() + delay * self.time_scale
                self._queue.append(delivery)
                self._cond.notify_all()
