"""amoCRM (Kommo) API v4 wire models: pydantic models of contacts, leads, pipelines, fields, catalogs,
notes and links, tolerant of extra keys and ``custom_fields_values: null``; they also answer
``model["field"]`` / ``model.get("field")`` by wire name (``"_embedded"`` too)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

WON_STATUS_ID = 142
LOST_STATUS_ID = 143


def _none_to_list(value: Any) -> Any:
    return [] if value is None else value


def _to_str(value: Any) -> Any:
    return None if value is None else str(value)


def _to_str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return [str(value)]


OptStr = Annotated[str | None, BeforeValidator(_to_str)]


@functools.cache
def _wire_names(cls: type[BaseModel]) -> dict[str, str]:
    names: dict[str, str] = {}
    for name, info in cls.model_fields.items():
        names[name] = name
        if info.alias:
            names[info.alias] = name
    return names


class AmoModel(BaseModel):
    """Base of amoCRM entities: extra fields kept; read access by wire name like a dict."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def get(self, key: str, default: Any = None) -> Any:
        name = _wire_names(type(self)).get(key)
        if name is not None:
            return getattr(self, name)
        return (self.model_extra or {}).get(key, default)

    def __getitem__(self, key: str) -> Any:
        missing = object()
        value = self.get(key, missing)
        if value is missing:
            raise KeyError(key)
        return value


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


class EntityRef(AmoModel):
    """A linked entity in ``_embedded`` (``is_main`` for a lead's contacts, ``metadata`` for items)."""

    id: int
    is_main: bool | None = None
    metadata: dict[str, Any] | None = None


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
        return read_field_values(self.custom_fields_values, field)

    def field_value(self, field: int | str) -> Any:
        values = self.field_values(field)
        return values[0] if values else None

    def enum_ids(self, field: int | str) -> list[int]:
        return read_enum_ids(self.custom_fields_values, field)


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


class Link(AmoModel):
    entity_id: int | None = None
    entity_type: OptStr = None
    to_entity_id: int
    to_entity_type: OptStr = None
    metadata: dict[str, Any] | None = None


class Note(AmoModel):
    id: int
    entity_id: int | None = None
    note_type: OptStr = None
    params: dict[str, Any] | None = None


class Created(AmoModel):
    """The answer for one created or updated item: its id and the echoed ``request_id``."""

    id: int
    request_id: OptStr = None
    entity_id: int | None = None
    updated_at: int | None = None


class ComplexLeadResult(AmoModel):
    """One item of ``POST /leads/complex``'s bare-array answer."""

    id: int
    contact_id: int | None = None
    company_id: int | None = None
    request_id: Annotated[list[str], BeforeValidator(_to_str_list)] = Field(default_factory=list)
    merged: bool = False


# -- custom_fields_values helpers ---------------------------------------------------------------


def _as_mapping(item: Any) -> Mapping[str, Any]:
    if isinstance(item, BaseModel):
        return item.model_dump(exclude_none=True)
    return item if isinstance(item, Mapping) else {}


def _matches(item: Mapping[str, Any], field: int | str) -> bool:
    key = _field_key(field)
    if "field_id" in key:
        return item.get("field_id") is not None and str(item.get("field_id")) == str(key["field_id"])
    return str(item.get("field_code") or "").upper() == str(key["field_code"]).upper()


def read_field_values(custom_fields_values: Iterable[Any] | None, field: int | str) -> list[Any]:
    """The ``value``s of one field (by id or code) from a read-form ``custom_fields_values``."""
    found: list[Any] = []
    for item in custom_fields_values or []:
        mapping = _as_mapping(item)
        if _matches(mapping, field):
            found.extend(_as_mapping(v).get("value") for v in mapping.get("values") or [])
    return found


def read_enum_ids(custom_fields_values: Iterable[Any] | None, field: int | str) -> list[int]:
    found: list[int] = []
    for item in custom_fields_values or []:
        mapping = _as_mapping(item)
        if _matches(mapping, field):
            for value in mapping.get("values") or []:
                enum_id = _as_mapping(value).get("enum_id")
                if isinstance(enum_id, int):
                    found.append(enum_id)
    return found


def _field_key(field: int | str) -> dict[str, Any]:
    if isinstance(field, bool):
        raise TypeError("a field is an id (int) or a code (str)")
    if isinstance(field, int):
        return {"field_id": field}
    text = str(field).strip()
    return {"field_id": int(text)} if text.isdigit() else {"field_code": text}
