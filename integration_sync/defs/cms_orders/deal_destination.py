"""Bitrix24 as the destination of the shop's orders: one deal per order, with contact and product rows.

Through the shared helper (`targets/bitrix24.py`): a new order is up to three commands — its contact
(unless its user's contact or a contact with its phone/email exists), the deal, its product rows —
packed 50 commands a batch, so 16 new orders of unknown buyers (25 of known ones) cost one request.
Before creating, deals are looked up by ORIGIN_ID (the order id, with our ORIGINATOR_ID) and buyers
by phone and email in the same batches, so a create whose answer was lost, or a whole lost warehouse,
finds its deal instead of making a second one. An update sends only the fields that changed, the
stage only when the two-way rule says so and the deal is not already there; no deal is deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from integration_sync.connectors.bitrix24 import Bitrix24Client
from integration_sync.defs.cms_orders.mapping import ORIGINATOR_ID
from integration_sync.sync.engine import Change, Outcome
from integration_sync.targets.bitrix24 import Bitrix24Crm, ContactWrite, DealWrite, KeyLookup, differing

DEAL = "deal"
CONTACT = "contact"
_DEAL_SELECT = ["CONTACT_ID", "STAGE_ID", "TITLE", "OPPORTUNITY", "CURRENCY_ID", "COMMENTS", "IS_MANUAL_OPPORTUNITY"]


class ShopDealsDestination:
    """Pushes the shop's orders as deals of one pipeline of the shop's Bitrix24 portal."""

    name = "bitrix24"
    primary_entity = DEAL
    batch_size = 96  # records per engine chunk: one lookup batch, then writes packed 50 commands a batch

    def __init__(self, client: Bitrix24Client, region: str, current_stages: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.current_stages = dict(current_stages or {})  # order key -> the stage its deal is at
        self.crm = Bitrix24Crm(client, region=region)
        self._seen: dict[str, dict[str, Any]] = {}  # deal id -> its row, for a deal found without history
        self.counts = {"deals_found": 0, "contacts_matched": 0, "stage_moves": 0}

    def requests_used(self) -> int:
        return self.client.stats.requests

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        (deals,) = self.crm.lookup(
            [KeyLookup("crm.deal.list", "ORIGIN_ID", [c.key for c in changes], _DEAL_SELECT,
                       {"ORIGINATOR_ID": ORIGINATOR_ID})]
        )  # fmt: skip
        found: dict[str, dict[str, str]] = {}
        for key, rows in deals.items():
            row = rows[0]
            self._seen[str(row["ID"])] = row
            ids = {DEAL: str(row["ID"])}
            if str(row.get("CONTACT_ID") or "0") not in ("", "0"):
                ids[CONTACT] = str(row["CONTACT_ID"])
            found[key] = ids
            self.counts["deals_found"] += 1
        need = [
            c for c in changes if c.key not in found and c.payload["contact"] and not c.payload["contact"].get("id")
        ]
        phones = [p for c in need for p in c.payload["contact"]["PHONE"]]
        emails = [e for c in need for e in c.payload["contact"]["EMAIL"]]
        matches = self.crm.match_contacts(phones, emails)
        for change in need:
            contact = change.payload["contact"]
            match = next((matches[v] for v in [*contact["PHONE"], *contact["EMAIL"]] if v in matches), None)
            if match is not None:
                found.setdefault(change.key, {})[CONTACT] = match
                self.counts["contacts_matched"] += 1
        return found

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        by_key = {c.key: c for c in changes}
        outcomes: list[Outcome] = []
        for result in self.crm.write([self._write(c) for c in changes]):
            change = by_key[result.key]
            ids = dict(change.target_ids)
            if result.deal_id:
                ids[DEAL] = result.deal_id
            if result.contact_id and not result.contact_id.startswith("$"):
                ids[CONTACT] = result.contact_id
            if result.ok:
                outcomes.append(Outcome(change.key, "succeeded", change.operation if result.sent else "update", ids))
            else:
                outcomes.append(Outcome(change.key, "rejected", change.operation, ids, result.error or ""))
        order = {c.key: i for i, c in enumerate(changes)}
        return sorted(outcomes, key=lambda o: order[o.key])

    def _write(self, change: Change) -> DealWrite:
        payload = change.payload
        ids = change.target_ids
        rows = [_row(r) for r in payload["rows"]]
        if DEAL not in ids:
            fields = {**payload["deal"], **payload["create"], "STAGE_ID": payload["stage"]}
            return DealWrite(change.key, fields, contact=self._contact(payload["contact"], ids), product_rows=rows)
        previous = change.previous or {}
        seen = self._seen.get(ids[DEAL]) if not previous else None
        if seen is not None:
            fields = differing(payload["deal"], seen)
        else:
            old = previous.get("deal") or {}
            fields = {k: v for k, v in payload["deal"].items() if old.get(k) != v}
        stage = payload.get("stage")
        current = (seen or {}).get("STAGE_ID") or self.current_stages.get(change.key)
        if stage and stage != current:
            fields["STAGE_ID"] = stage
            self.counts["stage_moves"] += 1
        contact = None
        if CONTACT not in ids and payload["contact"]:  # a buyer known only now: linked to the deal
            known = self._contact(payload["contact"], ids)
            if known is not None and known.id is not None:
                fields["CONTACT_ID"] = known.id
                contact = ContactWrite(id=known.id)
        same_rows = seen is None and previous.get("rows") == payload["rows"]
        return DealWrite(
            change.key, fields, deal_id=ids[DEAL], contact=contact, product_rows=None if same_rows else rows
        )

    @staticmethod
    def _contact(contact: Mapping[str, Any] | None, ids: Mapping[str, str]) -> ContactWrite | None:
        if not contact:
            return None
        known = contact.get("id") or ids.get(CONTACT)
        if known:  # the user's contact, or one matched by phone/email: linked, not rewritten
            return ContactWrite(id=str(known))
        fields = {"NAME": contact["NAME"], "LAST_NAME": contact["LAST_NAME"]}
        return ContactWrite(fields, contact["PHONE"], contact["EMAIL"])


def _row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A product row as `crm.deal.productrows.set` takes it: a catalog product, or a named row."""
    out: dict[str, Any] = {"PRODUCT_NAME": row["PRODUCT_NAME"], "PRICE": row["PRICE"], "QUANTITY": row["QUANTITY"]}
    if row.get("PRODUCT_ID"):
        out["PRODUCT_ID"] = int(row["PRODUCT_ID"])
    return out
