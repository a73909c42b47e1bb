"""amoCRM as the sync engine's destination for platform payments: contact, active lead, fields, note.

For each chunk of payments (≤ 50):

1. the contact: an id this payment already resolved to, else one learned from an earlier payment of
   the same Telegram id / phone / email (re-read and verified), else amoCRM's search in the seed's
   order, Telegram id → phone → email, each hit verified against the contact's own fields;
2. the active lead, searched over the contact's leads in every pipeline (linked, not deleted, not won,
   lost or in an "Автооплаты ООО" status; the latest updated); else a new lead in the pipeline the
   UTM rules choose, with every field set (``leads/complex`` when the contact is new too);
3. where the payment goes (contact, lead) is saved before the lead is touched, and a lead's totals
   before this project is saved once as its baseline;
4. one PATCH per lead with absolute values: total paid = baseline + the payments applied to it,
   purchase count likewise, the last payment's fields from the newest payment by date;
5. empty Telegram fields of known contacts filled; then the note, last, which marks the payment done.

A payment whose answer was lost is looked up by its note ("Payment ID: …") and, when its lead is not
yet known, by the lead's payment id field, so nothing is created or added twice.

A lead this warehouse has never seen (a new or lost warehouse, or a manager's lead) may already hold
payments applied by another warehouse: before its baseline is taken, its notes are read (50 leads per
request) and every payment they name is recorded as applied to it, its amount taken out of the
baseline; a payment of the chunk found that way is settled, never applied again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from integration_sync.connectors.amocrm import AmoCrmClient, Contact, Lead
from integration_sync.connectors.errors import BatchItemsError
from integration_sync.defs.payments_amocrm.mapping import (
    PaymentFacts,
    PaymentSettings,
    active_lead,
    contact_fill,
    has_note_for,
    holds_identity,
    identities,
    latest,
    lead_baseline,
    new_contact,
    note_marker,
    payment_fields,
)
from integration_sync.defs.payments_amocrm.tables import PaymentLedger, Target
from integration_sync.sync.engine import Change, Outcome
from integration_sync.sync.normalize import normalize_phone
from integration_sync.targets.amocrm_contacts import AmoContactIndex

log = logging.getLogger(__name__)

BATCH = 50
NOTE = "note"
NOTE_PREFIX = note_marker("")


@dataclass
class _Work:
    """One payment on its way through a chunk."""

    change: Change
    contact: Contact | None = None
    contact_id: int | None = None
    lead: Lead | None = None
    lead_id: int | None = None
    pipeline_id: int | None = None
    lead_created: bool = False
    contact_created: bool = False
    new_contact: bool = False
    note_id: int | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        return self.change.key

    @property
    def payload(self) -> Mapping[str, Any]:
        return self.change.payload

    @property
    def customer(self) -> Mapping[str, Any]:
        customer: Mapping[str, Any] = self.payload["customer"]
        return customer

    @property
    def facts(self) -> PaymentFacts:
        p = self.payload
        return PaymentFacts(str(p["payment_id"]), p.get("invoice_id"), Decimal(str(p["amount"])), int(p["paid_at"]))

    def target(self) -> Target:
        return Target(
            self.key,
            self.contact_id,
            self.lead_id,
            self.pipeline_id,
            self.lead_created,
            self.contact_created,
            self.note_id,
        )


def _ids(work: _Work) -> dict[str, str]:
    """The target ids of a payment found applied (its note already in amoCRM)."""
    pairs = (("contact", work.contact_id), ("lead", work.lead_id), (NOTE, work.note_id))
    return {k: str(v) for k, v in pairs if v}


class PaymentsDestination:
    """Applies payments to amoCRM contacts and leads."""

    name = "amocrm"
    primary_entity = NOTE  # a payment is in amoCRM once its note is
    batch_size = BATCH

    def __init__(
        self, client: AmoCrmClient, settings: PaymentSettings, ledger: PaymentLedger, contacts: AmoContactIndex
    ) -> None:
        self.client = client
        self.settings = settings
        self.ledger = ledger
        self.contacts = contacts
        self.counts: Counter[str] = Counter()
        self._searched: dict[str, Contact | None] = {}

    def requests_used(self) -> int:
        return int(self.client.requests_used)

    # ---- identity of payments whose answer was lost -------------------------------------------

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        """For payments left in flight: their lead (recorded, or found by the payment id field) and,
        if it is there, their note (the notes of all their leads read in bulk)."""
        pending = [c for c in changes if c.in_flight]
        if not pending:
            return {}
        known = self.ledger.targets(c.key for c in pending)
        targets: dict[str, Target] = {}
        recovered: list[Target] = []
        for change in pending:
            target = known.get(change.key)
            if target is None or target.lead_id is None:
                lead = self._lead_by_payment_id(change.key)
                if lead is None:
                    continue
                target = Target(change.key, lead.main_contact_id, lead.id, lead.pipeline_id, lead_created=True)
                recovered.append(target)
            targets[change.key] = target
        if recovered:
            self.ledger.record(recovered, {t.lead_id: (Decimal(0), 0) for t in recovered if t.lead_id})
        notes = self.client.list_notes((t.lead_id for t in targets.values() if t.lead_id), note_type="common")
        found: dict[str, dict[str, str]] = {}
        for key, target in targets.items():
            ids = {"lead": str(target.lead_id)}
            if target.contact_id:
                ids["contact"] = str(target.contact_id)
            note = next(
                (n.id for n in notes if n.entity_id == target.lead_id and has_note_for(n.text, key)),
                None,
            )
            if note is not None:
                ids[NOTE] = str(note)
            found[key] = ids
        return found

    def _lead_by_payment_id(self, payment_id: str) -> Lead | None:
        field_id = self.settings.lead_fields.payment_id
        if not field_id:
            return None
        for lead in self.client.find_leads(payment_id, with_contacts=True):
            if any(str(v) == payment_id for v in lead.field_values(field_id)):
                return lead
        return None

    # ---- the push -----------------------------------------------------------------------------

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        # a payment whose note is already in amoCRM (found after a crash) is applied: never twice
        applied = [Outcome(c.key, "succeeded", "settle", dict(c.target_ids)) for c in changes if c.target_ids.get(NOTE)]
        works = [_Work(change) for change in changes if not change.target_ids.get(NOTE)]
        if not works:
            return applied
        known = self.ledger.targets(w.key for w in works)
        for work in works:
            target = known.get(work.key)
            if target is not None:
                work.contact_id, work.lead_id = target.contact_id, target.lead_id
                work.pipeline_id, work.lead_created = target.pipeline_id, target.lead_created
                work.contact_created, work.note_id = target.contact_created, target.note_id
        # its note was found in amoCRM by an earlier run of this warehouse: applied, nothing to read
        found = [w for w in works if w.note_id is not None]
        works = [w for w in works if w.note_id is None]
        applied += [Outcome(w.key, "succeeded", "settle", _ids(w)) for w in found]
        self._match_contacts(works)
        self._match_leads(works)
        self._create_leads(works)
        self._update_leads(works)
        self._fill_contacts(works)
        return applied + self._add_notes(works)

    def _live(self, works: Iterable[_Work]) -> list[_Work]:
        """Payments still to apply: not refused, and with no note in amoCRM."""
        return [w for w in works if w.error is None and w.note_id is None]

    # ---- contacts -----------------------------------------------------------------------------

    def _match_contacts(self, works: list[_Work]) -> None:
        """Known ids are re-read (with their leads) and verified; the rest are searched, then looked up
        in the contact index; only then is a contact new."""
        candidates: dict[str, int] = {}
        for work in works:
            if work.contact_id:
                candidates[work.key] = work.contact_id
                continue
            # only the top identity: a phone learned earlier must not win over a Telegram id search
            top = identities(work.customer)[0]
            known = self.contacts.get(top)
            if known is not None:
                candidates[work.key] = int(known)
        self._take_verified(works, candidates)
        for work in works:
            if work.contact is None:
                work.contact_id = None
                found = self._search(work.customer)
                if found is not None:
                    work.contact, work.contact_id = found, found.id
                    self.counts["contacts_found"] += 1
        unmatched = [w for w in works if w.contact is None]
        if unmatched:
            self.contacts.refresh(self.client)
            fallback = {}
            for work in unmatched:
                known = self.contacts.first(identities(work.customer))
                if known is not None:
                    fallback[work.key] = int(known)
            self.counts["contacts_found"] += self._take_verified(unmatched, fallback)
        for work in works:
            if work.contact is not None:  # only what the contact really holds: never a hint for another one
                held = [i for i in identities(work.customer) if holds_identity(work.contact, i, self.settings)]
                self.contacts.remember(held, work.contact.id)
            elif self.settings.create_if_not_found:
                work.new_contact = True
            else:
                work.error = "contact_not_found: no amoCRM contact has this telegram id, phone or email"

    def _take_verified(self, works: Sequence[_Work], candidates: Mapping[str, int]) -> int:
        """Read the candidate contacts (with their leads) and keep those that still hold one of the
        payment's identities (or that the payment already went to); how many were kept."""
        if not candidates:
            return 0
        contacts = {c.id: c for c in self.client.get_contacts(set(candidates.values()), with_leads=True)}
        kept = 0
        for work in works:
            candidate = contacts.get(candidates.get(work.key, 0))
            if candidate is not None and (
                work.contact_id == candidate.id
                or any(holds_identity(candidate, i, self.settings) for i in identities(work.customer))
            ):
                work.contact, work.contact_id = candidate, candidate.id
                kept += 1
        return kept

    def _phone_key(self, raw: str) -> str | None:
        return normalize_phone(raw, self.settings.default_country)

    def _search(self, customer: Mapping[str, Any]) -> Contact | None:
        """Telegram id, then phone, then email; the first verified hit (lowest id if several)."""
        for identity in identities(customer):
            if identity in self._searched:
                hit = self._searched[identity]
                if hit is not None:
                    return hit
                continue
            kind, _, value = identity.partition(":")
            if kind == "tg":
                if not self.settings.contact_tg_id_field:
                    continue
                hits = self.client.find_contacts_by_field(self.settings.contact_tg_id_field, value, with_leads=True)
            elif kind == "phone":
                hits = self.client.find_contacts_by_phone(value, self._phone_key, with_leads=True, first_match=True)
            else:
                hits = self.client.find_contacts_by_email(value, with_leads=True)
            verified = [c for c in hits if holds_identity(c, identity, self.settings)]
            hit = min(verified, key=lambda c: c.id, default=None)
            self._searched[identity] = hit
            if hit is not None:
                return hit
        return None

    # ---- leads --------------------------------------------------------------------------------

    def _match_leads(self, works: list[_Work]) -> None:
        """Each payment's lead: the one it already went to, else the contact's active lead."""
        wanted: set[int] = set()
        for work in self._live(works):
            if work.lead_id:
                wanted.add(work.lead_id)
            elif work.contact is not None:
                wanted.update(work.contact.lead_ids)
        leads = {lead.id: lead for lead in self.client.get_leads(wanted, with_contacts=True)} if wanted else {}
        self._recover_applied(works, leads)
        excluded = self.settings.excluded_statuses
        for work in self._live(works):
            if work.lead_id and work.lead_id in leads:
                work.lead = leads[work.lead_id]
                continue
            work.lead_id, work.lead_created = None, False  # gone (deleted or merged): match again
            if work.contact is not None and work.contact_id:
                lead = active_lead((leads[i] for i in work.contact.lead_ids if i in leads), work.contact_id, excluded)
                if lead is not None:
                    work.lead, work.lead_id, work.pipeline_id = lead, lead.id, lead.pipeline_id
                    self.counts["leads_found"] += 1
                    continue
            if not self.settings.create_if_not_found:
                work.error = "lead_not_found: the contact has no active lead in any pipeline"
        found = [w for w in self._live(works) if w.lead is not None]
        seen = self.ledger.known_baselines(w.lead_id for w in found if w.lead_id)
        baselines = {w.lead.id: lead_baseline(w.lead, self.settings) for w in found if w.lead and w.lead.id not in seen}
        # where each payment goes, saved before the lead is changed: a retry reuses it
        self.ledger.record([w.target() for w in found], baselines)

    def _recover_applied(self, works: Sequence[_Work], leads: Mapping[int, Lead]) -> None:
        """Payments the notes of never-seen leads name are applied: recorded with their note, out of
        the lead's baseline; a payment of this chunk among them is settled."""
        unseen = set(leads) - self.ledger.known_baselines(leads)
        # a lead this project never wrote has no payment id: no note of ours to look for
        field_id = self.settings.lead_fields.payment_id
        touched = [i for i in unseen if not field_id or any(leads[i].field_values(field_id))]
        if not touched:
            return
        noted: dict[str, tuple[int, int]] = {}
        for note in sorted(self.client.list_notes(touched, note_type="common"), key=lambda n: n.id):
            for line in note.text.splitlines():
                if line.startswith(NOTE_PREFIX) and note.entity_id is not None:
                    noted.setdefault(line.removeprefix(NOTE_PREFIX), (int(note.entity_id), note.id))
        amounts = self.ledger.amounts(noted)  # only payments this warehouse holds can be counted by it
        baselines: dict[int, tuple[Decimal, int]] = {}
        for lead_id in touched:
            total, count = lead_baseline(leads[lead_id], self.settings)
            mine = [p for p, (lead, _) in noted.items() if lead == lead_id and p in amounts]
            baselines[lead_id] = (total - sum((amounts[p] for p in mine), Decimal(0)), count - len(mine))
        targets = {
            p: Target(p, leads[lead].main_contact_id, lead, leads[lead].pipeline_id, note_id=note_id)
            for p, (lead, note_id) in noted.items()
            if p in amounts
        }
        for work in works:
            target = targets.get(work.key)
            if target is not None and work.error is None:
                work.contact_id = work.contact_id or target.contact_id
                work.lead_id, work.pipeline_id, work.note_id = target.lead_id, target.pipeline_id, target.note_id
        self.counts["payments_found_applied"] += len(targets)
        self.ledger.record(list(targets.values()), baselines)

    def _create_body(self, work: _Work, contact_id: int | None) -> dict[str, Any]:
        new = work.payload["new_lead"]
        body: dict[str, Any] = {
            "name": new["name"],
            "price": new["price"],
            "pipeline_id": new["pipeline_id"],
            "status_id": new["status_id"],
            "request_id": work.key,
            "custom_fields_values": payment_fields(
                self.settings,
                subjects=work.payload["subjects"],
                direction=work.payload["direction"],
                last=work.facts,
                total_paid=work.facts.amount,
                purchase_count=1,
                utm=new["utm"],
            ),
        }
        if self.settings.responsible_user_id:
            body["responsible_user_id"] = self.settings.responsible_user_id
        if contact_id is not None:
            body["_embedded"] = {"contacts": [{"id": int(contact_id)}]}
        else:
            body["_embedded"] = {"contacts": [new_contact(work.customer, self.settings)]}
        return body

    def _create_leads(self, works: list[_Work]) -> None:
        """A new lead per payment without an active one; a new customer's contact comes with it."""
        todo = [w for w in self._live(works) if w.lead_id is None]
        first_of: dict[str, _Work] = {}
        later: list[_Work] = []
        for work in todo:
            identity = identities(work.customer)[0]
            if work.new_contact and identity not in first_of:
                first_of[identity] = work
            else:
                later.append(work)
        complex_works = list(first_of.values())
        for created, work in self._send(
            complex_works,
            lambda ws: self.client.create_leads_complex([self._create_body(w, None) for w in ws]),
            self._fail_work,
        ):
            work.lead_id, work.contact_id = int(created.id), int(created.contact_id or 0) or None
            work.lead_created = work.contact_created = True
            self.contacts.remember(identities(work.customer), int(work.contact_id or 0))
        self._after_create(complex_works)
        self.counts["contacts_created"] += sum(1 for w in complex_works if w.contact_created)
        for work in later:
            if work.new_contact and work.contact_id is None:
                sibling = first_of.get(identities(work.customer)[0])
                work.contact_id = sibling.contact_id if sibling else None
                if work.contact_id is None:
                    work.error = work.error or "the customer's new contact was not created"
        plain = [w for w in later if w.error is None]
        for created, work in self._send(
            plain,
            lambda ws: self.client.create_leads([self._create_body(w, w.contact_id) for w in ws]),
            self._fail_work,
        ):
            work.lead_id, work.lead_created = int(created.id), True
        self._after_create(plain)

    def _after_create(self, works: Sequence[_Work]) -> None:
        made = [w for w in works if w.lead_created and w.lead_id and w.error is None]
        for work in made:
            work.pipeline_id = int(work.payload["new_lead"]["pipeline_id"])
        self.counts["leads_created"] += len(made)
        self.ledger.record([w.target() for w in made], {int(w.lead_id or 0): (Decimal(0), 0) for w in made})

    def _update_leads(self, works: list[_Work]) -> None:
        """One PATCH per lead with its totals as absolute values (a lead made in this push is complete)."""
        by_lead: dict[int, list[_Work]] = {}
        for work in self._live(works):
            if work.lead_id and not (work.lead_created and work.lead is None):
                by_lead.setdefault(work.lead_id, []).append(work)
        if not by_lead:
            return
        ledgers = self.ledger.leads(by_lead)
        items: list[tuple[list[_Work], dict[str, Any]]] = []
        for lead_id, group in by_lead.items():
            ledger = ledgers.get(lead_id)
            newest = latest([ledger.last if ledger else None, *(w.facts for w in group)])
            assert newest is not None  # the group is never empty
            lead = group[0].lead
            subjects = (
                lead.enum_ids(self.settings.lead_fields.subjects) if lead and self.settings.lead_fields.subjects else []
            )
            for work in group:
                subjects += [s for s in work.payload["subjects"] if s not in subjects]
            direction = max(group, key=lambda w: (w.facts.paid_at, w.key)).payload["direction"]
            total = (ledger.total_paid if ledger else Decimal(0)) + sum((w.facts.amount for w in group), Decimal(0))
            count = (ledger.purchase_count if ledger else 0) + len(group)
            fields = payment_fields(
                self.settings,
                subjects=subjects,
                direction=direction,
                last=newest,
                total_paid=total,
                purchase_count=count,
            )
            items.append((group, {"id": lead_id, "custom_fields_values": fields}))
        self._send(items, lambda chunk: self.client.update_leads([body for _, body in chunk]), self._fail_group)

    def _fill_contacts(self, works: list[_Work]) -> None:
        """Telegram id and username where a known contact has none (one PATCH item per contact). A
        refused fill is logged and counted; it does not hold the payment back."""
        bodies: dict[int, dict[str, Any]] = {}
        for work in self._live(works):
            if work.contact is None or work.contact_created or work.contact.id in bodies:
                continue
            values = contact_fill(work.contact, work.customer, self.settings)
            if values:
                bodies[work.contact.id] = {"id": work.contact.id, "custom_fields_values": values}

        def refused(body: Any, message: str) -> None:
            self.counts["contact_fills_refused"] += 1
            log.warning("amoCRM refused to fill contact %s: %s", body.get("id"), message)

        done = self._send(list(bodies.values()), lambda chunk: self.client.update_contacts(list(chunk)), refused)
        self.counts["contacts_filled"] += len(done)

    def _add_notes(self, works: list[_Work]) -> list[Outcome]:
        """The note, last: a payment with its note is applied."""
        notes: dict[str, int] = {}
        for created, work in self._send(
            self._live(works),
            lambda chunk: self.client.add_notes([(int(w.lead_id or 0), w.payload["note"]) for w in chunk]),
            self._fail_work,
        ):
            notes[work.key] = int(created.id)
        outcomes = []
        for work in works:
            ids = {k: str(v) for k, v in (("contact", work.contact_id), ("lead", work.lead_id)) if v}
            if work.error is None and work.note_id is not None:  # applied before: its note is in amoCRM
                outcomes.append(Outcome(work.key, "succeeded", "settle", _ids(work)))
            elif work.error is None and work.key in notes:
                outcomes.append(
                    Outcome(work.key, "succeeded", work.change.operation, {**ids, NOTE: str(notes[work.key])})
                )
            else:
                outcomes.append(
                    Outcome(work.key, "rejected", work.change.operation, ids, work.error or "no note added")
                )
        return outcomes

    # ---- batches that isolate refused items ---------------------------------------------------

    @staticmethod
    def _fail_work(item: Any, message: str) -> None:
        item.error = item.error or message

    @staticmethod
    def _fail_group(item: Any, message: str) -> None:
        for work in item[0]:
            work.error = work.error or message

    def _send(
        self,
        items: Sequence[Any],
        call: Callable[[Sequence[Any]], Sequence[Any]],
        refused: Callable[[Any, str], None],
    ) -> list[tuple[Any, Any]]:
        """Send items 50 per request, pairing each answer with its item. Items amoCRM refuses (400
        validation-errors) go to `refused` with amoCRM's reasons and the rest of their request is
        sent again without them (a refused request applied nothing)."""
        results: list[tuple[Any, Any]] = []
        for start in range(0, len(items), BATCH):
            pending = list(items[start : start + BATCH])
            while pending:
                try:
                    answer = call(pending)
                except BatchItemsError as exc:
                    failed = set(exc.failed_positions)
                    if not failed:
                        raise
                    by_position = {index: key for key, index in exc.positions.items()}
                    for position in sorted(failed):
                        problems = exc.item_errors.get(by_position[position], [exc.message])
                        refused(pending[position], "amoCRM refused: " + "; ".join(problems)[:500])
                    pending = [item for i, item in enumerate(pending) if i not in failed]
                    continue
                results.extend(zip(answer, pending, strict=True))
                pending = []
        return results
