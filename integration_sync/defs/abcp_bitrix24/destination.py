"""Bitrix24 as the sync engine's destination for ABCP users: one contact and one deal per user.

Reads and writes go through the shared Bitrix24 CRM helper (`targets/bitrix24.py`): a new user is a
contact add plus a deal add referencing it in the same batch (25 new users per request), a failed
command rejects its user only, and phones/emails are only appended when the contact lacks them.

Identity: before creating, a user's deal is looked up by the ABCP-user-id UF field and its contact
by ORIGINATOR_ID/ORIGIN_ID, 50 ids per command (so a create whose answer was lost, or a whole lost
warehouse, is found, not repeated), then a contact with the same phone or email is reused
(crm.duplicate.findbycomm) instead of duplicated. A deal found that way is compared with what the
lookup read and only the fields that differ are sent. A lookup that fails inside its batch raises:
it never reads as "not found".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from integration_sync.connectors.bitrix24 import Bitrix24Client
from integration_sync.defs.abcp_bitrix24.mapping import ORIGINATOR_ID, DealSettings
from integration_sync.sync.engine import Change, Outcome
from integration_sync.targets.bitrix24 import Bitrix24Crm, ContactWrite, DealWrite, KeyLookup, comm_set, differing

_SCALAR_CONTACT_FIELDS = ("NAME", "SECOND_NAME", "LAST_NAME")


class UserDealsDestination:
    """Pushes ABCP users' contacts and deals to one Bitrix24 portal."""

    name = "bitrix24"
    primary_entity = "deal"
    batch_size = 50  # records per engine chunk; packed into batches of <= 50 commands

    def __init__(self, client: Bitrix24Client, settings: DealSettings) -> None:
        self.client = client
        self.settings = settings
        self.crm = Bitrix24Crm(client, region=settings.default_region)
        # what resolve() saw in Bitrix24 (deal id -> its row, contact id -> phones/emails), so a
        # record matched there without a warehouse history is compared, not re-sent or re-read
        self._seen_deals: dict[str, dict[str, Any]] = {}
        self._seen_contacts: dict[str, set[str]] = {}

    def requests_used(self) -> int:
        return self.client.stats.requests

    # ---- identity -------------------------------------------------------------------------

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        keys = [c.key for c in changes]
        settings = self.settings
        deal_fields = [settings.uf_user_id, "TITLE", settings.uf_inn, settings.uf_saldo, "ORIGINATOR_ID", "ORIGIN_ID"]
        deals, contacts = self.crm.lookup(
            [
                KeyLookup(
                    "crm.deal.list",
                    settings.uf_user_id,
                    keys,
                    ["CONTACT_ID", *deal_fields],
                    {"CATEGORY_ID": settings.category_id},
                ),
                KeyLookup("crm.contact.list", "ORIGIN_ID", keys, ["PHONE", "EMAIL"], {"ORIGINATOR_ID": ORIGINATOR_ID}),
            ]
        )
        found: dict[str, dict[str, str]] = {}
        for key, rows in deals.items():
            row = rows[0]
            ids = {"deal": str(row["ID"])}
            self._seen_deals[ids["deal"]] = row
            if str(row.get("CONTACT_ID") or "0") not in ("", "0"):
                ids["contact"] = str(row["CONTACT_ID"])
            found[key] = ids
        for key, rows in contacts.items():
            for row in rows:
                self._seen_contacts[str(row["ID"])] = comm_set(row, settings.default_region)
            found.setdefault(key, {}).setdefault("contact", str(rows[0]["ID"]))
        self._match_by_comm(changes, found)
        return found

    def _match_by_comm(self, changes: Sequence[Change], found: dict[str, dict[str, str]]) -> None:
        """Reuse an existing contact with the user's phone (first) or email."""
        need = [c for c in changes if "contact" not in found.get(c.key, {}) and "contact" not in c.target_ids]
        phones = [p for c in need for p in c.payload["contact"]["PHONE"]]
        emails = [e for c in need for e in c.payload["contact"]["EMAIL"]]
        matches = self.crm.match_contacts(phones, emails)
        for change in need:
            contact = change.payload["contact"]
            match = next((matches[v] for v in [*contact["PHONE"], *contact["EMAIL"]] if v in matches), None)
            if match is not None:
                found.setdefault(change.key, {})["contact"] = match

    # ---- writes ---------------------------------------------------------------------------

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        current = self._current_multifields(changes)
        by_key = {c.key: c for c in changes}
        writes = [self._write(change, current) for change in changes]
        outcomes: list[Outcome] = []
        for result in self.crm.write(writes):
            change = by_key[result.key]
            ids = dict(change.target_ids)
            if result.contact_id is not None:
                ids["contact"] = result.contact_id
            if result.deal_id is not None:
                ids["deal"] = result.deal_id
            if not result.sent:
                outcomes.append(Outcome(change.key, "succeeded", "update", ids))
            elif result.ok:
                outcomes.append(Outcome(change.key, "succeeded", change.operation, ids))
            else:
                outcomes.append(Outcome(change.key, "rejected", change.operation, ids, result.error or ""))
        order = {c.key: i for i, c in enumerate(changes)}
        return sorted(outcomes, key=lambda o: order[o.key])

    def _write(self, change: Change, current: Mapping[str, set[str]]) -> DealWrite:
        """A user's deal and contact as one write, given what is known of them in Bitrix24."""
        ids = change.target_ids
        payload = change.payload
        contact = payload["contact"]
        if "deal" not in ids:
            fields = {k: contact[k] for k in (*_SCALAR_CONTACT_FIELDS, "ORIGINATOR_ID", "ORIGIN_ID")}
            new_contact = ContactWrite(fields, contact["PHONE"], contact["EMAIL"], ids.get("contact"))
            if new_contact.id is not None:  # a deal for a known contact: the contact is not touched
                new_contact = ContactWrite(id=new_contact.id)
            return DealWrite(change.key, {**payload["deal"], **payload["deal_create"]}, contact=new_contact)
        previous = change.previous or {}
        old_deal = previous.get("deal") or {}
        seen = self._seen_deals.get(ids["deal"]) if not previous else None
        if seen is not None:  # matched in Bitrix24 with no history here: send only what differs there
            deal_diff = differing(payload["deal"], seen)
        else:
            deal_diff = {k: v for k, v in payload["deal"].items() if not previous or old_deal.get(k) != v}
        write = DealWrite(change.key, deal_diff, deal_id=ids["deal"])
        contact_id = ids.get("contact")
        if not contact_id:
            return write
        old = previous.get("contact") or {}
        scalars: dict[str, Any] = {}
        if change.previous is not None:
            scalars = {k: contact[k] for k in _SCALAR_CONTACT_FIELDS if old.get(k) != contact[k]}
        present = current.get(contact_id)
        if present is None:
            present = {*(old.get("PHONE") or []), *(old.get("EMAIL") or [])}
        return DealWrite(
            change.key,
            deal_diff,
            deal_id=ids["deal"],
            contact=ContactWrite(scalars, contact["PHONE"], contact["EMAIL"], contact_id, frozenset(present)),
        )

    def _current_multifields(self, changes: Sequence[Change]) -> dict[str, set[str]]:
        """Phones/emails a contact really has, for updates whose last push is unconfirmed."""
        wanted = {
            c.target_ids["contact"]
            for c in changes
            if "deal" in c.target_ids and "contact" in c.target_ids and (c.in_flight or c.previous is None)
        }
        present = {cid: self._seen_contacts[cid] for cid in wanted if cid in self._seen_contacts}
        missing = wanted - set(present)
        if missing:
            present.update(self.crm.contact_comms(missing))
        return present
