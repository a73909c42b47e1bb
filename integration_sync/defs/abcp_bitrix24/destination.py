"""Bitrix24 as the sync engine's destination for ABCP users: one contact and one deal per user.

Writes go through `batch` (≤ 50 commands, one request against the 2 req/s bucket): a new user is a
`crm.contact.add` plus a `crm.deal.add` whose CONTACT_ID is `$result[<contact command>]`, so 25 new
users cost one request. Batches run with halt=1: when a command fails, the commands before it stand,
its record is rejected, and the records after it go into the next batch.

Identity: before creating, a user's deal is looked up by the ABCP-user-id UF field and its contact
by ORIGINATOR_ID/ORIGIN_ID, 50 ids per command (so a create whose answer was lost, or a whole lost
warehouse, is found, not repeated), then a contact with the same phone or email is reused
(crm.duplicate.findbycomm) instead of duplicated. A deal found that way is compared with what the
lookup read and only the fields that differ are sent. A lookup that fails inside its batch raises:
it never reads as "not found".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from integration_sync.connectors.bitrix24 import Bitrix24Client
from integration_sync.defs.abcp_bitrix24.mapping import ORIGINATOR_ID, DealSettings
from integration_sync.sync.engine import Change, Outcome
from integration_sync.sync.normalize import normalize_email, normalize_phone

MAX_COMMANDS = 50
_SCALAR_CONTACT_FIELDS = ("NAME", "SECOND_NAME", "LAST_NAME")


@dataclass
class _Packed:
    """One record's commands inside one batch; `contact_ref` names the command creating its contact."""

    change: Change
    commands: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    contact_ref: str | None = None


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _multi(values: Sequence[str]) -> list[dict[str, str]]:
    return [{"VALUE": value, "VALUE_TYPE": "WORK"} for value in values]


class UserDealsDestination:
    """Pushes ABCP users' contacts and deals to one Bitrix24 portal."""

    name = "bitrix24"
    primary_entity = "deal"
    batch_size = 50  # records per engine chunk; packed into batches of <= 50 commands

    def __init__(self, client: Bitrix24Client, settings: DealSettings) -> None:
        self.client = client
        self.settings = settings
        # phone/email -> contact id of contacts created or matched during this run
        self._known_contacts: dict[str, str] = {}
        # what resolve() saw in Bitrix24 (deal id -> owned fields, contact id -> phones/emails), so a
        # record matched there without a warehouse history is compared, not re-sent or re-read
        self._seen_deals: dict[str, dict[str, Any]] = {}
        self._seen_contacts: dict[str, set[str]] = {}

    def requests_used(self) -> int:
        return self.client.stats.requests

    # ---- identity -------------------------------------------------------------------------

    def resolve(self, changes: Sequence[Change]) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        keys = [c.key for c in changes]
        uf = self.settings.uf_user_id
        commands: dict[str, tuple[str, Mapping[str, Any]]] = {}
        for i, chunk in enumerate(_chunks(keys, 50)):
            commands[f"deals{i}"] = (
                "crm.deal.list",
                {
                    "filter": {f"@{uf}": list(chunk), "CATEGORY_ID": self.settings.category_id},
                    "select": ["ID", "CONTACT_ID", *self._deal_fields()],
                    "order": {"ID": "ASC"},
                },
            )
            commands[f"contacts{i}"] = (
                "crm.contact.list",
                {
                    "filter": {"ORIGINATOR_ID": ORIGINATOR_ID, "@ORIGIN_ID": list(chunk)},
                    "select": ["ID", "ORIGIN_ID", "PHONE", "EMAIL"],
                    "order": {"ID": "ASC"},
                },
            )
        for name, rows in self._run_reads(commands).items():
            for row in rows if isinstance(rows, list) else []:
                if name.startswith("deals"):
                    key = str(row.get(uf) or "")
                    if key and key not in found:
                        ids = {"deal": str(row["ID"])}
                        self._seen_deals[ids["deal"]] = row
                        if str(row.get("CONTACT_ID") or "0") not in ("", "0"):
                            ids["contact"] = str(row["CONTACT_ID"])
                        found[key] = ids
                else:
                    key = str(row.get("ORIGIN_ID") or "")
                    self._seen_contacts[str(row["ID"])] = self._comm_set(row)
                    if key:
                        found.setdefault(key, {}).setdefault("contact", str(row["ID"]))
        self._match_by_comm(changes, found)
        return found

    def _deal_fields(self) -> list[str]:
        settings = self.settings
        return ["TITLE", settings.uf_user_id, settings.uf_inn, settings.uf_saldo, "ORIGINATOR_ID", "ORIGIN_ID"]

    def _comm_set(self, row: Mapping[str, Any]) -> set[str]:
        """A contact row's phones and emails, normalized as the payload's are."""
        values: set[str] = set()
        for item in row.get("PHONE") or []:
            phone = normalize_phone(item.get("VALUE"), self.settings.default_region)
            if phone:
                values.add(phone)
        for item in row.get("EMAIL") or []:
            email = normalize_email(item.get("VALUE"))
            if email:
                values.add(email)
        return values

    def _match_by_comm(self, changes: Sequence[Change], found: dict[str, dict[str, str]]) -> None:
        """Reuse an existing contact with the user's phone (first) or email."""
        need = [c for c in changes if "contact" not in found.get(c.key, {}) and "contact" not in c.target_ids]
        phones = sorted({p for c in need for p in c.payload["contact"]["PHONE"]})
        emails = sorted({e for c in need for e in c.payload["contact"]["EMAIL"]})
        if not phones and not emails:
            return
        matches = self.client.find_contact_ids_by_comm(phones, emails)
        for change in need:
            contact = change.payload["contact"]
            for value in [*contact["PHONE"], *contact["EMAIL"]]:
                ids = matches.get(value)
                if ids:
                    found.setdefault(change.key, {})["contact"] = str(min(int(i) for i in ids))
                    break

    def _run_reads(self, commands: Mapping[str, tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
        """Every read's full result. A command that failed inside its batch raises (retryable):
        read as "not found", it would make the engine create the contact and deal a second time."""
        return self.client.read_batch(commands)

    # ---- writes ---------------------------------------------------------------------------

    def push(self, changes: Sequence[Change]) -> list[Outcome]:
        current = self._current_multifields(changes)
        outcomes: list[Outcome] = []
        queue = list(changes)
        while queue:
            batch: list[_Packed] = []
            new_contacts: dict[str, str] = {}  # phone/email -> command key creating it in this batch
            size = 0
            while queue:
                packed = self._pack(queue[0], current, new_contacts)
                if batch and size + len(packed.commands) > MAX_COMMANDS:
                    break
                queue.pop(0)
                if not packed.commands:
                    outcomes.append(Outcome(packed.change.key, "succeeded", "update", dict(packed.change.target_ids)))
                    continue
                if packed.contact_ref == f"c{packed.change.key}":
                    for value in _comm_values(packed.change):
                        new_contacts.setdefault(value, packed.contact_ref)
                batch.append(packed)
                size += len(packed.commands)
            if batch:
                done, retry = self._execute(batch)
                outcomes.extend(done)
                queue[:0] = retry
        return outcomes

    def _pack(self, change: Change, current: Mapping[str, set[str]], new_contacts: Mapping[str, str]) -> _Packed:
        """The commands for one record, given what is known now (ids, contacts made this run)."""
        packed = _Packed(change)
        ids = change.target_ids
        contact = change.payload["contact"]
        key = change.key
        if "deal" not in ids:
            contact_id = ids.get("contact") or next(
                (self._known_contacts[v] for v in _comm_values(change) if v in self._known_contacts), None
            )
            if contact_id is None:
                packed.contact_ref = next((new_contacts[v] for v in _comm_values(change) if v in new_contacts), None)
                if packed.contact_ref is None:
                    packed.contact_ref = f"c{key}"
                    fields = {k: contact[k] for k in (*_SCALAR_CONTACT_FIELDS, "ORIGINATOR_ID", "ORIGIN_ID")}
                    fields["PHONE"] = _multi(contact["PHONE"])
                    fields["EMAIL"] = _multi(contact["EMAIL"])
                    packed.commands.append((f"c{key}", "crm.contact.add", {"fields": fields}))
                contact_id = f"$result[{packed.contact_ref}]"
            deal_fields = {**change.payload["deal"], **change.payload["deal_create"], "CONTACT_ID": contact_id}
            packed.commands.append((f"d{key}", "crm.deal.add", {"fields": deal_fields}))
            return packed
        previous = change.previous or {}
        old_deal = previous.get("deal") or {}
        seen = self._seen_deals.get(ids["deal"]) if not previous else None
        if seen is not None:  # matched in Bitrix24 with no history here: send only what differs there
            deal_diff = {k: v for k, v in change.payload["deal"].items() if not _same_value(v, seen.get(k))}
        else:
            deal_diff = {k: v for k, v in change.payload["deal"].items() if not previous or old_deal.get(k) != v}
        if deal_diff:
            packed.commands.append((f"u{key}", "crm.deal.update", {"id": ids["deal"], "fields": deal_diff}))
        contact_id = ids.get("contact")
        if contact_id:
            fields = self._contact_update(change, current.get(contact_id))
            if fields:
                packed.commands.append((f"k{key}", "crm.contact.update", {"id": contact_id, "fields": fields}))
        return packed

    def _execute(self, batch: Sequence[_Packed]) -> tuple[list[Outcome], list[Change]]:
        """Run one batch (halt=1); returns outcomes and the changes the halt left unreached."""
        commands = {key: (method, params) for packed in batch for key, method, params in packed.commands}
        answer = self.client.batch(commands, halt=True)
        outcomes: list[Outcome] = []
        retry: list[Change] = []
        for packed in batch:
            change = packed.change
            keys = [c[0] for c in packed.commands]
            ids = dict(change.target_ids)
            if packed.contact_ref and packed.contact_ref in answer.results:
                ids["contact"] = str(answer.results[packed.contact_ref])
            if f"d{change.key}" in answer.results:
                ids["deal"] = str(answer.results[f"d{change.key}"])
            errors = [answer.errors[k] for k in keys if k in answer.errors]
            if errors:
                message = "; ".join(f"{e.error or 'error'}: {e.description}".strip() for e in errors)
                outcomes.append(Outcome(change.key, "rejected", change.operation, ids, message))
            elif all(k in answer.results for k in keys):
                outcomes.append(Outcome(change.key, "succeeded", change.operation, ids))
                if "contact" in ids:
                    for value in _comm_values(change):
                        self._known_contacts.setdefault(value, ids["contact"])
            else:
                retry.append(replace(change, target_ids=ids))
        return outcomes, retry

    def _contact_update(self, change: Change, present: set[str] | None) -> dict[str, Any]:
        """Changed name fields, plus phones/emails the contact does not have yet (never duplicated)."""
        contact = change.payload["contact"]
        old = (change.previous or {}).get("contact") or {}
        fields: dict[str, Any] = {}
        if change.previous is not None:
            fields = {k: contact[k] for k in _SCALAR_CONTACT_FIELDS if old.get(k) != contact[k]}
        for kind in ("PHONE", "EMAIL"):
            known = set(old.get(kind) or []) if present is None else present
            new_values = [v for v in contact[kind] if v not in known]
            if new_values:
                fields[kind] = _multi(new_values)
        return fields

    def _current_multifields(self, changes: Sequence[Change]) -> dict[str, set[str]]:
        """Phones/emails a contact really has, for updates whose last push is unconfirmed."""
        wanted = {
            c.target_ids["contact"]
            for c in changes
            if "deal" in c.target_ids and "contact" in c.target_ids and (c.in_flight or c.previous is None)
        }
        present = {cid: self._seen_contacts[cid] for cid in wanted if cid in self._seen_contacts}
        ids = sorted(wanted - set(present))
        if not ids:
            return present
        commands = {
            f"m{i}": ("crm.contact.list", {"filter": {"@ID": list(chunk)}, "select": ["ID", "PHONE", "EMAIL"]})
            for i, chunk in enumerate(_chunks(ids, 50))
        }
        for rows in self._run_reads(commands).values():
            for row in rows if isinstance(rows, list) else []:
                present[str(row["ID"])] = self._comm_set(row)
        return present


def _comm_values(change: Change) -> list[str]:
    contact = change.payload["contact"]
    return [*contact["PHONE"], *contact["EMAIL"]]


def _same_value(sent: Any, stored: Any) -> bool:
    """Whether Bitrix24 already holds what would be sent (it answers strings: "-1582.5", "" for None)."""
    if sent is None or sent == "":
        return stored is None or stored == ""
    if isinstance(sent, int | float) and not isinstance(sent, bool):
        try:
            return float(str(stored)) == float(sent)
        except ValueError:
            return False
    return str(sent) == str(stored if stored is not None else "")
