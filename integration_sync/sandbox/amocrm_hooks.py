"""Status webhooks as amoCRM sends them: the form body and a background sender with retries.

The body is ``application/x-www-form-urlencoded`` with PHP bracket keys and the old v2 field names
(``leads[status][0][id]``, ``[status_id]``, ``[pipeline_id]``, ``[old_status_id]``,
``[old_pipeline_id]``, ``account[id]``, ``account[subdomain]``), every value a string, every lead
that changed together in one POST, no signature (api-facts.md, "Seen in recorded real traffic").
Delivery: 2 s to answer 1xx-2xx; otherwise re-sent after 5 and 15 min (after 15 min and 1 h when the
answer was 499/5xx); a hook answering badly more than 100 times in 2 h is disabled (api-facts.md).
The sandbox runs those delays multiplied by ``time_scale`` (1/300 by default: 5 min -> 1 s) on the
real clock, so a test waits seconds, not minutes.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

import httpx

from integration_sync.sandbox.amocrm_schema import FieldSet
from integration_sync.sandbox.amocrm_store import Account, Lead
from integration_sync.sandbox.amocrm_values import StoredValues
from integration_sync.sandbox.core import JsonDict

ANSWER_TIMEOUT_S: Final = 2.0
RETRY_DELAYS_S: Final = (5 * 60.0, 15 * 60.0)
RETRY_DELAYS_5XX_S: Final = (15 * 60.0, 60 * 60.0)
DISABLE_AFTER_BAD: Final = 100
DISABLE_WINDOW_S: Final = 2 * 3600.0
IDLE_EXIT_S: Final = 2.0


def _cf_pairs(prefix: str, fieldset: FieldSet, cf: Mapping[int, StoredValues]) -> list[tuple[str, str]]:
    """Custom fields in the v2 hook shape: text/date as ``values[0]``, selects as ``[value]`` + ``[enum]``."""
    pairs: list[tuple[str, str]] = []
    for k, (field_id, values) in enumerate(sorted(cf.items(), key=lambda kv: fieldset.order.get(kv[0], 0))):
        field = fieldset.by_id.get(field_id)
        base = f"{prefix}[custom_fields][{k}]"
        pairs += [(f"{base}[id]", str(field_id)), (f"{base}[name]", field.name if field else "")]
        for i, value in enumerate(values):
            enum_id = value.get("enum_id")
            if enum_id is not None:
                pairs.append((f"{base}[values][{i}][value]", str(value.get("value", ""))))
                pairs.append((f"{base}[values][{i}][enum]", str(enum_id)))
            else:
                pairs.append((f"{base}[values][{i}]", str(value.get("value", ""))))
    return pairs


def status_form(account: Account, changes: Iterable[tuple[Lead, int, int]]) -> str:
    """One status hook for every (lead, old status, old pipeline) given, in order."""
    profile = account.profile
    pairs: list[tuple[str, str]] = []
    for i, (lead, old_status, old_pipeline) in enumerate(changes):
        p = f"leads[status][{i}]"
        pairs += [
            (f"{p}[id]", str(lead.id)),
            (f"{p}[name]", lead.name),
            (f"{p}[status_id]", str(lead.status_id)),
            (f"{p}[old_status_id]", str(old_status)),
            (f"{p}[price]", str(lead.price or 0)),
            (f"{p}[responsible_user_id]", str(lead.responsible_user_id)),
            (f"{p}[last_modified]", str(lead.updated_at)),
            (f"{p}[modified_user_id]", str(lead.updated_by)),
            (f"{p}[created_user_id]", str(lead.created_by)),
            (f"{p}[date_create]", str(lead.created_at)),
            (f"{p}[pipeline_id]", str(lead.pipeline_id)),
            (f"{p}[old_pipeline_id]", str(old_pipeline)),
            (f"{p}[account_id]", str(profile.account_id)),
        ]
        pairs += _cf_pairs(p, profile.lead_fieldset, lead.cf)
    pairs += [("account[subdomain]", profile.subdomain), ("account[id]", str(profile.account_id))]
    return urlencode(pairs)


@dataclass
class _Delivery:
    id: int
    hook: JsonDict  # the subscription (shared with the account: `disabled` is set on it)
    body: str
    attempt: int = 0
    due: float = 0.0
    failures_5xx: bool = False


class HookSender:
    """Delivers hooks from its own thread (never inside the API request) and records every attempt."""

    def __init__(self, time_scale: float = 1 / 300, timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        self.time_scale = time_scale
        self.timeout_s = timeout_s
        self.attempts: list[JsonDict] = []
        self._queue: list[_Delivery] = []
        self._bad: dict[int, deque[float]] = {}
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._generation = 0

    def reset(self, time_scale: float) -> None:
        """Forget queued deliveries and the attempt log (a sandbox reset)."""
        with self._cond:
            self.time_scale = time_scale
            self._queue.clear()
            self.attempts.clear()
            self._bad.clear()
            self._generation += 1
            self._cond.notify_all()

    def submit(self, hooks: Iterable[JsonDict], body: str) -> None:
        with self._cond:
            for hook in hooks:
                self._queue.append(_Delivery(next(self._ids), hook, body, due=time.monotonic()))
            self._cond.notify_all()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="amocrm-hooks", daemon=True)
                self._thread.start()

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

    def _deliver(self, client: httpx.Client, delivery: _Delivery, generation: int) -> None:
        delivery.attempt += 1
        started = time.time()
        status: int | None = None
        error: str | None = None
        try:
            response = client.post(
                str(delivery.hook["destination"]),
                content=delivery.body.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            status = response.status_code
        except httpx.TimeoutException:
            error = "timeout"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        ok = status is not None and 100 <= status < 300
        with self._cond:
            if generation != self._generation:
                return  # the sandbox was reset while this was in flight
            self.attempts.append(
                {
                    "delivery_id": delivery.id,
                    "hook_id": delivery.hook["id"],
                    "destination": delivery.hook["destination"],
                    "attempt": delivery.attempt,
                    "at": started,
                    "status": status,
                    "error": error,
                    "ok": ok,
                    "body": delivery.body,
                }
            )
            if ok:
                return
            self._record_bad(delivery.hook)
            delivery.failures_5xx = status is not None and (status == 499 or status >= 500)
            delays = RETRY_DELAYS_5XX_S if delivery.failures_5xx else RETRY_DELAYS_S
            if delivery.attempt <= len(delays) and not delivery.hook.get("disabled"):
                delivery.due = time.monotonic() + delays[delivery.attempt - 1] * self.time_scale
                self._queue.append(delivery)
                self._cond.notify_all()

    def _record_bad(self, hook: Mapping[str, object]) -> None:
        hook_id = int(str(hook["id"]))
        window = self._bad.setdefault(hook_id, deque())
        now = time.monotonic()
        window.append(now)
        while window and now - window[0] > DISABLE_WINDOW_S * self.time_scale:
            window.popleft()
        if len(window) > DISABLE_AFTER_BAD and isinstance(hook, dict):
            hook["disabled"] = True
