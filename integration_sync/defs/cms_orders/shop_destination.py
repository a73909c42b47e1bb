"""The shop's order statuses as the sync engine's destination (deal stages → shop statuses).

A change's key is the shop's order id and its payload's ``status_id`` the status to set. Setting a
status is idempotent (the shop answers ``changed: false`` when the order already has it), so nothing
needs looking up first (`resolve` finds nothing) and a change whose answer was lost is simply sent
again. Per record: the shop's refusal (404 unknown order, 422 unknown status) rejects that record
with the shop's message, for the engine's retry log, and the others go on. An outage (5xx or a
timeout after the client's retries) or a refused key raises: the engine puts the chunk back as it was
(no attempt counted) for the next run; the records of the chunk already set are set again then, at
no harm.
"""

from __future__ import annotations

from collections.abc import Sequence

from integration_sync.connectors.bitrix_shop import BitrixShopClient, ShopRefused
from integration_sync.sync.engine import Change, Outcome

ORDER = "order"


class ShopStatusDestination:
    """Sets each order's status through the shop's key-protected endpoint, one request per order."""

    name = "bitrix_cms"
    primary_entity = ORDER
    batch_size = 50  # orders per engine chunk (each is its own request: the shop has no batch call)

    def __init__(self, client: BitrixShopClient) -> None:
        self.client = client
        self.counts: dict[str, int] = {"statuses_changed": 0, "statuses_already_there": 0}

    def requests_used(self) -> int:
        return self.client.requests_used

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        return {}  # idempotent: an order is never "created twice"

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for change in changes:
            status = change.payload.get("status_id")
            key = change.key.strip()
            if not (key.isascii() and key.isdigit() and int(key) > 0):
                outcomes.append(Outcome(change.key, "rejected", change.operation, message=f"not an order id: {key!r}"))
                continue
            if not isinstance(status, str) or not status.strip():
                outcomes.append(Outcome(change.key, "rejected", change.operation, message="no status_id to set"))
                continue
            try:
                changed = self.client.set_status(int(key), status)
            except ShopRefused as refused:
                message = f"shop refused status {status}: {refused.message} (HTTP {refused.status})"
                outcomes.append(Outcome(change.key, "rejected", change.operation, message=message))
                continue
            self.counts["statuses_changed" if changed else "statuses_already_there"] += 1
            outcomes.append(Outcome(change.key, "succeeded", change.operation, {ORDER: change.key}))
        return outcomes
