"""Read forms of the amoCRM sandbox account's records, shaped after the vendor samples."""

from __future__ import annotations

from integration_sync.sandbox.amocrm_schema import CATALOG_FIELDSET
from integration_sync.sandbox.amocrm_store import Account, Contact, Element, Lead, Note, Record
from integration_sync.sandbox.amocrm_values import render_custom_fields
from integration_sync.sandbox.core import JsonDict


def render_tags(account: Account, record: Record) -> list[JsonDict]:
    return [{"id": t, "name": account.tags[t], "color": None} for t in record.tags]


def render_contact(account: Account, contact: Contact, base: str, enum_key: str, with_: frozenset[str]) -> JsonDict:
    embedded: JsonDict = {"tags": render_tags(account, contact), "companies": []}
    if "leads" in with_:
        embedded["leads"] = [
            {"id": lid, "_links": {"self": {"href": f"{base}/api/v4/leads/{lid}"}}}
            for lid in account.contact_leads.get(contact.id, {})
        ]
    return {
        "id": contact.id,
        "name": contact.name,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "responsible_user_id": contact.responsible_user_id,
        "group_id": 0,
        "created_by": contact.created_by,
        "updated_by": contact.updated_by,
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
        "closest_task_at": None,
        "custom_fields_values": render_custom_fields(account.profile.contact_fieldset, contact.cf, enum_key),
        "account_id": account.profile.account_id,
        "_links": {"self": {"href": f"{base}/api/v4/contacts/{contact.id}"}},
        "_embedded": embedded,
    }


def render_lead(account: Account, lead: Lead, base: str, enum_key: str, with_: frozenset[str]) -> JsonDict:
    embedded: JsonDict = {
        "tags": render_tags(account, lead),
        "companies": [
            {"id": cid, "_links": {"self": {"href": f"{base}/api/v4/companies/{cid}"}}}
            for cid in account.lead_companies.get(lead.id, [])
        ],
    }
    if "contacts" in with_:
        embedded["contacts"] = [
            {"id": cid, "is_main": main, "_links": {"self": {"href": f"{base}/api/v4/contacts/{cid}"}}}
            for cid, main in account.lead_contacts(lead.id)
        ]
    if "catalog_elements" in with_:
        embedded["catalog_elements"] = [
            {"id": i, "metadata": dict(m)}
            for (t, i), m in account.links.get(lead.id, {}).items()
            if t == "catalog_elements"
        ]
    return {
        "id": lead.id,
        "name": lead.name,
        "price": lead.price,
        "responsible_user_id": lead.responsible_user_id,
        "group_id": 0,
        "status_id": lead.status_id,
        "pipeline_id": lead.pipeline_id,
        "loss_reason_id": lead.loss_reason_id,
        "source_id": None,
        "created_by": lead.created_by,
        "updated_by": lead.updated_by,
        "created_at": lead.created_at,
        "updated_at": lead.updated_at,
        "closed_at": lead.closed_at,
        "closest_task_at": None,
        "is_deleted": False,
        "custom_fields_values": render_custom_fields(account.profile.lead_fieldset, lead.cf, enum_key),
        "score": None,
        "account_id": account.profile.account_id,
        "labor_cost": None,
        "is_price_modified_by_robot": False,
        "_links": {"self": {"href": f"{base}/api/v4/leads/{lead.id}"}},
        "_embedded": embedded,
    }


def render_element(account: Account, element: Element, base: str, enum_key: str) -> JsonDict:
    return {
        "id": element.id,
        "name": element.name,
        "created_by": element.created_by,
        "updated_by": element.updated_by,
        "created_at": element.created_at,
        "updated_at": element.updated_at,
        "is_deleted": False,
        "custom_fields_values": render_custom_fields(CATALOG_FIELDSET, element.cf, enum_key),
        "catalog_id": element.catalog_id,
        "account_id": account.profile.account_id,
        "_links": {"self": {"href": f"{base}/api/v4/catalogs/{element.catalog_id}/elements/{element.id}"}},
    }


def render_note(account: Account, note: Note, base: str) -> JsonDict:
    return {
        "id": note.id,
        "entity_id": note.entity_id,
        "created_by": note.created_by,
        "updated_by": note.created_by,
        "created_at": note.created_at,
        "updated_at": note.updated_at,
        "responsible_user_id": note.responsible_user_id,
        "group_id": 0,
        "note_type": note.note_type,
        "params": dict(note.params),
        "account_id": account.profile.account_id,
        "_links": {"self": {"href": f"{base}/api/v4/leads/{note.entity_id}/notes/{note.id}"}},
    }


def all_links(account: Account) -> list[JsonDict]:
    return [
        {
            "entity_id": lead_id,
            "entity_type": "leads",
            "to_entity_id": to_id,
            "to_entity_type": to_type,
            "metadata": dict(meta),
        }
        for lead_id, links in sorted(account.links.items())
        for (to_type, to_id), meta in links.items()
    ]
