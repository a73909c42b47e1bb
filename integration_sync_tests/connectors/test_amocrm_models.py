"""amoCRM wire models are read one way, through typed attributes: unknown keys survive in
``model_extra``, and the attributes the flows read hold up on the messy variants amoCRM sends
(nulls, PHP's ``[]`` for an empty object, ids as strings, request ids as ints or lists)."""

from __future__ import annotations

from typing import Any

import pytest

from integration_sync.connectors.amocrm import (
    AmoModel,
    CatalogElement,
    ComplexLeadResult,
    Contact,
    Created,
    Lead,
    Link,
    Note,
    read_enum_ids,
    read_field_values,
)
from integration_sync.connectors.amocrm import _align as align

MESSY_LEAD: dict[str, Any] = {
    "id": 7,
    "name": "Заказ Kaspi №1",
    "status_id": "142",
    "pipeline_id": 3104455,
    "account_id": 17079858,
    "custom_fields_values": [
        {"field_id": "900101", "field_code": None, "values": [{"value": "K-1"}]},
        {"field_id": 900110, "field_type": "multiselect", "values": [{"value": "Русский", "enum_id": 910001}]},
        {"field_id": 900112, "values": None},
    ],
    "_links": {"self": {"href": "https://example.amocrm.ru/api/v4/leads/7"}},
    "_embedded": {
        "tags": None,
        "contacts": [{"id": 1, "is_main": False}, {"id": 2, "is_main": True}],
        "catalog_elements": [{"id": 5, "metadata": []}, {"id": 6, "metadata": {"quantity": 2, "catalog_id": 7101}}],
    },
}


def test_the_dict_style_shim_is_gone() -> None:
    lead = Lead.model_validate(MESSY_LEAD)
    assert not hasattr(AmoModel, "get") and not hasattr(AmoModel, "__getitem__")
    with pytest.raises(TypeError):
        lead["id"]  # type: ignore[index]


def test_unknown_keys_survive_and_typed_reads_hold_on_messy_variants() -> None:
    lead = Lead.model_validate(MESSY_LEAD)
    assert lead.model_extra == {"account_id": 17079858, "_links": MESSY_LEAD["_links"]}
    assert lead.is_closed and lead.main_contact_id == 2 and lead.contact_ids == [1, 2]
    assert lead.field_values(900101) == ["K-1"] and lead.field_value("900101") == "K-1"
    assert lead.enum_ids(900110) == [910001] and lead.field_values(900112) == []
    first, second = lead.embedded.catalog_elements
    assert first.metadata is None  # PHP's empty object
    assert second.metadata is not None and (second.metadata.quantity, second.metadata.catalog_id) == (2, 7101)
    assert lead.embedded.tags == [] and Lead.model_validate({"id": 8, "_embedded": None}).contact_ids == []
    fresh = Contact.model_validate({"id": 3, "custom_fields_values": None, "_embedded": {"leads": None}})
    assert fresh.phones() == [] and fresh.lead_ids == [] and fresh.field_value("PHONE") is None


def test_the_same_reads_from_wire_dicts_and_from_models() -> None:
    raw = MESSY_LEAD["custom_fields_values"]
    typed = Lead.model_validate(MESSY_LEAD).custom_fields_values
    for source in (raw, typed, [*raw, "junk", None]):
        assert read_field_values(source, 900101) == ["K-1"]
        assert read_enum_ids(source, "900110") == [910001]


def test_notes_and_links_read_typed() -> None:
    note = Note.model_validate({"id": 1, "entity_id": 7, "note_type": "common", "params": {"text": "Заказ №1"}})
    assert note.text == "Заказ №1"
    call = Note.model_validate({"id": 2, "note_type": "call_in", "params": {"uniq": "u-1", "duration": 60}})
    assert call.text == "" and call.params is not None and call.params.model_extra == {"uniq": "u-1", "duration": 60}
    assert Note.model_validate({"id": 3, "params": []}).text == ""
    assert Note.model_validate({"id": 4, "params": None}).text == ""
    link = Link.model_validate({"to_entity_id": 5, "to_entity_type": "contacts", "metadata": {"is_main": True}})
    assert link.metadata is not None and link.metadata.is_main is True
    assert Link.model_validate({"to_entity_id": 5, "metadata": []}).metadata is None


def test_batch_results_align_by_the_request_ids_amocrm_echoes() -> None:
    body = [{"request_id": "a"}, {"request_id": "b"}]
    created = [
        Created.model_validate({"id": 2, "request_id": "b"}),
        Created.model_validate({"id": 1, "request_id": "a"}),
    ]
    assert [r.id for r in align(body, created, "leads")] == [1, 2]
    elements = [
        CatalogElement.model_validate({"id": 9, "request_id": 1}),
        CatalogElement.model_validate({"id": 8, "request_id": 0}),
    ]
    assert [r.id for r in align([{}, {}], elements, "catalogs/1/elements")] == [8, 9]  # ordinals, echoed as ints
    merged = [
        ComplexLeadResult.model_validate({"id": 4, "request_id": ["y"]}),
        ComplexLeadResult.model_validate({"id": 3, "request_id": "x"}),
    ]
    assert [r.id for r in align([{"request_id": "x"}, {"request_id": "y"}], merged, "leads/complex")] == [3, 4]
