"""State of the amoCRM sandbox account and the write rules of contacts, leads (plain and
complex), catalog elements, tags and lead links.

Writes are two-phase: every item of a batch is validated into a `Plan` first and the batch is
refused whole (400 ``validation-errors``, nothing stored) when any item fails; only then are the
plans applied. Each record keeps a lowercase search blob of its name and raw custom field values
for ``query`` (a substring match: ``+7999…`` and ``8999…`` are different strings).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from integration_sync.sandbox.amocrm_schema import (
    CATALOG_FIELDSET,
    CATALOGS,
    DEFAULT_PROFILE,
    LOST,
    USERS,
    WON,
    AmoProfile,
    FieldSet,
)
from integration_sync.sandbox.amocrm_values import (
    MISSING_VALUE,
    StoredValues,
    apply_custom_fields,
    check_keys,
    decode_custom_fields,
    err_choice,
    err_missing,
    err_type,
    int_field,
    is_int,
    request_id_of,
    search_strings,
    str_field,
)
from integration_sync.sandbox.core import JsonDict

CATALOG_IDS: Final = frozenset(c["id"] for c in CATALOGS)
_COMMON_KEYS: Final = frozenset(
    {
        "name",
        "responsible_user_id",
        "created_by",
        "updated_by",
        "created_at",
        "updated_at",
        "custom_fields_values",
        "tags_to_add",
        "_embedded",
        "request_id",
    }
)
CONTACT_ADD_KEYS: Final = _COMMON_KEYS | {"first_name", "last_name"}
CONTACT_UPDATE_KEYS: Final = CONTACT_ADD_KEYS | {"id", "tags_to_delete"}
LEAD_ADD_KEYS: Final = _COMMON_KEYS | {"price", "status_id", "pipeline_id", "closed_at", "loss_reason_id"}
LEAD_UPDATE_KEYS: Final = LEAD_ADD_KEYS | {"id", "tags_to_delete"}
ELEMENT_ADD_KEYS: Final = frozenset({"name", "custom_fields_values", "request_id", "created_by", "updated_by"})
ELEMENT_UPDATE_KEYS: Final = ELEMENT_ADD_KEYS | {"id"}


# ------------------------------------------------------------------------------------ entities
@dataclass
class Record:
    id: int
    name: str
    created_by: int
    updated_by: int
    created_at: int
    updated_at: int
    cf: dict[int, StoredValues] = field(default_factory=dict)
    tags: list[int] = field(default_factory=list)
    blob: str = ""

    def reindex(self, extra: Iterable[str] = ()) -> None:
        self.blob = "\x00".join([self.name, *extra, *search_strings(self.cf)]).lower()


@dataclass
class Contact(Record):
    first_name: str = ""
    last_name: str = ""
    responsible_user_id: int = USERS[0]

    def reindex(self, extra: Iterable[str] = ()) -> None:
        super().reindex([self.first_name, self.last_name, *extra])


@dataclass
class Lead(Record):
    price: int = 0
    status_id: int = 0
    pipeline_id: int = 0
    responsible_user_id: int = USERS[0]
    closed_at: int | None = None
    loss_reason_id: int | None = None


@dataclass
class Element(Record):
    catalog_id: int = 0


@dataclass
class Note:
    id: int
    entity_id: int
    note_type: str
    params: JsonDict
    created_by: int
    responsible_user_id: int
    created_at: int
    updated_at: int


@dataclass
class Plan:
    """Validated, normalized changes of one item, applied only when the whole batch is valid."""

    values: JsonDict = field(default_factory=dict)
    cf: dict[int, StoredValues] = field(default_factory=dict)
    tags_add: list[tuple[str, Any]] = field(default_factory=list)
    tags_del: list[tuple[str, Any]] = field(default_factory=list)
    tags_set: list[tuple[str, Any]] | None = None
    contacts: list[tuple[int, bool]] = field(default_factory=list)
    target: int | None = None
    request_id: str = ""
    extra: JsonDict = field(default_factory=dict)


class Account:
    """Every entity of the sandbox account. Callers hold the service lock."""

    def __init__(
        self,
        now: Callable[[], float],
        lead_query_includes_contacts: bool = False,
        profile: AmoProfile = DEFAULT_PROFILE,
    ) -> None:
        self.now = now
        self.profile = profile
        # (lead id, old status, old pipeline) of every status change, drained by the webhook sender
        self.status_changes: list[tuple[int, int, int]] = []
        self.lead_query_includes_contacts = lead_query_includes_contacts
        self.contacts: dict[int, Contact] = {}
        self.leads: dict[int, Lead] = {}
        self.elements: dict[int, Element] = {}
        self.notes: dict[int, Note] = {}
        self.links: dict[int, dict[tuple[str, int], JsonDict]] = {}  # lead id -> (type, id) -> metadata
        self.contact_leads: dict[int, dict[int, None]] = {}
        self.tags: dict[int, str] = {}
        self.tag_ids: dict[str, int] = {}
        self.webhooks: list[JsonDict] = []
        self.companies: dict[int, Record] = {}  # read-only: only a seed adds them
        self.lead_companies: dict[int, list[int]] = {}
        self.next_id = {
            "contacts": 20000001,
            "leads": 30000001,
            "elements": 40000001,
            "notes": 50000001,
            "tags": 60001,
            "webhooks": 70001,
            "companies": 80000001,
        }

    def new_id(self, kind: str) -> int:
        value = self.next_id[kind]
        self.next_id[kind] += 1
        return value

    def ts(self) -> int:
        return int(self.now())

    # ------------------------------------------------------------------ shared validation
    def _tag_specs(self, raw: Any, path: str, errors: list[JsonDict]) -> list[tuple[str, Any]]:
        specs: list[tuple[str, Any]] = []
        if not isinstance(raw, list):
            errors.append(err_type(path, "array"))
            return specs
        for i, tag in enumerate(raw):
            if isinstance(tag, dict) and is_int(tag.get("id")):
                if tag["id"] not in self.tags:
                    errors.append(err_choice(f"{path}.{i}.id"))
                specs.append(("id", tag["id"]))
            elif isinstance(tag, dict) and isinstance(tag.get("name"), str) and tag["name"].strip():
                specs.append(("name", tag["name"].strip()))
            else:
                errors.append(err_missing(f"{path}.{i}.name"))
        return specs

    def _common(
        self, item: Mapping[str, Any], plan: Plan, fieldset: FieldSet, prefix: str, errors: list[JsonDict]
    ) -> None:
        users = (*self.profile.users, 0)
        for key in ("created_by", "updated_by"):
            value = int_field(item, key, prefix, errors, users)
            if value is not MISSING_VALUE:
                plan.values[key] = value
        value = int_field(item, "responsible_user_id", prefix, errors, self.profile.users)
        if value is not MISSING_VALUE:
            plan.values["responsible_user_id"] = value
        for key in ("created_at", "updated_at"):
            value = int_field(item, key, prefix, errors)
            if value is not MISSING_VALUE:
                plan.values[key] = value
        name = str_field(item, "name", prefix, errors)
        if name is not MISSING_VALUE:
            plan.values["name"] = name
        if "custom_fields_values" in item:
            path = f"{prefix}custom_fields_values"
            plan.cf = decode_custom_fields(fieldset, item["custom_fields_values"], path, errors)
        if "tags_to_add" in item:
            plan.tags_add = self._tag_specs(item["tags_to_add"], f"{prefix}tags_to_add", errors)
        if "tags_to_delete" in item:
            plan.tags_del = self._tag_specs(item["tags_to_delete"], f"{prefix}tags_to_delete", errors)

    def _embedded(
        self, item: Mapping[str, Any], plan: Plan, allowed: Iterable[str], prefix: str, errors: list[JsonDict]
    ) -> JsonDict:
        embedded = item.get("_embedded")
        if embedded is None:
            return {}
        if not isinstance(embedded, dict):
            errors.append(err_type(f"{prefix}_embedded", "array"))
            return {}
        check_keys(embedded, allowed, f"{prefix}_embedded.", errors)
        if "tags" in embedded:
            if embedded["tags"] is None:
                plan.tags_set = []
            else:
                plan.tags_set = self._tag_specs(embedded["tags"], f"{prefix}_embedded.tags", errors)
        companies = embedded.get("companies")
        if companies is not None and not plan.extra.get("complex"):
            if not isinstance(companies, list):
                errors.append(err_type(f"{prefix}_embedded.companies", "array"))
            else:  # the sandbox account has no companies, so no id can be linked
                errors.extend(err_choice(f"{prefix}_embedded.companies.{i}.id") for i in range(len(companies)))
        return embedded

    def _resolve_tags(self, specs: list[tuple[str, Any]]) -> list[int]:
        ids = []
        for kind, value in specs:
            if kind == "id":
                ids.append(int(value))
                continue
            tag_id = self.tag_ids.get(str(value).lower())
            if tag_id is None:
                tag_id = self.new_id("tags")
                self.tags[tag_id] = str(value)
                self.tag_ids[str(value).lower()] = tag_id
            ids.append(tag_id)
        return ids

    def _apply_common(self, record: Record, plan: Plan, fieldset: FieldSet) -> None:
        for key in ("name", "created_by", "updated_by", "created_at", "updated_at", "responsible_user_id"):
            if key in plan.values and hasattr(record, key):
                setattr(record, key, plan.values[key])
        apply_custom_fields(record.cf, plan.cf)
        if plan.tags_set is not None:
            record.tags = list(dict.fromkeys(self._resolve_tags(plan.tags_set)))
        for tag_id in self._resolve_tags(plan.tags_add):
            if tag_id not in record.tags:
                record.tags.append(tag_id)
        for tag_id in self._resolve_tags(plan.tags_del):
            if tag_id in record.tags:
                record.tags.remove(tag_id)

    # ------------------------------------------------------------------ contacts
    def check_contact(
        self, item: Mapping[str, Any], ordinal: int, errors: list[JsonDict], update: bool, prefix: str = ""
    ) -> Plan:
        plan = Plan(request_id=request_id_of(item, ordinal))
        check_keys(item, CONTACT_UPDATE_KEYS if update else CONTACT_ADD_KEYS, prefix, errors)
        if update:
            target = int_field(item, "id", prefix, errors, self.contacts)
            if target is MISSING_VALUE:
                if "id" not in item:
                    errors.append(err_missing(f"{prefix}id"))
            else:
                plan.target = target
        self._common(item, plan, self.profile.contact_fieldset, prefix, errors)
        for key in ("first_name", "last_name"):
            value = str_field(item, key, prefix, errors)
            if value is not MISSING_VALUE:
                plan.values[key] = value
        self._embedded(item, plan, ("tags", "companies"), prefix, errors)
        return plan

    def apply_contact(self, plan: Plan) -> Contact:
        now = self.ts()
        if plan.target is None:
            contact = Contact(self.new_id("contacts"), "", self.profile.users[0], self.profile.users[0], now, now)
            self.contacts[contact.id] = contact
        else:
            contact = self.contacts[plan.target]
            contact.updated_at = now
        self._apply_common(contact, plan, self.profile.contact_fieldset)
        for key in ("first_name", "last_name"):
            if key in plan.values:
                setattr(contact, key, plan.values[key])
        if "name" not in plan.values and ({"first_name", "last_name"} & set(plan.values) or plan.target is None):
            contact.name = " ".join(p for p in (contact.first_name, contact.last_name) if p)
        contact.reindex()
        return contact

    # ------------------------------------------------------------------ leads
    def check_lead(
        self, item: Mapping[str, Any], ordinal: int, errors: list[JsonDict], update: bool, complex_: bool = False
    ) -> Plan:
        plan = Plan(request_id=request_id_of(item, ordinal))
        plan.extra["complex"] = complex_
        allowed = set(LEAD_UPDATE_KEYS if update else LEAD_ADD_KEYS)
        check_keys(item, allowed, "", errors)
        lead: Lead | None = None
        if update:
            target = int_field(item, "id", "", errors, self.leads)
            if target is MISSING_VALUE:
                if "id" not in item:
                    errors.append(err_missing("id"))
            else:
                plan.target = target
                lead = self.leads[target]
        self._common(item, plan, self.profile.lead_fieldset, "", errors)
        price = int_field(item, "price", "", errors)
        if price is not MISSING_VALUE:
            plan.values["price"] = price
        closed_at = int_field(item, "closed_at", "", errors, nullable=True)
        if closed_at is not MISSING_VALUE:
            plan.values["closed_at"] = closed_at
        loss = int_field(item, "loss_reason_id", "", errors, (), nullable=True)  # no loss reasons configured
        if loss is not MISSING_VALUE:
            plan.values["loss_reason_id"] = loss
        self._check_status(item, lead, plan, errors)
        embedded_keys = (
            ("tags", "contacts", "companies", "metadata", "source")
            if complex_
            else (("tags",) if update else ("tags", "contacts", "companies"))
        )
        embedded = self._embedded(item, plan, embedded_keys, "", errors)
        if not complex_ and "contacts" in embedded:
            self._check_lead_contacts(embedded["contacts"], plan, errors)
        return plan

    def _check_status(self, item: Mapping[str, Any], lead: Lead | None, plan: Plan, errors: list[JsonDict]) -> None:
        pipelines = self.profile.pipelines_by_id
        pipeline_id = int_field(item, "pipeline_id", "", errors, pipelines)
        status_id = int_field(item, "status_id", "", errors)
        if pipeline_id is MISSING_VALUE and status_id is MISSING_VALUE:
            if lead is None and "pipeline_id" not in item and "status_id" not in item:
                plan.values["pipeline_id"] = self.profile.main_pipeline.id
                plan.values["status_id"] = self.profile.main_pipeline.first_open.id
            return
        if "pipeline_id" in item and pipeline_id is MISSING_VALUE:
            return
        if "status_id" in item and status_id is MISSING_VALUE:
            return
        if status_id in (WON, LOST) and pipeline_id is MISSING_VALUE and lead is not None:
            errors.append(err_missing("pipeline_id"))  # api-facts: a move to 142/143 must name the pipeline
            return
        if pipeline_id is MISSING_VALUE:
            pipeline = pipelines[lead.pipeline_id] if lead is not None else self.profile.main_pipeline
        else:
            pipeline = pipelines[pipeline_id]
        if status_id is MISSING_VALUE:
            if lead is not None and lead.pipeline_id == pipeline.id:
                return
            status = pipeline.first_open
        else:
            found = pipeline.status(status_id)
            if found is None or found.type == 1:  # unsorted leads come only from /leads/unsorted
                errors.append(err_choice("status_id"))
                return
            status = found
        plan.values["pipeline_id"] = pipeline.id
        plan.values["status_id"] = status.id

    def _check_lead_contacts(self, raw: Any, plan: Plan, errors: list[JsonDict]) -> None:
        if not isinstance(raw, list):
            errors.append(err_type("_embedded.contacts", "array"))
            return
        for i, ref in enumerate(raw):
            path = f"_embedded.contacts.{i}"
            if not isinstance(ref, dict):
                errors.append(err_type(path, "array"))
                continue
            check_keys(ref, ("id", "is_main"), f"{path}.", errors)
            contact_id = int_field(ref, "id", f"{path}.", errors, self.contacts)
            if "id" not in ref:
                errors.append(err_missing(f"{path}.id"))
            is_main = ref.get("is_main", False)
            if not isinstance(is_main, bool):
                errors.append(err_type(f"{path}.is_main", "bool"))
            elif contact_id is not MISSING_VALUE:
                plan.contacts.append((contact_id, is_main))

    def apply_lead(self, plan: Plan) -> Lead:
        now = self.ts()
        values = plan.values
        if plan.target is None:
            lead = Lead(self.new_id("leads"), "", self.profile.users[0], self.profile.users[0], now, now)
            self.leads[lead.id] = lead
            lead.pipeline_id = values["pipeline_id"]
            lead.status_id = values["status_id"]
            lead.closed_at = now if lead.status_id in (WON, LOST) else None
            lead.name = f"Сделка #{lead.id}"
        else:
            lead = self.leads[plan.target]
            lead.updated_at = now
            if "status_id" in values and (values["status_id"], values["pipeline_id"]) != (
                lead.status_id,
                lead.pipeline_id,
            ):
                self.status_changes.append((lead.id, lead.status_id, lead.pipeline_id))
                lead.pipeline_id = values["pipeline_id"]
                lead.status_id = values["status_id"]
                lead.closed_at = now if lead.status_id in (WON, LOST) else None
        self._apply_common(lead, plan, self.profile.lead_fieldset)
        for key in ("price", "closed_at", "loss_reason_id"):
            if key in values:
                setattr(lead, key, values[key])
        for contact_id, is_main in plan.contacts:
            self.link(lead.id, "contacts", contact_id, {"is_main": is_main})
        self.reindex_lead(lead)
        return lead

    def reindex_lead(self, lead: Lead) -> None:
        extra: list[str] = []
        if self.lead_query_includes_contacts:
            for to_type, to_id in self.links.get(lead.id, {}):
                if to_type == "contacts" and to_id in self.contacts:
                    extra.append(self.contacts[to_id].blob)
        lead.reindex(extra)

    # ------------------------------------------------------------------ complex
    def check_complex(self, item: Mapping[str, Any], ordinal: int, errors: list[JsonDict]) -> Plan:
        plan = self.check_lead(item, ordinal, errors, update=False, complex_=True)
        embedded = item.get("_embedded") if isinstance(item.get("_embedded"), dict) else {}
        assert isinstance(embedded, dict)
        contacts = embedded.get("contacts")
        if contacts is not None:
            if not isinstance(contacts, list):
                errors.append(err_type("_embedded.contacts", "array"))
            elif len(contacts) > 1:
                errors.append(
                    {
                        "code": "TooManyEntities",
                        "path": "_embedded.contacts",
                        "detail": "This collection should contain 1 element or less.",
                    }
                )
            elif contacts:
                if not isinstance(contacts[0], dict):
                    errors.append(err_type("_embedded.contacts.0", "array"))
                else:
                    plan.extra["contact"] = self.check_contact(contacts[0], 0, errors, False, "_embedded.contacts.0.")
        companies = embedded.get("companies")
        if companies is not None:
            if not isinstance(companies, list):
                errors.append(err_type("_embedded.companies", "array"))
            elif len(companies) > 1:
                errors.append(
                    {
                        "code": "TooManyEntities",
                        "path": "_embedded.companies",
                        "detail": "This collection should contain 1 element or less.",
                    }
                )
            elif companies:
                company = companies[0]
                if not isinstance(company, dict) or not isinstance(company.get("name", ""), str):
                    errors.append(err_type("_embedded.companies.0.name", "string"))
                else:
                    plan.extra["company"] = True
        return plan

    def apply_complex(self, plan: Plan) -> JsonDict:
        contact_id: int | None = None
        if isinstance(plan.extra.get("contact"), Plan):
            contact_id = self.apply_contact(plan.extra["contact"]).id
            plan.contacts = [(contact_id, True)]
        company_id = self.new_id("companies") if plan.extra.get("company") else None
        lead = self.apply_lead(plan)
        return {
            "id": lead.id,
            "contact_id": contact_id,
            "company_id": company_id,
            "request_id": [plan.request_id],
            "merged": False,
        }

    # ------------------------------------------------------------------ catalog elements
    def check_element(
        self, catalog_id: int, item: Mapping[str, Any], ordinal: int, errors: list[JsonDict], update: bool
    ) -> Plan:
        plan = Plan(request_id=request_id_of(item, ordinal))
        check_keys(item, ELEMENT_UPDATE_KEYS if update else ELEMENT_ADD_KEYS, "", errors)
        if update:
            ids = {eid for eid, e in self.elements.items() if e.catalog_id == catalog_id}
            target = int_field(item, "id", "", errors, ids)
            if target is MISSING_VALUE:
                if "id" not in item:
                    errors.append(err_missing("id"))
            else:
                plan.target = target
        elif "name" not in item:
            errors.append(err_missing("name"))
        self._common(item, plan, CATALOG_FIELDSET, "", errors)
        if isinstance(plan.values.get("name"), str) and not plan.values["name"].strip():
            errors.append({"code": "NotBlank", "path": "name", "detail": "This value should not be blank."})
        plan.extra["catalog_id"] = catalog_id
        return plan

    def apply_element(self, plan: Plan) -> Element:
        now = self.ts()
        if plan.target is None:
            element = Element(self.new_id("elements"), "", self.profile.users[0], self.profile.users[0], now, now)
            element.catalog_id = int(plan.extra["catalog_id"])
            self.elements[element.id] = element
        else:
            element = self.elements[plan.target]
            element.updated_at = now
        self._apply_common(element, plan, CATALOG_FIELDSET)
        element.reindex()
        return element

    # ------------------------------------------------------------------ links
    def link(self, lead_id: int, to_type: str, to_id: int, metadata: JsonDict) -> JsonDict:
        links = self.links.setdefault(lead_id, {})
        if to_type == "contacts":
            has_contacts = any(t == "contacts" for t, _ in links)
            main = bool(metadata.get("is_main")) or not has_contacts
            if main:
                for (t, _), meta in links.items():
                    if t == "contacts":
                        meta["main_contact"] = False
            elif (to_type, to_id) in links:
                main = bool(links[(to_type, to_id)].get("main_contact"))
            links[(to_type, to_id)] = {"main_contact": main}
            self.contact_leads.setdefault(to_id, {})[lead_id] = None
        else:
            links[(to_type, to_id)] = dict(metadata)
        return {
            "entity_id": lead_id,
            "entity_type": "leads",
            "to_entity_id": to_id,
            "to_entity_type": to_type,
            "metadata": dict(links[(to_type, to_id)]),
        }

    def unlink(self, lead_id: int, to_type: str, to_id: int) -> None:
        links = self.links.get(lead_id, {})
        meta = links.pop((to_type, to_id), None)
        if to_type == "contacts":
            self.contact_leads.get(to_id, {}).pop(lead_id, None)
            if meta and meta.get("main_contact"):
                first = next(((t, i) for t, i in links if t == "contacts"), None)
                if first is not None:
                    links[first]["main_contact"] = True

    def lead_contacts(self, lead_id: int) -> list[tuple[int, bool]]:
        return [
            (i, bool(m.get("main_contact"))) for (t, i), m in self.links.get(lead_id, {}).items() if t == "contacts"
        ]
