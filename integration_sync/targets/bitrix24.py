"""What every flow writing to Bitrix24 CRM needs: lookups, contact matching and batched deal writes.

Reads: records are looked up by an external key held in a field (`@FIELD` filter, 50 keys per
command), contacts by phone and email (`crm.duplicate.findbycomm`, 20 values per command, the hits
read back and verified), and contacts' phones and emails by id. Every read goes through
`Bitrix24Client.read_batch`: a command failing inside an HTTP 200 batch raises, it never reads as
"not found".

Writes: a `DealWrite` (deal fields, an optional contact, optional product rows) becomes up to four
commands — contact add or update, deal add or update, `crm.deal.productrows.set` — packed 50 per
batch, a new contact referenced by its deal as `$result[...]` in the same batch. Batches run with
halt=1: a failed command rejects its record, the records before it stand, those after it go into
the next batch. Phones and emails are only ever appended (Bitrix24 appends a value sent without an
`ID`), so a value the contact already has is never sent again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from integration_sync.connectors.bitrix24 import BATCH_LIMIT, Bitrix24Client
from integration_sync.sync.normalize import normalize_email, normalize_phone

KEYS_PER_COMMAND = 50  # ids in one `@FIELD` list filter; a list command answers 50 rows a page
VALUE_TYPE = "WORK"

Command = tuple[str, Mapping[str, Any]]


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def multi(values: Sequence[str]) -> list[dict[str, str]]:
    """Phones or emails as a multi-field value (appended on update: no `ID`)."""
    return [{"VALUE": value, "VALUE_TYPE": VALUE_TYPE} for value in values]


def comm_set(row: Mapping[str, Any], region: str) -> set[str]:
    """A contact row's phones (E.164) and emails (lowercased), normalized as payloads are."""
    values: set[str] = set()
    for item in row.get("PHONE") or []:
        phone = normalize_phone(item.get("VALUE"), region) if isinstance(item, Mapping) else None
        if phone:
            values.add(phone)
    for item in row.get("EMAIL") or []:
        email = normalize_email(item.get("VALUE")) if isinstance(item, Mapping) else None
        if email:
            values.add(email)
    return values


def same_value(sent: Any, stored: Any) -> bool:
    """Whether Bitrix24 already holds what would be sent (it answers strings: "-1582.5", "" for None)."""
    if sent is None or sent == "":
        return stored is None or stored == ""
    if isinstance(sent, int | float) and not isinstance(sent, bool):
        try:
            return float(str(stored)) == float(sent)
        except ValueError:
            return False
    return str(sent) == str(stored if stored is not None else "")


def differing(fields: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """The fields whose value Bitrix24 does not hold yet."""
    return {k: v for k, v in fields.items() if not same_value(v, stored.get(k))}


@dataclass(frozen=True)
class KeyLookup:
    """Rows of `method` whose `key_field` is one of `keys` (besides `filter`), grouped by key."""

    method: str
    key_field: str
    keys: Sequence[str]
    select: Sequence[str]
    filter: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ContactWrite:
    """A deal's contact. Without `id` it is created (or reused: one made or matched this run with a
    phone/email in common); with `id`, `fields` are updated and the phones/emails not in `present`
    (what the contact already holds, normalized) are appended."""

    fields: Mapping[str, Any] = field(default_factory=dict)
    phones: Sequence[str] = ()
    emails: Sequence[str] = ()
    id: str | None = None
    present: Collection[str] = frozenset()

    @property
    def comms(self) -> list[str]:
        return [*self.phones, *self.emails]


@dataclass(frozen=True)
class DealWrite:
    """One record: a deal to add (`deal_id` None) or update with `fields`, its contact, and the
    product rows to set (`crm.deal.productrows.set` replaces all of a deal's rows; None: untouched).
    `fields` None: no deal at all, only the contact (a flow pushing contacts of their own)."""

    key: str
    fields: Mapping[str, Any] | None
    deal_id: str | None = None
    contact: ContactWrite | None = None
    product_rows: Sequence[Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class WriteResult:
    """What became of a `DealWrite`: ids known after it (also for a rejected one), the error if any."""

    key: str
    ok: bool
    deal_id: str | None
    contact_id: str | None
    error: str | None = None
    sent: bool = True  # False: nothing differed, no command was sent


@dataclass
class _Packed:
    write: DealWrite
    commands: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    contact_ref: str | None = None  # the command creating (here or earlier in the batch) its contact
    creates_contact: bool = False


class Bitrix24Crm:
    """Reads and batched writes of one Bitrix24 portal's contacts and deals, for any flow."""

    def __init__(self, client: Bitrix24Client, *, region: str = "RU") -> None:
        self.client = client
        self.region = region
        # phone/email -> contact id of contacts created or matched in this run
        self.known_contacts: dict[str, str] = {}

    def phone_key(self, raw: str) -> str | None:
        """The project's phone rule in this portal's region: E.164."""
        return normalize_phone(raw, self.region)

    # ---- reads ------------------------------------------------------------------------------

    def lookup(self, lookups: Sequence[KeyLookup]) -> list[dict[str, list[dict[str, Any]]]]:
        """For each lookup, key -> its rows (oldest ID first); all lookups share the same batches."""
        commands: dict[str, Command] = {}
        for n, query in enumerate(lookups):
            keys = list(dict.fromkeys(str(k) for k in query.keys))
            for i, chunk in enumerate(chunks(keys, KEYS_PER_COMMAND)):
                commands[f"l{n}_{i}"] = (
                    query.method,
                    {
                        "filter": {**query.filter, f"@{query.key_field}": list(chunk)},
                        "select": list(dict.fromkeys(["ID", query.key_field, *query.select])),
                        "order": {"ID": "ASC"},
                    },
                )
        found: list[dict[str, list[dict[str, Any]]]] = [{} for _ in lookups]
        for name, rows in self.client.read_batch(commands).items():
            n = int(name[1:].split("_", 1)[0])
            for row in rows if isinstance(rows, list) else []:
                key = str(row.get(lookups[n].key_field) or "")
                if key:
                    found[n].setdefault(key, []).append(row)
        return found

    def match_contacts(self, phones: Sequence[str], emails: Sequence[str]) -> dict[str, str]:
        """Phone/email -> the oldest contact verified to hold it (findbycomm, 20 values a command)."""
        if not phones and not emails:
            return {}
        matches = self.client.find_contact_ids_by_comm(sorted(set(phones)), sorted(set(emails)), self.phone_key)
        return {value: str(min(ids)) for value, ids in matches.items() if ids}

    def contact_comms(self, contact_ids: Collection[str]) -> dict[str, set[str]]:
        """The phones and emails each contact holds now, normalized, 50 contacts per command."""
        ids = sorted(set(contact_ids), key=lambda i: (len(i), i))
        commands: dict[str, Command] = {
            f"m{i}": ("crm.contact.list", {"filter": {"@ID": list(chunk)}, "select": ["ID", "PHONE", "EMAIL"]})
            for i, chunk in enumerate(chunks(ids, KEYS_PER_COMMAND))
        }
        present: dict[str, set[str]] = {}
        for rows in self.client.read_batch(commands).values():
            for row in rows if isinstance(rows, list) else []:
                present[str(row["ID"])] = comm_set(row, self.region)
        return present

    # ---- writes -----------------------------------------------------------------------------

    def write(self, writes: Sequence[DealWrite]) -> list[WriteResult]:
        """Run the writes in batches of up to 50 commands; one result per write, in no fixed order."""
        results: list[WriteResult] = []
        queue = list(writes)
        while queue:
            batch: list[_Packed] = []
            new_contacts: dict[str, str] = {}  # phone/email -> command creating it in this batch
            size = 0
            while queue:
                packed = self._pack(queue[0], new_contacts)
                if batch and size + len(packed.commands) > BATCH_LIMIT:
                    break
                queue.pop(0)
                if not packed.commands:
                    contact = packed.write.contact
                    results.append(
                        WriteResult(
                            packed.write.key, True, packed.write.deal_id, contact.id if contact else None, sent=False
                        )
                    )
                    continue
                if packed.creates_contact and packed.write.contact is not None and packed.contact_ref:
                    for value in packed.write.contact.comms:
                        new_contacts.setdefault(value, packed.contact_ref)
                batch.append(packed)
                size += len(packed.commands)
            if batch:
                done, retry = self._execute(batch)
                results.extend(done)
                queue[:0] = retry
        return results

    def _pack(self, write: DealWrite, new_contacts: Mapping[str, str]) -> _Packed:
        packed = _Packed(write)
        key, contact = write.key, write.contact
        contact_id: str | None = None
        if contact is not None:
            contact_id = contact.id or next(
                (self.known_contacts[v] for v in contact.comms if v in self.known_contacts), None
            )
            if contact_id is None:
                packed.contact_ref = next((new_contacts[v] for v in contact.comms if v in new_contacts), None)
                if packed.contact_ref is None:
                    packed.contact_ref, packed.creates_contact = f"c{key}", True
                    fields = {**contact.fields, "PHONE": multi(contact.phones), "EMAIL": multi(contact.emails)}
                    packed.commands.append((f"c{key}", "crm.contact.add", {"fields": fields}))
                contact_id = f"$result[{packed.contact_ref}]"
            elif contact.id is not None:
                fields = dict(contact.fields)
                for kind, values in (("PHONE", contact.phones), ("EMAIL", contact.emails)):
                    appended = [v for v in dict.fromkeys(values) if v not in contact.present]
                    if appended:
                        fields[kind] = multi(appended)
                if fields:
                    packed.commands.append((f"k{key}", "crm.contact.update", {"id": contact.id, "fields": fields}))
        if write.fields is None:
            return packed
        deal_ref = write.deal_id
        if write.deal_id is None:
            fields = dict(write.fields)
            if contact_id is not None:
                fields["CONTACT_ID"] = contact_id
            packed.commands.append((f"d{key}", "crm.deal.add", {"fields": fields}))
            deal_ref = f"$result[d{key}]"
        elif write.fields:
            packed.commands.append((f"u{key}", "crm.deal.update", {"id": write.deal_id, "fields": dict(write.fields)}))
        if write.product_rows is not None:
            rows = [dict(row) for row in write.product_rows]
            packed.commands.append((f"p{key}", "crm.deal.productrows.set", {"id": deal_ref, "rows": rows}))
        return packed

    def _execute(self, batch: Sequence[_Packed]) -> tuple[list[WriteResult], list[DealWrite]]:
        """Run one batch (halt=1); returns results and the writes the halt left unreached."""
        commands = {key: (method, params) for packed in batch for key, method, params in packed.commands}
        answer = self.client.batch(commands, halt=True)
        results: list[WriteResult] = []
        retry: list[DealWrite] = []
        for packed in batch:
            write = packed.write
            keys = [c[0] for c in packed.commands]
            deal_id = write.deal_id
            contact_id = write.contact.id if write.contact else None
            if packed.contact_ref and packed.contact_ref in answer.results:
                contact_id = str(answer.results[packed.contact_ref])
            elif contact_id is None and write.contact is not None:  # made or matched for another record
                contact_id = next(
                    (self.known_contacts[v] for v in write.contact.comms if v in self.known_contacts), None
                )
            if f"d{write.key}" in answer.results:
                deal_id = str(answer.results[f"d{write.key}"])
            errors = [answer.errors[k] for k in keys if k in answer.errors]
            if errors:
                message = "; ".join(f"{e.error or 'error'}: {e.description}".strip() for e in errors)
                results.append(WriteResult(write.key, False, deal_id, contact_id, message))
            elif all(k in answer.results for k in keys):
                results.append(WriteResult(write.key, True, deal_id, contact_id))
                if contact_id is not None and write.contact is not None:
                    for value in write.contact.comms:
                        self.known_contacts.setdefault(value, contact_id)
            else:  # not reached: send again with what was made of it (a contact may exist now)
                contact = write.contact
                if contact is not None and contact_id is not None and contact.id is None:
                    contact = ContactWrite(id=contact_id, present=frozenset(contact.comms))
                retry.append(replace(write, deal_id=deal_id, contact=contact))
        return results, retry
