"""amoCRM as the sync engine's destination for Kaspi orders: a lead per order, with contact, items, note.

Cost per new order is a fraction of a request: leads go 50 per request (`leads/complex` when the
customer's contact is new, plain `leads` with the known contact id otherwise), notes and catalog
links through the bulk endpoints, products and contacts resolved from local indexes (product code →
catalog element here, phone → contact in the account's shared contact index, `targets.amocrm_contacts`)
kept in the warehouse and refreshed from amoCRM only when there is something to create. Every create
is first matched against the shared index of the pipeline's leads by order code
(`targets.amocrm_leads`), so a lost warehouse never makes a second lead. The summary note goes last:
a lead with its note is complete; one without is completed after a bulk look at its notes (an answer
can be lost after the note was made), never created again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from integration_sync.connectors.amocrm import AmoCrmClient, CatalogElement
from integration_sync.connectors.errors import AmbiguousWriteError, ApiError
from integration_sync.defs.kaspi_amocrm.mapping import LeadSettings
from integration_sync.sync.engine import Change, Outcome
from integration_sync.targets.amocrm_contacts import AmoContactIndex, phone_key
from integration_sync.targets.amocrm_leads import AmoLeadIndex, LeadKeyRule, LeadRef

BATCH = 50
COMPLETE = "lead_complete"
LEAD_PREFIX = "Kaspi №"
KEY_KIND = "kaspi order code"


def lead_rule(settings: LeadSettings) -> LeadKeyRule:
    """How a Kaspi lead names its order: the order-code field when configured, else `Kaspi №{code}`."""
    return LeadKeyRule(
        kind=KEY_KIND, pipeline_id=settings.pipeline_id, field_id=settings.order_code_field_id, name_prefix=LEAD_PREFIX
    )


def is_order_note(text: str, code: str) -> bool:
    return text.split("\n", 1)[0].strip() == f"Заказ Kaspi №{code}"


def _chunks(items: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _fields(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"field_id": int(field_id), "values": [{"value": value}]} for field_id, value in values.items()]


@dataclass
class CatalogSettings:
    """How products are recognised in the amoCRM catalog (SKU/PRICE fields are optional in the seed)."""

    sku_field_id: int | None = None
    price_field_id: int | None = None


@dataclass
class Indexes:
    """A lookup that saves requests: product code → catalog element id."""

    elements_by_code: dict[str, str] = field(default_factory=dict)
    new_elements: dict[str, str] = field(default_factory=dict)


class KaspiLeadsDestination:
    """Pushes Kaspi orders to amoCRM leads."""

    name = "amocrm"
    # An order is in amoCRM once its lead, note and links are: a lead found without this marker is
    # completed, never created again.
    primary_entity = COMPLETE
    batch_size = BATCH

    def __init__(
        self,
        client: AmoCrmClient,
        settings: LeadSettings,
        catalog: CatalogSettings,
        indexes: Indexes,
        leads: AmoLeadIndex,
        contacts: AmoContactIndex,
    ) -> None:
        self.client = client
        self.settings = settings
        self.catalog = catalog
        self.indexes = indexes
        self.leads = leads
        self.contacts = contacts
        # lead id → whether its summary note is in amoCRM, for leads looked at in this run
        self._noted: dict[str, bool] = {}
        # lead id → the lead as read from amoCRM in this run (spares a PATCH that would change nothing)
        self._seen: dict[str, LeadRef] = {}

    def requests_used(self) -> int:
        return int(self.client.requests_used)

    # ---- identity -------------------------------------------------------------------------

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        """Every create is matched by its order code against the index of the pipeline's leads; a lead
        found with its summary note is complete, one without is completed by `push`."""
        self.leads.refresh(self.client, again=any(c.in_flight for c in changes))
        found: dict[str, dict[str, str]] = {}
        for key, ref in self.leads.find(c.key for c in changes).items():
            ids = {"lead": ref.lead_id}
            if ref.contact_id:
                ids["contact"] = ref.contact_id
            found[key] = ids
            if ref.status_id is not None:
                self._seen[ref.lead_id] = ref
        noted = self._check_notes({key: ids["lead"] for key, ids in found.items()})
        for ids in found.values():
            if ids["lead"] in noted:
                ids[COMPLETE] = ids["lead"]
        return found

    def _check_notes(self, leads: Mapping[str, str]) -> set[str]:
        """Which of these leads (order code → lead id) already carry their order's note: one bulk read
        per 50 leads not looked at yet in this run."""
        unknown = sorted({int(lead) for lead in leads.values() if lead not in self._noted})
        if unknown:
            code_of = {lead: key for key, lead in leads.items()}
            notes = self.client.list_notes(unknown, note_type="common")
            self._noted.update({str(lead_id): False for lead_id in unknown})
            for note in notes:
                owner = str(note.entity_id)
                text = note.text
                if owner in code_of and is_order_note(text, code_of[owner]):
                    self._noted[owner] = True
        return {lead for lead in leads.values() if self._noted.get(lead)}

    # ---- writes ---------------------------------------------------------------------------

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        creates = [c for c in changes if "lead" not in c.target_ids]
        completes = [c for c in changes if "lead" in c.target_ids and not c.target_ids.get(COMPLETE)]
        updates = [c for c in changes if c.target_ids.get(COMPLETE)]
        outcomes: list[Outcome] = []
        if creates:
            self.contacts.refresh(self.client)
            self._ensure_elements(creates)
            outcomes += self._create(creates)
        if completes:
            self._ensure_elements(completes)
            outcomes += self._finish({c.key: dict(c.target_ids) for c in completes}, completes)
        if updates:
            outcomes += self._update(updates)
        return outcomes

    def _create(self, creates: Sequence[Change]) -> list[Outcome]:
        ids: dict[str, dict[str, str]] = {}
        first_of_phone: dict[str, Change] = {}
        later: list[Change] = []
        for change in creates:
            phone = change.payload["contact"]["phone"]
            known = change.target_ids.get("contact") or self._contact_of(phone)
            if known:
                ids[change.key] = {"contact": str(known)}
                later.append(change)
            elif phone in first_of_phone:
                later.append(change)  # same new customer twice in a chunk: one contact, made once
            else:
                first_of_phone[phone] = change
        complex_items = [(c, self._lead_body(c, contact_id=None)) for c in first_of_phone.values()]
        for chunk in _chunks(complex_items):
            answer = self.client.create_leads_complex([body for _, body in chunk])
            for (change, _), created in zip(chunk, answer, strict=True):
                contact_id = None if created.contact_id is None else str(created.contact_id)
                ids[change.key] = {"lead": str(created.id)}
                if contact_id is not None:  # an answer without the contact's id: matched by phone next run
                    ids[change.key]["contact"] = contact_id
                    self._remember_contact(change.payload["contact"]["phone"], contact_id)
                self.leads.remember(change.key, LeadRef(str(created.id), contact_id))
        plain = []
        for change in later:
            contact = ids.get(change.key, {}).get("contact") or self._contact_of(change.payload["contact"]["phone"])
            if contact:
                ids.setdefault(change.key, {})["contact"] = str(contact)
            ids.setdefault(change.key, {})
            plain.append((change, self._lead_body(change, contact_id=contact)))
        for chunk in _chunks(plain):
            created_leads = self.client.create_leads([body for _, body in chunk])
            for (change, _), lead in zip(chunk, created_leads, strict=True):
                ids[change.key]["lead"] = str(lead.id)
                self.leads.remember(change.key, LeadRef(str(lead.id), ids[change.key].get("contact")))
        return self._finish(ids, creates)

    def _lead_body(self, change: Change, contact_id: str | None) -> dict[str, Any]:
        lead = change.payload["lead"]
        body: dict[str, Any] = {
            "name": lead["name"],
            "price": lead["price"],
            "pipeline_id": lead["pipeline_id"],
            "status_id": lead["status_id"],
            "responsible_user_id": lead["responsible_user_id"],
            "created_at": lead["created_at"],
            "request_id": change.key,
        }
        if lead["custom_fields"]:
            body["custom_fields_values"] = _fields(lead["custom_fields"])
        contact = change.payload["contact"]
        if contact_id is not None:
            body["_embedded"] = {"contacts": [{"id": int(contact_id)}]}
        else:
            values = [{"field_code": "PHONE", "values": [{"value": contact["phone"], "enum_code": "MOB"}]}]
            values += _fields(contact["custom_fields"])
            body["_embedded"] = {
                "contacts": [
                    {
                        "name": contact["name"],
                        "responsible_user_id": lead["responsible_user_id"],
                        "custom_fields_values": values,
                    }
                ]
            }
        return body

    def _finish(self, ids: dict[str, dict[str, str]], changes: Sequence[Change]) -> list[Outcome]:
        """Add each lead's catalog links, then its note; a lead stays "not done" until both are in.
        (Leads of earlier attempts reach here only when `resolve` found no note of theirs.)"""
        ready = [c for c in changes if ids.get(c.key, {}).get("lead")]
        try:
            # a lead-element link is one per pair in amoCRM: sending it again only sets the quantity
            links = [
                (
                    int(ids[c.key]["lead"]),
                    int(self.indexes.elements_by_code[item["code"]]),
                    item["quantity"],
                    self.settings.catalog_id,
                )
                for c in ready
                for item in c.payload["items"]
            ]
            for chunk in _chunks(links):
                self.client.link_catalog_elements(list(chunk))
            notes = [(int(ids[c.key]["lead"]), c.payload["note"]) for c in ready]
            for chunk in _chunks(notes):
                self.client.add_notes(list(chunk))
                for lead, _ in chunk:
                    self._noted[str(lead)] = True
        except (ApiError, AmbiguousWriteError) as exc:
            for c in ready:  # an answer may have been lost after the write: look again next time
                self._noted.pop(ids[c.key]["lead"], None)
            return [
                Outcome(c.key, "rejected", c.operation, ids.get(c.key, {}), f"lead made, note/items not: {exc}")
                for c in changes
            ]
        outcomes = []
        for change in changes:
            got = ids.get(change.key, {})
            if got.get("lead"):
                outcomes.append(Outcome(change.key, "succeeded", change.operation, {**got, COMPLETE: got["lead"]}))
            else:
                outcomes.append(Outcome(change.key, "rejected", change.operation, got, "amoCRM returned no lead"))
        return outcomes

    def _update(self, updates: Sequence[Change]) -> list[Outcome]:
        """A status (or price) change: PATCH only what changed; a move to 142/143 carries pipeline_id.
        With no previous push on record (a lost warehouse), the lead as read in this run is the base."""
        bodies = []
        for change in updates:
            lead = change.payload["lead"]
            old = (change.previous or {}).get("lead") or {}
            seen = self._seen.get(change.target_ids["lead"]) if change.previous is None else None
            if seen is not None:
                old = {"status_id": seen.status_id, "pipeline_id": seen.pipeline_id, "price": seen.price}
            body: dict[str, Any] = {"id": int(change.target_ids["lead"])}
            if (
                old.get("status_id") != lead["status_id"]
                or old.get("pipeline_id", lead["pipeline_id"]) != lead["pipeline_id"]
                or (change.previous is None and seen is None)
            ):
                body["status_id"] = lead["status_id"]
                body["pipeline_id"] = lead["pipeline_id"]
            if old.get("price") != lead["price"]:
                body["price"] = lead["price"]
            if len(body) > 1:
                bodies.append(body)
        for chunk in _chunks(bodies):
            self.client.update_leads(list(chunk))
        return [Outcome(c.key, "succeeded", "update", dict(c.target_ids)) for c in updates]

    # ---- indexes --------------------------------------------------------------------------

    def _contact_of(self, phone: str) -> str | None:
        key = phone_key(phone, self.settings.default_country)
        return self.contacts.get(key) if key else None

    def _remember_contact(self, phone: str, contact_id: str) -> None:
        key = phone_key(phone, self.settings.default_country)
        if key:
            self.contacts.remember([key], contact_id)

    def _ensure_elements(self, changes: Sequence[Change]) -> None:
        """Every product code of these orders has a catalog element: found by code, else created."""
        wanted: dict[str, dict[str, Any]] = {}
        for change in changes:
            for item in change.payload["items"]:
                if item["code"] not in self.indexes.elements_by_code:
                    wanted.setdefault(item["code"], item)
        if not wanted:
            return
        for element in self.client.iter_catalog_elements(self.settings.catalog_id):
            code = self._element_code(element)
            if code and code not in self.indexes.elements_by_code:
                self.indexes.elements_by_code[code] = str(element.id)
                self.indexes.new_elements[code] = str(element.id)
        missing = [item for code, item in wanted.items() if code not in self.indexes.elements_by_code]
        for chunk in _chunks(missing):
            bodies = [self._element_body(item) for item in chunk]
            created = self.client.create_catalog_elements(self.settings.catalog_id, bodies)
            for item, element in zip(chunk, created, strict=True):
                self.indexes.elements_by_code[item["code"]] = str(element.id)
                self.indexes.new_elements[item["code"]] = str(element.id)

    def _element_code(self, element: CatalogElement) -> str | None:
        sku_id = self.catalog.sku_field_id
        for item in element.custom_fields_values or []:
            if ((sku_id and item.field_id == sku_id) or item.field_code == "SKU") and item.values:
                return str(item.values[0].value)
        name = element.name or ""
        if name.endswith("]") and " [" in name:
            return name.rsplit(" [", 1)[1][:-1]
        return None

    def _element_body(self, item: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if self.catalog.sku_field_id:
            values[str(self.catalog.sku_field_id)] = item["code"]
        if self.catalog.price_field_id:
            values[str(self.catalog.price_field_id)] = item["price"]
        name = item["name"] if self.catalog.sku_field_id else f"{item['name']} [{item['code']}]"
        body: dict[str, Any] = {"name": name, "request_id": item["code"]}
        if values:
            body["custom_fields_values"] = _fields(values)
        return body
