"""The Excel import's rows, pure: headers by name, each row parsed and checked, then turned into a lead
for the account (pipeline, status, custom fields by name) keyed by a stable import key.

A row's import key does not depend on the file: `no:<Заказ №>` when the row has an order number, else
`h:` + a hash of its E.164 phone, name, product and order date. The lead carries it (the order-number
field, else a `#xlsx-<hash>` suffix of its name), so an import finds the leads an earlier one made even
without the warehouse.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from integration_sync.connectors.amocrm import CustomField, Lead, Pipeline
from integration_sync.defs.amocrm_sheets import layout
from integration_sync.sync.normalize import normalize_phone
from integration_sync.targets.amocrm_leads import LeadKeyRule

COUNTRY: Final = "UZ"
KEY_KIND: Final = "xlsx import key"
NAME_TAG: Final = "#xlsx-"
_NAME_KEY = re.compile(r"#xlsx-([0-9a-f]{12})\s*$")

# field → accepted header spellings (compared case- and space-insensitively)
HEADERS: Final[dict[str, tuple[str, ...]]] = {
    "name": (layout.CONTACT, "Контакт", "Имя", "ФИО", "Имя клиента", "Contact", "Contact name", "Name", "Client"),
    "phone": (layout.PHONE, "Тел.", "Номер телефона", "Phone", "Phone number", "Tel"),
    "company": (layout.COMPANY, "Company"),
    "product": (layout.PRODUCT, "Товар", "Product"),
    "order_date": (layout.ORDER_DATE, "Дата", "Order date", "Date"),
    "region": (layout.REGION, "Region"),
    "employee_code": (layout.EMPLOYEE_CODE, "Employee code"),
    "order_no": (layout.ORDER_NO, "Номер заказа", "Order no", "Order number", "Order №"),
    "pipeline": ("Воронка", "Pipeline"),
    "status": ("Этап", "Статус сделки", "Status", "Stage"),
}
# the lead custom field each value goes to, by the name the seed's account gives it
FIELD_OF: Final[dict[str, str]] = {
    "product": layout.PRODUCT,
    "order_date": layout.ORDER_DATE,
    "region": layout.REGION,
    "employee_code": layout.EMPLOYEE_CODE,
    "order_no": layout.ORDER_NO,
}
_DATE_FORMS = ("%d.%m.%Y", "%Y-%m-%d", "%d/%m/%Y", "%d.%m.%y", "%d-%m-%Y", "%Y.%m.%d")
_EXCEL_EPOCH = date(1899, 12, 30)


def header_key(text: Any) -> str:
    return " ".join(str(text or "").split()).casefold().rstrip(":")


_BY_HEADER: Final = {header_key(h): name for name, spellings in HEADERS.items() for h in spellings}


class FileProblem(Exception):
    """The file as a whole cannot be imported (no header row, a column twice, a setting missing)."""


@dataclass(frozen=True)
class Columns:
    """Which column (0-based) holds which field; the row (as Excel numbers it) the header is on."""

    header_row: int
    index: Mapping[str, int]
    ignored: tuple[str, ...] = ()


def find_columns(rows: Iterable[tuple[int, Sequence[Any]]], look: int = 10) -> Columns:
    """The header row: the first of the first `look` rows naming the phone or the contact column."""
    for number, cells in rows:
        index: dict[str, int] = {}
        ignored: list[str] = []
        for i, cell in enumerate(cells):
            text = header_key(cell)
            if not text:
                continue
            name = _BY_HEADER.get(text)
            if name is None:
                ignored.append(str(cell).strip())
            elif name in index:
                raise FileProblem(f"row {number}: two columns are «{HEADERS[name][0]}» ({cell!s})")
            else:
                index[name] = i
        if "phone" in index or "name" in index:
            return Columns(number, index, tuple(ignored))
        look -= 1
        if look <= 0:
            break
    raise FileProblem(f"no header row naming «{layout.PHONE}» or «{layout.CONTACT}» in the first rows")


@dataclass(frozen=True)
class Row:
    """One row's lead data as read and checked (no account needed)."""

    number: int
    name: str
    phone: str | None
    company: str
    product: str
    order_date: date | None
    region: str
    employee_code: str
    order_no: str
    pipeline: str
    status: str

    @property
    def key(self) -> str:
        if self.order_no:
            return f"no:{self.order_no}"
        parts = [self.phone or "", " ".join(self.name.split()).casefold(), self.product.strip().casefold()]
        parts.append(self.order_date.isoformat() if self.order_date else "")
        return "h:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class BadRow:
    number: int
    reason: str


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return " ".join(str(value).split())


def parse_phone(value: Any) -> str | None:
    """E.164 in the seller's country; an Uzbek number typed with the old 8 trunk prefix is read too."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    phone = normalize_phone(value if isinstance(value, int) else _text(value), COUNTRY)
    if phone is None:
        digits = re.sub(r"\D", "", _text(value))
        if len(digits) == 10 and digits.startswith("8"):
            phone = normalize_phone(digits[1:], COUNTRY)
    return phone


def parse_date(value: Any) -> date | None:
    """A cell's date: a date cell, an Excel day number, or text in a common form. Raises ValueError."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if 1 <= value < 2958466:
            return _EXCEL_EPOCH + timedelta(days=int(value))
        raise ValueError
    text = _text(value)
    for form in _DATE_FORMS:
        try:
            return datetime.strptime(text.split(" ")[0], form).date()
        except ValueError:
            continue
    raise ValueError


def parse_row(number: int, cells: Sequence[Any], columns: Columns) -> Row | BadRow | None:
    """A row as read, a bad row with its reason, or None for an empty row."""

    def cell(name: str) -> Any:
        i = columns.index.get(name)
        return cells[i] if i is not None and i < len(cells) else None

    if all(_text(c) == "" for c in cells):
        return None
    name, raw_phone = _text(cell("name")), _text(cell("phone"))
    if not name and not raw_phone:
        return BadRow(number, "no phone and no contact name")
    phone = parse_phone(cell("phone")) if raw_phone else None
    if raw_phone and phone is None:
        return BadRow(number, f"«{raw_phone}» is not a phone number")
    order_date: date | None = None
    if _text(cell("order_date")):
        try:
            order_date = parse_date(cell("order_date"))
        except ValueError:
            return BadRow(number, f"«{_text(cell('order_date'))}» is not a date ({layout.ORDER_DATE})")
    return Row(
        number=number,
        name=name,
        phone=phone,
        company=_text(cell("company")),
        product=_text(cell("product")),
        order_date=order_date,
        region=_text(cell("region")),
        employee_code=_text(cell("employee_code")),
        order_no=_text(cell("order_no")),
        pipeline=_text(cell("pipeline")),
        status=_text(cell("status")),
    )


# ---- the account ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """What the rows are checked against: the default pipeline and its trigger status, the
    pipelines and the lead custom fields (by name)."""

    pipelines: Sequence[Pipeline]
    default_pipeline: Pipeline
    fields: Mapping[str, CustomField]
    trigger_names: Sequence[str] = ()
    trigger_status_id: int = 0
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Tashkent"))

    def pipeline_named(self, name: str) -> Pipeline | None:
        wanted = name.strip().casefold()
        return next((p for p in self.pipelines if (p.name or "").strip().casefold() == wanted), None)

    def trigger_status(self, pipeline: Pipeline) -> int | None:
        if self.trigger_status_id and any(s.id == self.trigger_status_id for s in pipeline.statuses):
            return self.trigger_status_id
        wanted = {n.strip().casefold() for n in self.trigger_names}
        return next((s.id for s in pipeline.statuses if (s.name or "").strip().casefold() in wanted), None)


def choose_pipeline(pipelines: Sequence[Pipeline], pipeline_id: int, keyword: str) -> Pipeline:
    """`PIPELINE_ID` when set, else the first pipeline whose name holds `PIPELINE_KEYWORD`."""
    if pipeline_id:
        chosen = next((p for p in pipelines if p.id == pipeline_id), None)
        if chosen is None:
            raise FileProblem(f"PIPELINE_ID: the account has no pipeline {pipeline_id}")
        return chosen
    word = keyword.strip().casefold()
    live = sorted((p for p in pipelines if not p.is_archive), key=lambda p: p.sort or 0)
    chosen = next((p for p in live if word in (p.name or "").casefold()), None)
    if chosen is None:
        raise FileProblem(f"PIPELINE_KEYWORD: no pipeline's name contains {keyword!r}")
    return chosen


def fields_by_name(fields: Sequence[CustomField], overrides: Mapping[str, int]) -> dict[str, CustomField]:
    """The lead fields the rows fill, by name (case-insensitive); `SHEETS_FIELD_IDS_JSON` wins."""
    by_id = {f.id: f for f in fields}
    by_name = {(f.name or "").strip().casefold(): f for f in sorted(fields, key=lambda f: -f.id)}
    found: dict[str, CustomField] = {}
    for name in FIELD_OF.values():
        override = overrides.get(name)
        chosen = by_id.get(override) if override else by_name.get(name.casefold())
        if chosen is not None:
            found[name] = chosen
    return found


def lead_of(row: Row, account: Account) -> dict[str, Any]:
    """The row's desired lead and contact (the engine's payload). Raises ValueError naming the
    problem of this row; FileProblem when the account lacks a field or the trigger status."""
    pipeline = account.default_pipeline
    if row.pipeline:
        named = account.pipeline_named(row.pipeline)
        if named is None:
            raise ValueError(f"no pipeline named «{row.pipeline}»")
        pipeline = named
    if row.status:
        status = pipeline.status_by_name(row.status)
        if status is None:
            raise ValueError(f"pipeline «{pipeline.name}» has no status «{row.status}»")
        status_id = status.id
    else:
        trigger = account.trigger_status(pipeline)
        if trigger is None:
            raise FileProblem(f"pipeline «{pipeline.name}» has no trigger status (TRIGGER_STATUS_NAME)")
        status_id = trigger
    values: dict[str, Any] = {}
    for attr, field_name in FIELD_OF.items():
        raw = getattr(row, attr)
        if raw in ("", None):
            continue
        found = account.fields.get(field_name)
        if found is None:
            raise FileProblem(f"the account has no lead field «{field_name}» (or set SHEETS_FIELD_IDS_JSON)")
        values[str(found.id)] = _field_value(found, raw, account.zone)
    who = row.name or row.phone or ""
    title = f"{who} — {row.product}" if row.product else who
    name = f"{layout.ORDER_NO}{row.order_no} {title}" if row.order_no else f"{title} {NAME_TAG}{row.key[2:]}"
    return {
        "lead": {"name": name[:255], "pipeline_id": pipeline.id, "status_id": status_id, "fields": values},
        "contact": {"name": row.name or row.phone or "", "phone": row.phone},
    }


def _field_value(found: CustomField, raw: Any, zone: ZoneInfo) -> dict[str, Any]:
    if found.type in ("select", "multiselect", "radiobutton"):
        enum_id = found.enum_id(str(raw))
        if enum_id is None:
            choices = ", ".join(f"«{e.value}»" for e in found.enums[:10])
            raise ValueError(f"«{raw}» is not a {found.name} value (one of {choices})")
        return {"enum_id": enum_id}
    if isinstance(raw, date):
        if found.type in ("date", "date_time", "birthday"):
            return {"value": int(datetime.combine(raw, time(), zone).timestamp())}
        return {"value": raw.strftime("%d.%m.%Y")}
    return {"value": str(raw)}


# ---- the key on the lead ----------------------------------------------------------------------


@dataclass(frozen=True)
class ImportKeyRule(LeadKeyRule):
    """How a lead shows its import key: the `#xlsx-` suffix of its name, else its order number."""

    def key_of(self, lead: Lead) -> str | None:
        match = _NAME_KEY.search(str(lead.name or ""))
        if match:
            return f"h:{match.group(1)}"
        if self.field_id:
            for value in lead.field_values(self.field_id):
                if value is not None and str(value).strip():
                    return f"no:{_text(value)}"
        return None
