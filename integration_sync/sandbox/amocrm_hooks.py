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

import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import urlencode

from integration_sync.sandbox.amocrm_schema import FieldSet
from integration_sync.sandbox.amocrm_store import Account, Lead
from integration_sync.sandbox.amocrm_values import StoredValues
from integration_sync.sandbox.core import JsonDict
from integration_sync.sandbox.outbox import Delivery, Outbox

ANSWER_TIMEOUT_S: Final = 2.0
RETRY_DELAYS_S: Final = (5 * 60.0, 15 * 60.0)
RETRY_DELAYS_5XX_S: Final = (15 * 60.0, 60 * 60.0)
DISABLE_AFTER_BAD: Final = 100
DISABLE_WINDOW_S: Final = 2 * 3600.0


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


class HookSender(Outbox):
    """amoCRM's hook delivery: a 1xx-2xx within 2 s ends it; otherwise re-sent after 5 and 15 min (after
    15 min and 1 h when the answer was 499/5xx); a hook answering badly more than 100 times in 2 h is
    disabled (its subscription's `disabled` flag, shared with the account)."""

    thread_name = "amocrm-hooks"

    def __init__(self, time_scale: float = 1 / 300, timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        super().__init__(time_scale, timeout_s)
        self._bad: dict[int, deque[float]] = {}

    def on_reset(self) -> None:
        self._bad.clear()

    def submit(self, hooks: Iterable[JsonDict], body: str) -> None:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        with self.lock:
            for hook in hooks:
                self.enqueue(str(hook["destination"]), body.encode(), headers, hook)

    def accepted(self, status: int) -> bool:
        return 100 <= status < 300

    def record(self, delivery: Delivery) -> JsonDict:
        return {"hook_id": delivery.context["id"], "destination": delivery.context["destination"]}

    def retry_delay(self, delivery: Delivery, status: int | None) -> float | None:
        hook = delivery.context
        self._record_bad(hook)
        delays = RETRY_DELAYS_5XX_S if status is not None and (status == 499 or status >= 500) else RETRY_DELAYS_S
        if delivery.attempt <= len(delays) and not hook.get("disabled"):
            return delays[delivery.attempt - 1]
        return None

    def _record_bad(self, hook: Mapping[str, object]) -> None:
        hook_id = int(str(hook["id"]))
        window = self._bad.setdefault(hook_id, deque())
        now = time.monotonic()
        window.append(now)
        while window and now - window[0] > DISABLE_WINDOW_S * self.time_scale:
            window.popleft()
        if len(window) > DISABLE_AFTER_BAD and isinstance(hook, dict):
            hook["disabled"] = True
