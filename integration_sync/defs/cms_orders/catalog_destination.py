"""Bitrix24 as the destination of the shop's catalog products and of its users as contacts.

Products: found by our XML_ID (``cms:<id>``), else adopted by their exact name (a manager may have
made them by hand), else added; 50 commands a batch. Users: found by ORIGIN_ID (``user:<id>``, with
our ORIGINATOR_ID), else by phone or email (the shared helper's `crm.duplicate.findbycomm`), else
added; phones and emails only ever appended. A command failing inside a batch rejects its record only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from integration_sync.connectors.bitrix24 import BATCH_LIMIT, Bitrix24Client
from integration_sync.defs.cms_orders.mapping import ORIGINATOR_ID
from integration_sync.sync.engine import Change, Outcome
from integration_sync.targets.bitrix24 import Bitrix24Crm, ContactWrite, DealWrite, KeyLookup, chunks, differing

PRODUCT = "product"
USER_CONTACT = "user_contact"


class ProductsDestination:
    """The shop's products in the portal's CRM catalog."""

    name = "bitrix24"
    primary_entity = PRODUCT
    batch_size = BATCH_LIMIT

    def __init__(self, client: Bitrix24Client) -> None:
        self.client = client
        self.crm = Bitrix24Crm(client)
        self._seen: dict[str, dict[str, Any]] = {}
        self.counts = {"products_added": 0, "products_adopted": 0, "products_updated": 0}

    def requests_used(self) -> int:
        return self.client.stats.requests

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        by_xml, by_name = self.crm.lookup(
            [
                KeyLookup("crm.product.list", "XML_ID", [c.payload["XML_ID"] for c in changes], ["NAME", "PRICE"]),
                KeyLookup("crm.product.list", "NAME", [c.payload["NAME"] for c in changes], ["XML_ID", "PRICE"]),
            ]
        )
        found: dict[str, dict[str, str]] = {}
        for change in changes:
            rows = by_xml.get(change.payload["XML_ID"])
            if not rows:  # adopt a product made by hand with the same name, unless it is another's of ours
                rows = [
                    r for r in by_name.get(change.payload["NAME"], []) if not str(r.get("XML_ID")).startswith("cms:")
                ]
                if rows:
                    self.counts["products_adopted"] += 1
            if rows:
                self._seen[str(rows[0]["ID"])] = rows[0]
                found[change.key] = {PRODUCT: str(rows[0]["ID"])}
        return found

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        commands: dict[str, tuple[str, dict[str, Any]]] = {}
        for n, change in enumerate(changes):
            product_id = change.target_ids.get(PRODUCT)
            if product_id is None:
                commands[f"a{n}"] = ("crm.product.add", {"fields": dict(change.payload)})
                continue
            seen = self._seen.get(product_id)
            previous = change.previous or {}
            fields = (
                differing(change.payload, seen)
                if seen is not None and not previous
                else {k: v for k, v in change.payload.items() if previous.get(k) != v}
            )
            if fields:
                commands[f"u{n}"] = ("crm.product.update", {"id": product_id, "fields": fields})
        results: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for chunk in chunks(list(commands.items()), BATCH_LIMIT):
            answer = self.client.batch(dict(chunk), halt=False)
            results.update(answer.results)
            errors.update({k: f"{e.error or 'error'}: {e.description}" for k, e in answer.errors.items()})
        outcomes: list[Outcome] = []
        for n, change in enumerate(changes):
            ids = dict(change.target_ids)
            if f"a{n}" in results:
                ids[PRODUCT] = str(results[f"a{n}"])
                self.counts["products_added"] += 1
            elif f"u{n}" in results:
                self.counts["products_updated"] += 1
            error = errors.get(f"a{n}") or errors.get(f"u{n}")
            if error is not None or (f"a{n}" in commands and PRODUCT not in ids):
                outcomes.append(Outcome(change.key, "rejected", change.operation, ids, error or "no answer"))
            else:
                outcomes.append(Outcome(change.key, "succeeded", change.operation, ids))
        return outcomes


class UserContactsDestination:
    """The shop's users as Bitrix24 contacts (the seed's import of users)."""

    name = "bitrix24"
    primary_entity = USER_CONTACT
    batch_size = BATCH_LIMIT

    def __init__(self, client: Bitrix24Client, region: str) -> None:
        self.client = client
        self.crm = Bitrix24Crm(client, region=region)
        self._present: dict[str, set[str]] = {}
        self.counts = {"contacts_matched": 0}

    def requests_used(self) -> int:
        return self.client.stats.requests

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        (by_origin,) = self.crm.lookup(
            [
                KeyLookup(
                    "crm.contact.list",
                    "ORIGIN_ID",
                    [c.payload["ORIGIN_ID"] for c in changes],
                    ["PHONE", "EMAIL"],
                    {"ORIGINATOR_ID": ORIGINATOR_ID},
                )
            ]
        )
        found: dict[str, dict[str, str]] = {}
        rest: list[Change] = []
        for change in changes:
            rows = by_origin.get(change.payload["ORIGIN_ID"])
            if rows:
                found[change.key] = {USER_CONTACT: str(rows[0]["ID"])}
            else:
                rest.append(change)
        matches = self.crm.match_contacts(
            [p for c in rest for p in c.payload["PHONE"]], [e for c in rest for e in c.payload["EMAIL"]]
        )
        for change in rest:
            match = next(
                (matches[v] for v in [*change.payload["PHONE"], *change.payload["EMAIL"]] if v in matches), None
            )
            if match is not None:
                found[change.key] = {USER_CONTACT: match}
                self.counts["contacts_matched"] += 1
        wanted = [ids[USER_CONTACT] for ids in found.values()]
        self._present.update(self.crm.contact_comms(wanted) if wanted else {})
        return found

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        writes: list[DealWrite] = []
        for change in changes:
            payload = change.payload
            contact_id = change.target_ids.get(USER_CONTACT)
            scalars = {k: payload[k] for k in ("NAME", "LAST_NAME") if payload[k]}
            if contact_id is None:
                contact = ContactWrite({**scalars, "ORIGINATOR_ID": ORIGINATOR_ID, "ORIGIN_ID": payload["ORIGIN_ID"]},
                                       payload["PHONE"], payload["EMAIL"])  # fmt: skip
            else:
                previous = change.previous or {}
                present = self._present.get(contact_id)
                if present is None:
                    present = {*(previous.get("PHONE") or []), *(previous.get("EMAIL") or [])}
                changed = {k: v for k, v in scalars.items() if previous and previous.get(k) != v}
                contact = ContactWrite(changed, payload["PHONE"], payload["EMAIL"], contact_id, frozenset(present))
            writes.append(DealWrite(change.key, None, contact=contact))
        by_key = {c.key: c for c in changes}
        outcomes: list[Outcome] = []
        for result in self.crm.write(writes):
            change = by_key[result.key]
            ids = {**change.target_ids, **({USER_CONTACT: result.contact_id} if result.contact_id else {})}
            if result.ok:
                outcomes.append(Outcome(change.key, "succeeded", change.operation, ids))
            else:
                outcomes.append(Outcome(change.key, "rejected", change.operation, ids, result.error or ""))
        return outcomes
