"""Notes, entity links and webhook subscriptions of the amoCRM sandbox account (validation and
writes; batches are refused whole like every other amoCRM batch).

A note or link naming an unknown lead is a 400 ``NotSupportedChoice`` on ``entity_id``
(unconfirmed); link metadata follows the samples: ``{quantity, catalog_id}`` for catalog elements,
``{is_main}`` in and ``{main_contact}`` out for contacts.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any, Final

from integration_sync.sandbox.amocrm_store import CATALOG_IDS, Account, Note, Plan
from integration_sync.sandbox.amocrm_values import (
    MISSING_VALUE,
    ValidationFailed,
    check_keys,
    err_choice,
    err_missing,
    err_type,
    int_field,
    request_id_of,
)
from integration_sync.sandbox.core import JsonDict

NOTE_TYPES: Final = frozenset(
    {
        "common",
        "call_in",
        "call_out",
        "service_message",
        "extended_service_message",
        "message_cashier",
        "geolocation",
        "sms_in",
        "sms_out",
        "attachment",
    }
)
TEXT_NOTE_TYPES: Final = frozenset({"common", "service_message", "extended_service_message", "geolocation"})
WEBHOOK_SETTINGS: Final = frozenset(
    {
        f"{action}_{entity}"
        for action in ("add", "update", "delete", "restore", "responsible", "note")
        for entity in ("lead", "contact", "company", "customer", "task")
    }
    | {"status_lead", "add_talk", "update_talk", "add_chat_template_review", "add_message"}
)
NOTE_KEYS: Final = frozenset(
    {
        "entity_id",
        "note_type",
        "params",
        "created_by",
        "updated_by",
        "responsible_user_id",
        "request_id",
        "is_need_to_trigger_digital_pipeline",
        "created_at",
        "updated_at",
    }
)
LINK_KEYS: Final = frozenset({"entity_id", "to_entity_id", "to_entity_type", "metadata", "request_id"})


# ------------------------------------------------------------------ notes
def check_note(
    account: Account, item: Mapping[str, Any], ordinal: int, errors: list[JsonDict], entity_id: int | None
) -> Plan:
    plan = Plan(request_id=request_id_of(item, ordinal))
    check_keys(item, NOTE_KEYS, "", errors)
    target = int_field(item, "entity_id", "", errors, account.leads)
    if entity_id is not None:
        if entity_id not in account.leads:
            errors.append(err_choice("entity_id"))
        plan.target = entity_id
    elif target is MISSING_VALUE:
        if "entity_id" not in item:
            errors.append(err_missing("entity_id"))
    else:
        plan.target = target
    note_type = item.get("note_type")
    if "note_type" not in item:
        errors.append(err_missing("note_type"))
    elif note_type not in NOTE_TYPES:
        errors.append(err_choice("note_type"))
    params = item.get("params")
    if not isinstance(params, dict):
        errors.append(err_missing("params") if params is None else err_type("params", "array"))
    elif note_type in TEXT_NOTE_TYPES and not isinstance(params.get("text"), str):
        errors.append(err_missing("params.text") if "text" not in params else err_type("params.text", "string"))
    for key in ("created_by", "responsible_user_id"):
        value = int_field(item, key, "", errors, (*account.profile.users, 0))
        if value is not MISSING_VALUE:
            plan.values[key] = value
    plan.values["note_type"] = note_type
    plan.values["params"] = params
    return plan


def apply_note(account: Account, plan: Plan) -> Note:
    now = account.ts()
    assert plan.target is not None
    note = Note(
        account.new_id("notes"),
        plan.target,
        str(plan.values["note_type"]),
        dict(plan.values["params"]),
        plan.values.get("created_by", account.profile.users[0]),
        plan.values.get("responsible_user_id", account.profile.users[0]),
        now,
        now,
    )
    account.notes[note.id] = note
    return note


# ------------------------------------------------------------------ links
def check_link(
    account: Account, item: Mapping[str, Any], ordinal: int, errors: list[JsonDict], entity_id: int | None, unlink: bool
) -> Plan:
    plan = Plan(request_id=request_id_of(item, ordinal))
    check_keys(item, LINK_KEYS, "", errors)
    if entity_id is not None:
        if entity_id not in account.leads:
            errors.append(err_choice("entity_id"))
        plan.target = entity_id
    else:
        target = int_field(item, "entity_id", "", errors, account.leads)
        if "entity_id" not in item:
            errors.append(err_missing("entity_id"))
        elif target is not MISSING_VALUE:
            plan.target = target
    to_type = item.get("to_entity_type")
    if to_type not in ("contacts", "companies", "catalog_elements"):
        errors.append(err_missing("to_entity_type") if to_type is None else err_choice("to_entity_type"))
        return plan
    metadata = item.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        errors.append(err_type("metadata", "array"))
        return plan
    metadata = metadata or {}
    pool: Container[int] = ()
    if to_type == "contacts":
        pool = account.contacts
        is_main = metadata.get("is_main", False)
        if not isinstance(is_main, bool):
            errors.append(err_type("metadata.is_main", "bool"))
        plan.values["metadata"] = {"is_main": bool(is_main)}
    elif to_type == "catalog_elements":
        catalog_id = int_field(metadata, "catalog_id", "metadata.", errors, CATALOG_IDS)
        if "catalog_id" not in metadata:
            errors.append(err_missing("metadata.catalog_id"))
        quantity = metadata.get("quantity", 1)
        if not unlink and (isinstance(quantity, bool) or not isinstance(quantity, int | float) or quantity <= 0):
            errors.append(err_type("metadata.quantity", "numeric"))
        if catalog_id is not MISSING_VALUE:
            pool = {eid for eid, e in account.elements.items() if e.catalog_id == catalog_id}
        out: JsonDict = {"quantity": quantity, "catalog_id": catalog_id}
        if "price_id" in metadata:
            out["price_id"] = metadata["price_id"]
        plan.values["metadata"] = out
    to_id = int_field(item, "to_entity_id", "", errors, pool)
    if "to_entity_id" not in item:
        errors.append(err_missing("to_entity_id"))
    plan.values["to_entity_type"] = to_type
    plan.values["to_entity_id"] = to_id
    return plan


# ------------------------------------------------------------------ webhooks
def subscribe(account: Account, body: Any) -> JsonDict:
    errors: list[JsonDict] = []
    if not isinstance(body, dict):
        raise ValidationFailed([{"request_id": "0", "errors": [err_type("", "array")]}])
    check_keys(body, ("destination", "settings", "sort"), "", errors)
    destination = body.get("destination")
    if not isinstance(destination, str) or not destination.startswith(("https://", "http://")):
        errors.append(err_missing("destination") if destination is None else err_choice("destination"))
    settings = body.get("settings")
    if not isinstance(settings, list) or not settings:
        errors.append(err_missing("settings") if settings is None else err_type("settings", "array"))
    else:
        errors.extend(err_choice(f"settings.{i}") for i, s in enumerate(settings) if s not in WEBHOOK_SETTINGS)
    sort = int_field(body, "sort", "", errors)
    if errors:
        raise ValidationFailed([{"request_id": "0", "errors": errors}])
    now = account.ts()
    hook = next((h for h in account.webhooks if h["destination"] == destination), None)
    if hook is None:
        hook = {
            "id": account.new_id("webhooks"),
            "destination": destination,
            "created_at": now,
            "updated_at": now,
            "account_id": account.profile.account_id,
            "created_by": account.profile.users[0],
            "sort": len(account.webhooks) + 1,
            "disabled": False,
            "settings": [],
        }
        account.webhooks.append(hook)
    hook["settings"] = list(dict.fromkeys(settings or []))
    hook["updated_at"] = now
    if sort is not MISSING_VALUE:
        hook["sort"] = sort
    return dict(hook)


def unsubscribe(account: Account, body: Any) -> None:
    destination = body.get("destination") if isinstance(body, dict) else None
    if not isinstance(destination, str):
        raise ValidationFailed([{"request_id": "0", "errors": [err_missing("destination")]}])
    account.webhooks = [h for h in account.webhooks if h["destination"] != destination]
