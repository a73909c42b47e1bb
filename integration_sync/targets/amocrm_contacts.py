"""An index of an amoCRM account's contacts by identity (Telegram id, E.164 phone, e-mail), kept in the warehouse.

Every flow writing contacts to the account looks here before creating one: amoCRM's `query` does not
find a phone stored as ``+7 (999) 555-44-33`` by its E.164 form, the index does. It is refreshed
incrementally like the lead index (`targets.amocrm_leads`): the first run reads every contact 250 per
page, later runs only those updated since the watermark (inclusive). Entries are keyed by the account
(its root URL), so the flows of one account share them. Keys are ``tg:<id>``, ``phone:<E.164>``,
``email:<lower-case>``; where two contacts hold the same identity the lowest id wins, as in a search.

Before this index each flow kept its own; migrations move those to a per-flow legacy scope, and the
first `load` naming the flow (`adopt`) takes them over, with the older of the two watermarks, so an
existing deployment reads only contacts changed since then, not every contact again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from integration_sync.connectors.amocrm import MAX_PAGE_SIZE, AmoCrmClient, Contact
from integration_sync.sync.normalize import normalize_email, normalize_phone
from integration_sync.sync.state import read_lookup, read_state, write_lookup, write_state
from integration_sync.sync.warehouse import Warehouse
from integration_sync.targets.amocrm_index import AccountIndex

ENTITY = "contact_by_identity"
WATERMARK = "contacts_updated_at"


def legacy_scope(flow: str) -> str:
    """Where a flow's own contact index waits (after its migration) to be adopted by the shared one."""
    return f"amocrm:legacy:{flow}"


def telegram_key(value: Any) -> str | None:
    text = str(value if value is not None else "").strip()
    return f"tg:{text}" if text else None


def phone_key(raw: Any, region: str = "RU") -> str | None:
    phone = normalize_phone(raw, region)
    return f"phone:{phone}" if phone else None


def email_key(raw: Any) -> str | None:
    email = normalize_email(raw)
    return f"email:{email}" if email else None


@dataclass(frozen=True)
class ContactKeyRule:
    """Which identities of a contact are read: its Telegram id field (account-level, optional), its
    phones (national forms read in `region`) and e-mails."""

    telegram_field_id: int | None = None
    region: str = "RU"

    def keys_of(self, contact: Contact) -> list[str]:
        keys: list[str] = []
        if self.telegram_field_id:
            keys += [k for v in contact.field_values(self.telegram_field_id) if (k := telegram_key(v))]
        keys += [k for raw in contact.phones() if (k := phone_key(raw, self.region))]
        keys += [k for raw in contact.emails() if (k := email_key(raw))]
        return keys

    def holds(self, contact: Contact, key: str) -> bool:
        """Whether the contact really carries this identity (a `query` hit is only a hint)."""
        return key in self.keys_of(contact)


@dataclass
class AmoContactIndex(AccountIndex[str]):
    """Identity key → contact id of one amoCRM account (see the module docstring)."""

    rule: ContactKeyRule

    @property
    def entity(self) -> str:
        return ENTITY

    def encode(self, value: str) -> str:
        return value

    def decode(self, text: str) -> str:
        return text

    @property
    def watermark_key(self) -> str:
        # a refresh that reads no Telegram field must not advance the watermark of one that does
        tg = self.rule.telegram_field_id
        return f"{WATERMARK}:tg{tg}" if tg else WATERMARK

    @classmethod
    def load(
        cls, warehouse: Warehouse, account: str, rule: ContactKeyRule, *, adopt: str | None = None
    ) -> AmoContactIndex:
        """The account's index; with `adopt`, first take over that flow's pre-shared index if left."""
        index = cls(warehouse, account, rule)
        if adopt is not None:
            index._adopt(legacy_scope(adopt))
        index._read()
        return index

    def _adopt(self, legacy: str) -> None:
        old = read_lookup(self.warehouse, legacy, ENTITY)
        old_mark = read_state(self.warehouse, legacy, WATERMARK)
        if not old and old_mark is None:
            return
        mine = read_lookup(self.warehouse, self.scope, ENTITY)
        write_lookup(self.warehouse, self.scope, ENTITY, {k: v for k, v in old.items() if k not in mine})
        if old_mark is not None:
            current = read_state(self.warehouse, self.scope, self.watermark_key)
            # the older watermark: contacts changed since either index was refreshed are read again
            mark = int(old_mark) if current is None else min(int(current), int(old_mark))
            write_state(self.warehouse, self.scope, self.watermark_key, str(mark))
        with self.warehouse.transaction() as conn:
            conn.execute("DELETE FROM id_map WHERE flow = ? AND entity = ?", [legacy, ENTITY])
            conn.execute("DELETE FROM flow_state WHERE flow = ?", [legacy])

    def refresh(self, client: AmoCrmClient) -> None:
        """Learn the contacts changed since the watermark (every contact the first time), once per run."""
        if self.refreshed:
            return
        newest = self.watermark
        before = client.requests_used
        contacts = client.iter_contacts(
            updated_from=self.watermark or None, order_by_updated="asc", limit=MAX_PAGE_SIZE
        )
        for contact in contacts:
            newest = max(newest, int(contact.updated_at or 0))
            for key in self.rule.keys_of(contact):
                held = self.entries.get(key)
                if held is None or int(held) > contact.id:
                    self.remember([key], contact.id)
        self.watermark = newest
        self.refreshed = True
        self.requests += client.requests_used - before

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def first(self, keys: Iterable[str]) -> str | None:
        """The contact of the first of these keys the index knows."""
        return next((self.entries[k] for k in keys if k in self.entries), None)

    def remember(self, keys: Iterable[str], contact_id: int | str) -> None:
        for key in keys:
            if self.entries.get(key) != str(contact_id):
                self.entries[key] = self._new[key] = str(contact_id)
