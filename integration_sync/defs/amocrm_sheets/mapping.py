"""The seller's rules, pure: which pipelines and stages count, how a lead becomes a sheet row, and what
an operator's edit in the sheet asks of amoCRM (the seed's STATUS_DISPLAY_MAP and dropdown table).

Stages are found by name per pipeline (typo, case and Uzbek spellings as the seed lists them);
`PIPELINE_ID`, `TRIGGER_STATUS_ID` and `DROPDOWN_STATUS_MAP_JSON` override. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from integration_sync.connectors.amocrm_models import LOST_STATUS_ID, WON_STATUS_ID, Company, Contact, CustomField, Lead
from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.settings import LEAD_FIELD_NAMES, SheetsSettings
from integration_sync.sync.normalize import normalize_phone

Stage = Literal["trigger", "sent", "won", "lost", "other"]
Choice = Literal["won", "reject"]

_SENT_NAMES = frozenset({"заказ отправлен", "buyurtma yuborildi"})
_REJECT_NAMES = frozenset({"отказ", "otkaz", "rad etildi"})
_WON_NAMES = frozenset({"успешно", "успешно реализовано"})
ORDER_NO_KEY = "Заказ №"  # DROPDOWN_STATUS_MAP_JSON key: where a filled order number moves the lead


def norm(text: Any) -> str:
    """A name as compared: case-folded, inner spaces collapsed, ё as е."""
    return re.sub(r"\s+", " ", str(text or "")).strip().casefold().replace("ё", "е")


@dataclass(frozen=True)
class PipelineMap:
    """One pipeline the flow serves: its statuses and which of them play the seed's roles."""

    id: int
    name: str
    statuses: Mapping[int, str]
    trigger_ids: frozenset[int]
    sent_id: int | None
    reject_id: int
    won_id: int = WON_STATUS_ID

    def stage(self, status_id: int) -> Stage:
        if status_id in self.trigger_ids:
            return "trigger"
        if status_id == self.sent_id:
            return "sent"
        if status_id == self.won_id or status_id == WON_STATUS_ID:
            return "won"
        if status_id == self.reject_id or status_id == LOST_STATUS_ID:
            return "lost"
        return "other"


@dataclass(frozen=True)
class AccountMap:
    """The seller's account as the flow sees it: served pipelines, the lead fields by name, problems."""

    pipelines: Mapping[int, PipelineMap]
    fields: Mapping[str, int]
    enums: Mapping[int, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def pipeline(self, pipeline_id: int | None) -> PipelineMap | None:
        return self.pipelines.get(int(pipeline_id or 0))


def _reject_id(statuses: Mapping[int, str]) -> int:
    named = [sid for sid, name in statuses.items() if norm(name) in _REJECT_NAMES and sid != LOST_STATUS_ID]
    return named[0] if named else LOST_STATUS_ID


def account_map(pipelines: Iterable[Any], lead_fields: Iterable[CustomField], settings: SheetsSettings) -> AccountMap:
    """Which pipelines the flow serves (name contains `PIPELINE_KEYWORD`, or is `PIPELINE_ID`), their
    trigger statuses (named as `TRIGGER_STATUS_NAME(S)`, or `TRIGGER_STATUS_ID`), the «Заказ отправлен»
    and reject stages, and the lead fields the row shows (by name; `SHEETS_FIELD_IDS_JSON` overrides)."""
    keyword = norm(settings.pipeline_keyword)
    triggers = {norm(name) for name in settings.trigger_names}
    served: dict[int, PipelineMap] = {}
    problems: list[str] = []
    for pipeline in pipelines:
        if pipeline.is_archive:
            continue
        chosen = settings.pipeline_id and pipeline.id == settings.pipeline_id
        if not chosen and keyword and keyword not in norm(pipeline.name):
            continue
        statuses = {int(s.id): str(s.name or "") for s in pipeline.statuses}
        trigger_ids = {sid for sid, name in statuses.items() if norm(name) in triggers}
        if settings.trigger_status_id and settings.trigger_status_id in statuses:
            trigger_ids.add(settings.trigger_status_id)
        if not trigger_ids:
            problems.append(
                f"pipeline «{pipeline.name}» ({pipeline.id}) has no trigger status named as TRIGGER_STATUS_NAME(S)"
            )
        sent = [sid for sid, name in statuses.items() if norm(name) in _SENT_NAMES]
        served[int(pipeline.id)] = PipelineMap(
            int(pipeline.id),
            str(pipeline.name or ""),
            statuses,
            frozenset(trigger_ids),
            sent[0] if sent else None,
            _reject_id(statuses),
        )
    if not served:
        problems.append(
            f"no pipeline matches PIPELINE_KEYWORD={settings.pipeline_keyword!r}"
            + (f" or PIPELINE_ID={settings.pipeline_id}" if settings.pipeline_id else "")
        )
    by_name: dict[str, int] = {}
    enums: dict[int, str] = {}
    for definition in lead_fields:
        by_name.setdefault(norm(definition.name), int(definition.id))
        for enum in definition.enums:
            enums[int(enum.id)] = str(enum.value or "")
    fields: dict[str, int] = {}
    for name in LEAD_FIELD_NAMES:
        found = settings.field_ids.get(name) or by_name.get(norm(name))
        if found:
            fields[name] = int(found)
        else:
            problems.append(f"lead field «{name}» not found in amoCRM (set its id in SHEETS_FIELD_IDS_JSON)")
    return AccountMap(served, fields, enums, tuple(problems))


def display_status(status_name: str, stage: Stage) -> str:
    """The seed's STATUS_DISPLAY_MAP: how an amoCRM status is shown in the sheet's status column."""
    name = norm(status_name)
    if stage == "trigger":
        return layout.IN_PROGRESS
    if name in _SENT_NAMES or stage == "sent":
        return layout.AT_COURIER
    if name in _REJECT_NAMES or stage == "lost":
        return layout.REFUSED
    if name in _WON_NAMES or stage == "won":
        return layout.SUCCESS
    return str(status_name or "").strip()


def code_key(code: Any) -> str:
    """An employee code as matched: without surrounding spaces and leading zeros (0134 = 134)."""
    text = str(code or "").strip()
    stripped = text.lstrip("0")
    return stripped if stripped else ("0" if text else "")


def staff_directory(rows: Iterable[Sequence[str]]) -> dict[str, str]:
    """The Staff tab (№, Код сотрудника, Сотрудник, Отдел; header row first) as code key → name."""
    directory: dict[str, str] = {}
    for row in list(rows)[1:]:
        cells = layout.pad(row, len(layout.STAFF_COLUMNS))
        key, name = code_key(cells[1]), cells[2].strip()
        if key and name:
            directory.setdefault(key, name)
    return directory


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _contact_name(contact: Contact | None) -> str:
    if contact is None:
        return ""
    name = _text(contact.name)
    if name:
        return name
    return " ".join(part for part in (_text(contact.first_name), _text(contact.last_name)) if part)


def _phone(contact: Contact | None) -> str:
    if contact is None:
        return ""
    for raw in contact.phones():
        e164 = normalize_phone(raw, "UZ")
        if e164:
            return e164
    phones = contact.phones()
    return _text(phones[0]) if phones else ""


def _date_shown(value: Any, zone: ZoneInfo) -> str:
    if value in (None, ""):
        return ""
    try:
        stamp = int(float(value))
    except (TypeError, ValueError):
        return _text(value)
    return datetime.fromtimestamp(stamp, UTC).astimezone(zone).strftime("%d.%m.%Y")


def _field(lead: Lead, account: AccountMap, name: str) -> Any:
    field_id = account.fields.get(name)
    return lead.field_value(field_id) if field_id else None


@dataclass(frozen=True)
class LeadSnapshot:
    """A lead as the warehouse keeps it (one `sheets_leads` row), with the row's amoCRM content."""

    lead_id: int
    created_at: int
    updated_at: int
    pipeline_id: int
    pipeline_name: str
    status_id: int
    status_name: str
    stage: Stage
    contact_name: str
    phone: str
    company: str
    product: str
    order_date: str
    region: str
    employee_code: str
    order_no: str

    @property
    def display(self) -> str:
        return display_status(self.status_name, self.stage)


def lead_snapshot(
    lead: Lead,
    pipeline: PipelineMap,
    contact: Contact | None,
    company: Company | None,
    account: AccountMap,
    zone: ZoneInfo,
) -> LeadSnapshot:
    """A lead read from amoCRM, with its main contact and company, as the sheet will show it."""
    status_id = int(lead.status_id or 0)
    product = _field(lead, account, "Продукт")
    if product in (None, "") and account.fields.get("Продукт"):
        ids = lead.enum_ids(account.fields["Продукт"])
        product = account.enums.get(ids[0], "") if ids else ""
    return LeadSnapshot(
        lead_id=int(lead.id),
        created_at=int(lead.created_at or 0),
        updated_at=int(lead.updated_at or lead.created_at or 0),
        pipeline_id=pipeline.id,
        pipeline_name=pipeline.name,
        status_id=status_id,
        status_name=pipeline.statuses.get(status_id, "Успешно реализовано" if status_id == WON_STATUS_ID else ""),
        stage=pipeline.stage(status_id),
        contact_name=_contact_name(contact),
        phone=_phone(contact),
        company=_text(company.name) if company else "",
        product=_text(product),
        order_date=_date_shown(_field(lead, account, "Дата заказа"), zone),
        region=_text(_field(lead, account, "Регион")),
        employee_code=_text(_field(lead, account, "Код сотрудника")),
        order_no=_text(_field(lead, account, "Заказ №")),
    )


def amo_cells(snapshot: Mapping[str, Any], staff: Mapping[str, str]) -> dict[str, str]:
    """The columns amoCRM owns (A..I), from a `sheets_leads` row: «Ответственный» from the Staff tab by
    «Код сотрудника» (with or without leading zeros), the code itself as typed in amoCRM."""
    code = _text(snapshot.get("employee_code"))
    return {
        layout.LEAD_ID: str(snapshot["lead_id"]),
        layout.CONTACT: _text(snapshot.get("contact_name")),
        layout.PHONE: _text(snapshot.get("phone")),
        layout.COMPANY: _text(snapshot.get("company")),
        layout.PRODUCT: _text(snapshot.get("product")),
        layout.ORDER_DATE: _text(snapshot.get("order_date")),
        layout.REGION: _text(snapshot.get("region")),
        layout.EMPLOYEE_CODE: code,
        layout.RESPONSIBLE: staff.get(code_key(code), ""),
    }


# ---- the sheet → amoCRM direction ----------------------------------------------------------------


@dataclass(frozen=True)
class OperatorEdit:
    """What an operator changed in a row since we last wrote it: a filled «Заказ №», a dropdown choice,
    or a value we cannot act on (`problem`). Echoes of our own writes are not edits."""

    order_no: str | None = None
    choice: str | None = None
    problem: str | None = None

    @property
    def empty(self) -> bool:
        return self.order_no is None and self.choice is None


def operator_edit(
    status_cell: str, order_cell: str, written_status: str | None, written_order: str | None
) -> OperatorEdit:
    """Compare a row's status and «Заказ №» cells with what we last wrote there. «У курера» written by us
    (the display of «Заказ отправлен») is an echo; chosen by an operator it means won."""
    status, order = status_cell.strip(), order_cell.strip()
    order_no = order if order and order != (written_order or "").strip() else None
    choice: str | None = None
    problem: str | None = None
    if status and status != (written_status or "").strip():
        if status in layout.STATUS_CHOICES:
            choice = status
        else:
            problem = (
                f"«{status}» in {layout.STATUS} is not one of {', '.join(layout.STATUS_CHOICES)}: the lead is not moved"
            )
    return OperatorEdit(order_no, choice, problem)


def choice_action(choice: str) -> Choice | None:
    """The seed's dropdown table: «У курера» / «Успешно» → won, «Отказ» → the reject stage."""
    if choice in (layout.AT_COURIER, layout.SUCCESS):
        return "won"
    if choice == layout.REFUSED:
        return "reject"
    return None


def _override(settings: SheetsSettings, key: str, pipeline_id: int) -> int | None:
    per = settings.dropdown_map.get(key) or {}
    return per.get(pipeline_id) or per.get(0)


def target_status(
    edit: OperatorEdit, pipeline: PipelineMap, current_stage: Stage, settings: SheetsSettings
) -> int | None:
    """Where an edit moves the lead: the dropdown's stage (`DROPDOWN_STATUS_MAP_JSON` first, then by
    name), else «Заказ отправлен» for a newly filled order number — never out of a closed stage back
    to «Заказ отправлен». None: the status stays."""
    if edit.choice is not None:
        action = choice_action(edit.choice)
        override = _override(settings, edit.choice, pipeline.id)
        if override:
            return override
        if action == "won":
            return pipeline.won_id
        if action == "reject":
            return pipeline.reject_id
        return None
    if edit.order_no is not None and current_stage not in ("won", "lost", "sent"):
        return _override(settings, ORDER_NO_KEY, pipeline.id) or pipeline.sent_id
    return None
