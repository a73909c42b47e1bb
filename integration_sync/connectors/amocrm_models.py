"""amoCRM (Kommo) API v4 wire models: pydantic models of contacts, leads, pipelines, fields, catalogs,
notes and links, tolerant of extra keys and ``custom_fields_values: null``. Callers read typed
attributes only (``lead.embedded.contacts``, never ``lead["_embedded"]``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

WON_STATUS_ID = 142
LOST_STATUS_ID = 143


def _none_to_list(value: Any) -> Any:
    return [] if value is None else value


def _to_str(value: Any) -> Any:
    return None if value is None else str(value)


def _empty_to_none(value: Any) -> Any:
    # PHP's json_encode writes an empty object as ``[]`` (seen in amoCRM's own samples)
    return None if value is None or value == [] else value


def _to_str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return [str(value)]


OptStr = Annotated[str | None, BeforeValidator(_to_str)]


class AmoModel(BaseModel):
    """Base of amoCRM entities: read through typed attributes; keys we do not model are kept in
    ``model_extra`` (amoCRM adds keys without notice)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def echoed_request_ids(self) -> list[str]:
        """The ``request_id``s amoCRM echoed for this batch result (none for a read entity)."""
        return []


class FieldValue(AmoModel):
    """One value of a custom field (read form: ``value``, ``enum_id``, ``enum`` code)."""

    value: Any = None
    enum_id: int | None = None
    enum_code: OptStr = None
    enum: OptStr = None


class CustomFieldValues(AmoModel):
    field_id: int | None = None
    field_code: OptStr = None
    field_name: OptStr = None
    field_type: OptStr = None
    values: list[FieldValue] | None = None


class LinkMetadata(AmoModel):
    """A link's ``metadata``: quantity and catalog for a catalog element, ``is_main`` for a contact."""

    quantity: int | float | None = None
    catalog_id: int | None = None
    price_id: int | None = None
    is_main: bool | None = None


OptLinkMetadata = Annotated[LinkMetadata | None, BeforeValidator(_empty_to_none)]


class EntityRef(AmoModel):
    """A linked entity in ``_embedded`` (``is_main`` for a lead's contacts, ``metadata`` for items)."""

    id: int
    is_main: bool | None = None
    metadata: OptLinkMetadata = None


class Tag(AmoModel):
    id: int | None = None
    name: OptStr = None


RefList = Annotated[list[EntityRef], BeforeValidator(_none_to_list)]


class Embedded(AmoModel):
    contacts: RefList = Field(default_factory=list)
    leads: RefList = Field(default_factory=list)
    companies: RefList = Field(default_factory=list)
    catalog_elements: RefList = Field(default_factory=list)
    tags: Annotated[list[Tag], BeforeValidator(_none_to_list)] = Field(default_factory=list)


def _embedded(value: Any) -> Any:
    return {} if value is None else value


EmbeddedField = Annotated[Embedded, BeforeValidator(_embedded)]


class WithCustomFields(AmoModel):
    custom_fields_values: list[CustomFieldValues] | None = None

    def field_values(self, field: int | str) -> list[Any]:
        """The ``value``s of a custom field, by field id or field code."""
        return _values_of(self.custom_fields_values or [], field)

    def field_value(self, field: int | str) -> Any:
        values = self.field_values(field)
        return values[0] if values else None

    def enum_ids(self, field: int | str) -> list[int]:
        return _enum_ids_of(self.custom_fields_values or [], field)


class Contact(WithCustomFields):
    id: int
    name: OptStr = None
    first_name: OptStr = None
    last_name: OptStr = None
    responsible_user_id: int | None = None
    created_at: int | None = None
    updated_at: int | None = None
    embedded: EmbeddedField = Field(default_factory=Embedded, alias="_embedded")

    def phones(self) -> list[str]:
        return [str(v) for v in self.field_values("PHONE") if v not in (None, "")]

    def emails(self) -> list[str]:
        return [str(v) for v in self.field_values("EMAIL") if v not in (None, "")]

    @property
    def lead_ids(self) -> list[int]:
        return [ref.id for ref in self.embedded.leads]


class Company(WithCustomFields):
    id: int
    name: OptStr = None
    responsible_user_id: int | None = None
    created_at: int | None = None
    updated_at: int | None = None


class Lead(WithCustomFields):
    id: int
    name: OptStr = None
    price: int | float | None = None
    status_id: int | None = None
    pipeline_id: int | None = None
    responsible_user_id: int | None = None
    created_at: int | None = None
    updated_at: int | None = None
    closed_at: int | None = None
    is_deleted: bool | None = None
    embedded: EmbeddedField = Field(default_factory=Embedded, alias="_embedded")

    @property
    def contact_ids(self) -> list[int]:
        return [ref.id for ref in self.embedded.contacts]

    @property
    def main_contact_id(self) -> int | None:
        for ref in self.embedded.contacts:
            if ref.is_main:
                return ref.id
        return self.embedded.contacts[0].id if self.embedded.contacts else None

    @property
    def is_closed(self) -> bool:
        return self.status_id in (WON_STATUS_ID, LOST_STATUS_ID)


class Status(AmoModel):
    id: int
    name: OptStr = None
    sort: int | None = None
    type: int | None = None
    pipeline_id: int | None = None


class _PipelineEmbedded(AmoModel):
    statuses: Annotated[list[Status], BeforeValidator(_none_to_list)] = Field(default_factory=list)


class Pipeline(AmoModel):
    id: int
    name: OptStr = None
    sort: int | None = None
    is_main: bool | None = None
    is_archive: bool | None = None
    embedded: Annotated[_PipelineEmbedded, BeforeValidator(_embedded)] = Field(
        default_factory=_PipelineEmbedded, alias="_embedded"
    )

    @property
    def statuses(self) -> list[Status]:
        return self.embedded.statuses

    def status_by_name(self, name: str) -> Status | None:
        wanted = name.strip().casefold()
        return next((s for s in self.statuses if (s.name or "").strip().casefold() == wanted), None)


class FieldEnum(AmoModel):
    id: int
    value: OptStr = None
    sort: int | None = None


class CustomField(AmoModel):
    id: int
    name: OptStr = None
    code: OptStr = None
    type: OptStr = None
    entity_type: OptStr = None
    sort: int | None = None
    enums: Annotated[list[FieldEnum], BeforeValidator(_none_to_list)] = Field(default_factory=list)

    def enum_id(self, value: str) -> int | None:
        """The enum id of a value (case- and space-insensitive), None when it has none."""
        wanted = value.strip().casefold()
        return next((e.id for e in self.enums if (e.value or "").strip().casefold() == wanted), None)


class Catalog(AmoModel):
    id: int
    name: OptStr = None
    type: OptStr = None


class CatalogElement(WithCustomFields):
    id: int
    name: OptStr = None
    catalog_id: int | None = None
    is_deleted: bool | None = None
    request_id: OptStr = None

    def echoed_request_ids(self) -> list[str]:
        return [self.request_id] if self.request_id is not None else []


class Link(AmoModel):
    entity_id: int | None = None
    entity_type: OptStr = None
    to_entity_id: int
    to_entity_type: OptStr = None
    metadata: OptLinkMetadata = None


class NoteParams(AmoModel):
    """A note's ``params``: ``text`` for a common note; other note types' keys stay in model_extra."""

    text: OptStr = None


class Note(AmoModel):
    id: int
    entity_id: int | None = None
    note_type: OptStr = None
    params: Annotated[NoteParams | None, BeforeValidator(_empty_to_none)] = None

    @property
    def text(self) -> str:
        return (self.params.text if self.params else None) or ""


def _false_when_none(value: Any) -> Any:
    return False if value is None else value


class Webhook(AmoModel):
    """A webhook subscription (``GET/POST /webhooks``): amoCRM sets ``disabled`` on a hook that
    answered badly too often; ``settings`` are the event names it is subscribed to."""

    id: int | None = None
    destination: OptStr = None
    settings: Annotated[list[str], BeforeValidator(_to_str_list)] = Field(default_factory=list)
    disabled: Annotated[bool, BeforeValidator(_false_when_none)] = False
    sort: int | None = None
    created_at: int | None = None
    updated_at: int | None = None


class Created(AmoModel):
    """The answer for one created or updated item: its id and the echoed ``request_id``."""

    id: int
    request_id: OptStr = None
    entity_id: int | None = None
    updated_at: int | None = None

    def echoed_request_ids(self) -> list[str]:
        return [self.request_id] if self.request_id is not None else []


class ComplexLeadResult(AmoModel):
    """One item of ``POST /leads/complex``'s bare-array answer."""

    id: int
    contact_id: int | None = None
    company_id: int | None = None
    request_id: Annotated[list[str], BeforeValidator(_to_str_list)] = Field(default_factory=list)
    merged: bool = False

    def echoed_request_ids(self) -> list[str]:
        return list(self.request_id)


# -- custom_fields_values helpers ---------------------------------------------------------------


def _matching(items: Iterable[CustomFieldValues], field: int | str) -> Iterator[CustomFieldValues]:
    key = _field_key(field)
    if "field_id" in key:
        wanted = str(key["field_id"])
        return (item for item in items if item.field_id is not None and str(item.field_id) == wanted)
    code = str(key["field_code"]).upper()
    return (item for item in items if (item.field_code or "").upper() == code)


def _values_of(items: Iterable[CustomFieldValues], field: int | str) -> list[Any]:
    return [value.value for item in _matching(items, field) for value in item.values or []]


def _enum_ids_of(items: Iterable[CustomFieldValues], field: int | str) -> list[int]:
    return [v.enum_id for item in _matching(items, field) for v in item.values or [] if v.enum_id is not None]


def _typed(custom_fields_values: Iterable[Any] | None) -> list[CustomFieldValues]:
    """Wire dicts or models → models (anything else is skipped, as amoCRM's odd entries are)."""
    return [
        item if isinstance(item, CustomFieldValues) else CustomFieldValues.model_validate(item)
        for item in custom_fields_values or []
        if isinstance(item, CustomFieldValues | Mapping)
    ]


def read_field_values(custom_fields_values: Iterable[Any] | None, field: int | str) -> list[Any]:
    """The ``value``s of one field (by id or code) from a read-form ``custom_fields_values``."""
    return _values_of(_typed(custom_fields_values), field)


def read_enum_ids(custom_fields_values: Iterable[Any] | None, field: int | str) -> list[int]:
    return _enum_ids_of(_typed(custom_fields_values), field)


def _field_key(field: int | str) -> dict[str, Any]:
    if isinstance(field, bool):
        raise TypeError("a field is an id (int) or a code (str)")
    if isinstance(field, int):
        return {"field_id": field}
    text = str(field).strip()
    return {"field_id": int(text)} if text.isdigit() else {"field_code": text}
