"""An index of an amoCRM pipeline's leads by an external key (e.g. a Kaspi order code), kept in the warehouse.

Every create of a flow is matched against it first, so a lost or fresh warehouse never makes a
second lead. It is refreshed incrementally like the contact indexes: the first run reads the
pipeline's leads 250 per page, later runs only those updated since the watermark (inclusive: leads
updated in the watermark's second are read again). Entries are keyed by the amoCRM account (its root
URL) and the key kind, so every flow matching the same kind of key on the same account shares them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from integration_sync.connectors.amocrm import MAX_PAGE_SIZE, AmoCrmClient, Lead
from integration_sync.sync.warehouse import Warehouse
from integration_sync.targets.amocrm_index import AccountIndex


@dataclass(frozen=True)
class LeadRef:
    """A lead found for a key, with its main contact; status and price when read in this run."""

    lead_id: str
    contact_id: str | None = None
    status_id: int | None = None
    pipeline_id: int | None = None
    price: float | None = None

    def encode(self) -> str:
        return f"{self.lead_id},{self.contact_id or ''}"

    @classmethod
    def decode(cls, value: str) -> LeadRef:
        lead_id, _, contact_id = value.partition(",")
        return cls(lead_id=lead_id, contact_id=contact_id or None)


@dataclass(frozen=True)
class LeadKeyRule:
    """How a lead carries its external key: a custom field when configured, else its name."""

    kind: str
    pipeline_id: int
    field_id: int | None = None
    name_prefix: str | None = None

    def key_of(self, lead: Lead) -> str | None:
        if self.field_id:
            for value in lead.field_values(self.field_id):
                if value is not None and str(value).strip():
                    return str(value).strip()
        name = str(lead.name or "")
        if self.name_prefix and name.startswith(self.name_prefix) and len(name) > len(self.name_prefix):
            return name[len(self.name_prefix) :].strip()
        return None


@dataclass
class AmoLeadIndex(AccountIndex[LeadRef]):
    """External key → lead of one amoCRM account and key kind (see the module docstring)."""

    rule: LeadKeyRule

    @property
    def entity(self) -> str:
        return f"lead_by:{self.rule.kind}"

    @property
    def watermark_key(self) -> str:
        return f"leads_updated_at:{self.rule.kind}:{self.rule.pipeline_id}"

    def encode(self, value: LeadRef) -> str:
        return value.encode()

    def decode(self, text: str) -> LeadRef:
        return LeadRef.decode(text)

    @classmethod
    def load(cls, warehouse: Warehouse, account: str, rule: LeadKeyRule) -> AmoLeadIndex:
        index = cls(warehouse, account, rule)
        index._read()
        return index

    def refresh(self, client: AmoCrmClient, *, again: bool = False) -> None:
        """Learn the pipeline's leads changed since the watermark: once per run, or `again` when a
        write's answer was lost (its leads may exist now)."""
        if self.refreshed and not again:
            return
        newest = self.watermark
        before = client.requests_used
        leads = client.iter_leads(
            pipeline_ids=[self.rule.pipeline_id],
            updated_from=self.watermark or None,
            order_by_updated="asc",
            with_contacts=True,
            limit=MAX_PAGE_SIZE,
        )
        for lead in leads:
            newest = max(newest, int(lead.updated_at or 0))
            key = self.rule.key_of(lead)
            if key is None or lead.is_deleted:
                continue
            known = self.entries.get(key)
            if known is not None and int(known.lead_id) < lead.id:
                continue  # a key already doubled in amoCRM: keep the oldest lead, never add a third
            contact = lead.main_contact_id
            self.remember(
                key,
                LeadRef(
                    lead_id=str(lead.id),
                    contact_id=str(contact) if contact else None,
                    status_id=lead.status_id,
                    pipeline_id=lead.pipeline_id,
                    price=float(lead.price) if lead.price is not None else None,
                ),
            )
        self.watermark = newest
        self.refreshed = True
        self.requests += client.requests_used - before

    def get(self, key: str) -> LeadRef | None:
        return self.entries.get(key)

    def find(self, keys: Iterable[str]) -> dict[str, LeadRef]:
        return {key: ref for key in keys if (ref := self.entries.get(key)) is not None}

    def remember(self, key: str, ref: LeadRef) -> None:
        self.entries[key] = ref
        self._new[key] = ref
