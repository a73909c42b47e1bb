"""The amoCRM sandbox account: ids, pipelines, custom fields, credentials, and the codec of
``custom_fields_values`` (write form -> stored values -> read form) with amoCRM's validation errors.

Every id here is exported so tests and `integration_sync.sandbox.env` share them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from integration_sync.sandbox.core import JsonDict


# ------------------------------------------------------------------------------------ credentials
@dataclass(frozen=True)
class OAuthApp:
    """The sandbox's registered integration and its published (fake) credentials."""

    client_id: str
    client_secret: str
    redirect_uri: str
    auth_code: str  # single use
    initial_access: str
    initial_refresh: str
    long_lived: str  # never expires


AMO_APP: Final = OAuthApp(
    "sandbox-amo-client",
    "sandbox-amo-secret",
    "https://example.invalid/oauth",
    "sandbox-auth-code",
    "sandbox-amo-access-0",
    "sandbox-amo-refresh-0",
    "sandbox-amo-long-lived-token",
)
AMO_CLIENT_ID: Final = AMO_APP.client_id
AMO_CLIENT_SECRET: Final = AMO_APP.client_secret
AMO_REDIRECT_URI: Final = AMO_APP.redirect_uri
AMO_AUTH_CODE: Final = AMO_APP.auth_code
AMO_INITIAL_ACCESS_TOKEN: Final = AMO_APP.initial_access
AMO_INITIAL_REFRESH_TOKEN: Final = AMO_APP.initial_refresh
AMO_LONG_LIVED_TOKEN: Final = AMO_APP.long_lived

ACCOUNT_ID: Final = 31000001
AMO_RESPONSIBLE_USER_ID: Final = 1001
USERS: Final = (1001, 1002)

# -------------------------------------------------------------------------------------- pipelines
WON: Final = 142
LOST: Final = 143
AMO_PIPELINE_ID: Final = 7000001  # "Kaspi"
AMO_STATUS_ID: Final = 70000011  # "Новый заказ"
AMO_PIPELINE_SITE: Final = 4423755
AMO_STATUS_AUTOPAY_SITE: Final = 63242022
AMO_PIPELINE_YANDEX: Final = 10089806
AMO_STATUS_AUTOPAY_YANDEX: Final = 80579130
AMO_PIPELINE_PARTNERS: Final = 8598230
AMO_STATUS_AUTOPAY_PARTNERS: Final = 80517738


@dataclass(frozen=True)
class Status:
    id: int
    name: str
    sort: int
    type: int = 0  # 1 = unsorted ("Неразобранное")
    color: str = "#99ccff"
    is_editable: bool = True


@dataclass(frozen=True)
class Pipeline:
    id: int
    name: str
    sort: int
    is_main: bool
    statuses: tuple[Status, ...]

    def status(self, status_id: int) -> Status | None:
        return next((s for s in self.statuses if s.id == status_id), None)

    @property
    def first_open(self) -> Status:
        """The first stage after "unsorted": where a lead lands without a status_id."""
        return next(s for s in self.statuses if s.type == 0 and s.id not in (WON, LOST))


def _pipeline(pid: int, name: str, sort: int, unsorted: int, stages: list[tuple[int, str]], main: bool) -> Pipeline:
    statuses = [Status(unsorted, "Неразобранное", 10, type=1, color="#c1c1c1", is_editable=False)]
    statuses += [Status(sid, title, 20 + 10 * i) for i, (sid, title) in enumerate(stages)]
    statuses += [
        Status(WON, "Успешно реализовано", 10000, color="#CCFF66", is_editable=False),
        Status(LOST, "Закрыто и не реализовано", 11000, color="#D5D8DB", is_editable=False),
    ]
    return Pipeline(pid, name, sort, main, tuple(statuses))


PIPELINES: Final[tuple[Pipeline, ...]] = (
    _pipeline(
        AMO_PIPELINE_ID,
        "Kaspi",
        1,
        70000010,
        [(AMO_STATUS_ID, "Новый заказ"), (70000012, "Принят"), (70000013, "Передан в доставку")],
        main=True,
    ),
    _pipeline(
        AMO_PIPELINE_SITE,
        "Сайт",
        2,
        63242000,
        [(63242010, "Первичный контакт"), (63242016, "Переговоры"), (AMO_STATUS_AUTOPAY_SITE, "Автооплаты ООО")],
        main=False,
    ),
    _pipeline(
        AMO_PIPELINE_YANDEX,
        "Яндекс",
        3,
        80579100,
        [(80579110, "Новая заявка"), (80579120, "Переговоры"), (AMO_STATUS_AUTOPAY_YANDEX, "Автооплаты ООО")],
        main=False,
    ),
    _pipeline(
        AMO_PIPELINE_PARTNERS,
        "Партнеры",
        4,
        80517700,
        [(80517710, "Новая заявка"), (80517720, "В работе"), (AMO_STATUS_AUTOPAY_PARTNERS, "Автооплаты ООО")],
        main=False,
    ),
)
PIPELINES_BY_ID: Final = {p.id: p for p in PIPELINES}
MAIN_PIPELINE: Final = next(p for p in PIPELINES if p.is_main)

# ---------------------------------------------------------------------------------- custom fields
AMO_LEAD_ORDER_CODE_FIELD_ID: Final = 900101
AMO_LEAD_DELIVERY_ADDRESS_FIELD_ID: Final = 900102
AMO_LEAD_ORDER_DATE_FIELD_ID: Final = 900103
AMO_LEAD_FIELD_SUBJECTS: Final = 900110
AMO_LEAD_FIELD_DIRECTION: Final = 900111
AMO_LEAD_FIELD_LAST_PAYMENT_AMOUNT: Final = 900112
AMO_LEAD_FIELD_TOTAL_PAID: Final = 900113
AMO_LEAD_FIELD_PURCHASE_COUNT: Final = 900114
AMO_LEAD_FIELD_LAST_PAYMENT_DATE: Final = 900115
AMO_LEAD_FIELD_PAYMENT_ID: Final = 900116
AMO_LEAD_FIELD_INVOICE_ID: Final = 900117
UTM_FIELDS: Final = {
    "UTM_SOURCE": 900121,
    "UTM_MEDIUM": 900122,
    "UTM_CAMPAIGN": 900123,
    "UTM_TERM": 900124,
    "UTM_CONTENT": 900125,
}
AMO_DIRECTION_EGE: Final = 910021
AMO_DIRECTION_OGE: Final = 910022
SUBJECTS: Final = (
    "Русский",
    "Математика",
    "Обществознание",
    "История",
    "Физика",
    "Информатика",
    "Английский",
    "Биология",
    "Химия",
    "Литература",
)
AMO_SUBJECT_ENUMS: Final[dict[str, int]] = {name: 910001 + i for i, name in enumerate(SUBJECTS)}

AMO_CONTACT_FIELD_PHONE: Final = 800001
AMO_CONTACT_FIELD_EMAIL: Final = 800002
AMO_CONTACT_FIELD_POSITION: Final = 800003
AMO_CONTACT_ADDRESS_FIELD_ID: Final = 800004
AMO_CONTACT_FIELD_TG_ID: Final = 800005
AMO_CONTACT_FIELD_TG_USERNAME: Final = 800006
PHONE_ENUMS: Final = {"WORK": 810001, "WORKDD": 810002, "MOB": 810003, "FAX": 810004, "HOME": 810005, "OTHER": 810006}
EMAIL_ENUMS: Final = {"WORK": 810011, "PRIV": 810012, "OTHER": 810013}

AMO_CATALOG_ID: Final = 7101
AMO_CATALOG_SKU_FIELD_ID: Final = 720001
AMO_CATALOG_PRICE_FIELD_ID: Final = 720002
AMO_CATALOG_DESCRIPTION_FIELD_ID: Final = 720003
CATALOGS: Final[tuple[JsonDict, ...]] = (
    {
        "id": AMO_CATALOG_ID,
        "name": "Товары",
        "sort": 10,
        "type": "products",
        "can_add_elements": True,
        "can_show_in_cards": False,
        "can_link_multiple": True,
        "can_be_deleted": False,
    },
)

ENUM_TYPES: Final = frozenset({"select", "multiselect", "radiobutton", "multitext", "category"})
MULTI_VALUE_TYPES: Final = frozenset({"multiselect", "multitext"})
TEXT_TYPES: Final = frozenset({"text", "textarea", "tracking_data", "url", "streetaddress"})
NUMERIC_TYPES: Final = frozenset({"numeric", "price", "monetary"})
DATE_TYPES: Final = frozenset({"date", "date_time", "birthday"})


@dataclass(frozen=True)
class EnumItem:
    id: int
    value: str
    sort: int
    code: str | None = None


@dataclass(frozen=True)
class FieldDef:
    id: int
    name: str
    type: str
    entity_type: str  # leads | contacts | catalogs
    sort: int
    code: str | None = None
    enums: tuple[EnumItem, ...] = ()
    is_api_only: bool = False
    catalog_id: int | None = None

    def enum_by_id(self, enum_id: Any) -> EnumItem | None:
        return next((e for e in self.enums if e.id == enum_id), None)

    def enum_by_code(self, code: Any) -> EnumItem | None:
        return next((e for e in self.enums if e.code is not None and e.code == code), None)

    def enum_by_value(self, value: Any) -> EnumItem | None:
        return next((e for e in self.enums if e.value == value), None)

    def describe(self) -> JsonDict:
        """The field as ``GET /api/v4/{entity}/custom_fields`` lists it."""
        enums: list[JsonDict] | None = None
        if self.enums:
            enums = []
            for e in self.enums:
                item: JsonDict = {"id": e.id, "value": e.value, "sort": e.sort}
                if e.code is not None and e.code != e.value:
                    item["code"] = e.code
                enums.append(item)
        out: JsonDict = {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "account_id": ACCOUNT_ID,
            "code": self.code,
            "sort": self.sort,
            "is_api_only": self.is_api_only,
            "enums": enums,
            "group_id": None,
            "required_statuses": [],
            "is_deletable": self.code is None,
            "is_predefined": self.code in ("PHONE", "EMAIL", "POSITION"),
            "entity_type": self.entity_type,
            "remind": None,
            "triggers": [],
            "currency": None,
            "hidden_statuses": [],
            "chained_lists": None,
            "search_in": None,
        }
        if self.catalog_id is not None:
            out["catalog_id"] = self.catalog_id
        return out


def _codes(values: Mapping[str, int]) -> tuple[EnumItem, ...]:
    return tuple(EnumItem(eid, code, (i + 1) * 2, code) for i, (code, eid) in enumerate(values.items()))


LEAD_FIELDS: Final[tuple[FieldDef, ...]] = (
    FieldDef(AMO_LEAD_ORDER_CODE_FIELD_ID, "Код заказа Kaspi", "text", "leads", 500),
    FieldDef(AMO_LEAD_DELIVERY_ADDRESS_FIELD_ID, "Адрес доставки", "text", "leads", 501),
    FieldDef(AMO_LEAD_ORDER_DATE_FIELD_ID, "Дата заказа", "date_time", "leads", 502),
    FieldDef(
        AMO_LEAD_FIELD_SUBJECTS,
        "Предметы",
        "multiselect",
        "leads",
        510,
        enums=tuple(EnumItem(eid, name, (i + 1) * 10) for i, (name, eid) in enumerate(AMO_SUBJECT_ENUMS.items())),
    ),
    FieldDef(
        AMO_LEAD_FIELD_DIRECTION,
        "Направление",
        "select",
        "leads",
        511,
        enums=(EnumItem(AMO_DIRECTION_EGE, "ЕГЭ", 10), EnumItem(AMO_DIRECTION_OGE, "ОГЭ", 20)),
    ),
    FieldDef(AMO_LEAD_FIELD_LAST_PAYMENT_AMOUNT, "Сумма последней оплаты", "numeric", "leads", 512),
    FieldDef(AMO_LEAD_FIELD_TOTAL_PAID, "Всего оплачено", "numeric", "leads", 513),
    FieldDef(AMO_LEAD_FIELD_PURCHASE_COUNT, "Количество покупок", "numeric", "leads", 514),
    FieldDef(AMO_LEAD_FIELD_LAST_PAYMENT_DATE, "Дата последней оплаты", "date_time", "leads", 515),
    FieldDef(AMO_LEAD_FIELD_PAYMENT_ID, "Payment ID", "text", "leads", 516),
    FieldDef(AMO_LEAD_FIELD_INVOICE_ID, "Invoice ID", "text", "leads", 517),
    *(
        FieldDef(fid, code.lower(), "tracking_data", "leads", 600 + i, code=code)
        for i, (code, fid) in enumerate(UTM_FIELDS.items())
    ),
)
CONTACT_FIELDS: Final[tuple[FieldDef, ...]] = (
    FieldDef(AMO_CONTACT_FIELD_POSITION, "Должность", "text", "contacts", 2, code="POSITION"),
    FieldDef(AMO_CONTACT_FIELD_PHONE, "Телефон", "multitext", "contacts", 4, code="PHONE", enums=_codes(PHONE_ENUMS)),
    FieldDef(AMO_CONTACT_FIELD_EMAIL, "Email", "multitext", "contacts", 6, code="EMAIL", enums=_codes(EMAIL_ENUMS)),
    FieldDef(AMO_CONTACT_ADDRESS_FIELD_ID, "Адрес", "text", "contacts", 500),
    FieldDef(AMO_CONTACT_FIELD_TG_ID, "Telegram ID", "text", "contacts", 501),
    FieldDef(AMO_CONTACT_FIELD_TG_USERNAME, "Telegram username", "text", "contacts", 502),
)
CATALOG_FIELDS: Final[tuple[FieldDef, ...]] = (
    FieldDef(AMO_CATALOG_SKU_FIELD_ID, "Артикул", "text", "catalogs", 10, code="SKU", catalog_id=AMO_CATALOG_ID),
    FieldDef(
        AMO_CATALOG_DESCRIPTION_FIELD_ID,
        "Описание",
        "textarea",
        "catalogs",
        20,
        code="DESCRIPTION",
        catalog_id=AMO_CATALOG_ID,
    ),
    FieldDef(AMO_CATALOG_PRICE_FIELD_ID, "Цена", "numeric", "catalogs", 30, code="PRICE", catalog_id=AMO_CATALOG_ID),
)


class FieldSet:
    """The custom fields of one entity type, looked up by id or code."""

    def __init__(self, fields: tuple[FieldDef, ...]) -> None:
        self.fields = tuple(sorted(fields, key=lambda f: (f.sort, f.id)))
        self.by_id = {f.id: f for f in self.fields}
        self.by_code = {f.code: f for f in self.fields if f.code}
        self.order = {f.id: i for i, f in enumerate(self.fields)}


LEAD_FIELDSET: Final = FieldSet(LEAD_FIELDS)
CONTACT_FIELDSET: Final = FieldSet(CONTACT_FIELDS)
CATALOG_FIELDSET: Final = FieldSet(CATALOG_FIELDS)


@dataclass(frozen=True)
class AmoProfile:
    """What makes one emulated account a different business: its integration, ids, pipelines, fields."""

    app: OAuthApp
    account_id: int
    subdomain: str
    users: tuple[int, ...]
    pipelines: tuple[Pipeline, ...]
    lead_fieldset: FieldSet
    contact_fieldset: FieldSet

    @property
    def pipelines_by_id(self) -> dict[int, Pipeline]:
        return {p.id: p for p in self.pipelines}

    @property
    def main_pipeline(self) -> Pipeline:
        return next(p for p in self.pipelines if p.is_main)


DEFAULT_PROFILE: Final = AmoProfile(AMO_APP, ACCOUNT_ID, "sandbox", USERS, PIPELINES, LEAD_FIELDSET, CONTACT_FIELDSET)


# ------------------------------------------------------------------------------------ environment
def amocrm_env(base: str) -> dict[str, str]:
    """The ``AMO_*`` settings of a connector pointed at the sandbox served at ``base``.

    AMO_ACCESS_TOKEN/AMO_REFRESH_TOKEN are the initial OAuth pair (the refresh token is single use:
    a client must persist the pair it gets back). AMO_LONG_LIVED_TOKEN is empty on purpose so the
    OAuth path is exercised; set it to `AMO_LONG_LIVED_TOKEN` (never expires) to skip OAuth.
    """
    ids = {
        "AMO_PIPELINE_ID": AMO_PIPELINE_ID,
        "AMO_STATUS_ID": AMO_STATUS_ID,
        "AMO_RESPONSIBLE_USER_ID": AMO_RESPONSIBLE_USER_ID,
        "AMO_CATALOG_ID": AMO_CATALOG_ID,
        "AMO_LEAD_ORDER_CODE_FIELD_ID": AMO_LEAD_ORDER_CODE_FIELD_ID,
        "AMO_CONTACT_ADDRESS_FIELD_ID": AMO_CONTACT_ADDRESS_FIELD_ID,
        "AMO_LEAD_DELIVERY_ADDRESS_FIELD_ID": AMO_LEAD_DELIVERY_ADDRESS_FIELD_ID,
        "AMO_LEAD_ORDER_DATE_FIELD_ID": AMO_LEAD_ORDER_DATE_FIELD_ID,
        "AMO_CATALOG_SKU_FIELD_ID": AMO_CATALOG_SKU_FIELD_ID,
        "AMO_CATALOG_PRICE_FIELD_ID": AMO_CATALOG_PRICE_FIELD_ID,
        "AMO_PIPELINE_SITE": AMO_PIPELINE_SITE,
        "AMO_STATUS_AUTOPAY_SITE": AMO_STATUS_AUTOPAY_SITE,
        "AMO_PIPELINE_YANDEX": AMO_PIPELINE_YANDEX,
        "AMO_STATUS_AUTOPAY_YANDEX": AMO_STATUS_AUTOPAY_YANDEX,
        "AMO_PIPELINE_PARTNERS": AMO_PIPELINE_PARTNERS,
        "AMO_STATUS_AUTOPAY_PARTNERS": AMO_STATUS_AUTOPAY_PARTNERS,
        "AMO_LEAD_FIELD_SUBJECTS": AMO_LEAD_FIELD_SUBJECTS,
        "AMO_LEAD_FIELD_DIRECTION": AMO_LEAD_FIELD_DIRECTION,
        "AMO_DIRECTION_EGE": AMO_DIRECTION_EGE,
        "AMO_DIRECTION_OGE": AMO_DIRECTION_OGE,
        "AMO_LEAD_FIELD_LAST_PAYMENT_AMOUNT": AMO_LEAD_FIELD_LAST_PAYMENT_AMOUNT,
        "AMO_LEAD_FIELD_TOTAL_PAID": AMO_LEAD_FIELD_TOTAL_PAID,
        "AMO_LEAD_FIELD_PURCHASE_COUNT": AMO_LEAD_FIELD_PURCHASE_COUNT,
        "AMO_LEAD_FIELD_LAST_PAYMENT_DATE": AMO_LEAD_FIELD_LAST_PAYMENT_DATE,
        "AMO_LEAD_FIELD_PAYMENT_ID": AMO_LEAD_FIELD_PAYMENT_ID,
        "AMO_LEAD_FIELD_INVOICE_ID": AMO_LEAD_FIELD_INVOICE_ID,
        "AMO_CONTACT_FIELD_TG_ID": AMO_CONTACT_FIELD_TG_ID,
        "AMO_CONTACT_FIELD_TG_USERNAME": AMO_CONTACT_FIELD_TG_USERNAME,
    }
    return {
        "AMO_BASE_URL": f"{base.rstrip('/')}/amocrm",
        "AMO_CLIENT_ID": AMO_CLIENT_ID,
        "AMO_CLIENT_SECRET": AMO_CLIENT_SECRET,
        "AMO_REDIRECT_URI": AMO_REDIRECT_URI,
        "AMO_ACCESS_TOKEN": AMO_INITIAL_ACCESS_TOKEN,
        "AMO_REFRESH_TOKEN": AMO_INITIAL_REFRESH_TOKEN,
        "AMO_LONG_LIVED_TOKEN": "",
        **{name: str(value) for name, value in ids.items()},
        "AMO_SUBJECT_ENUMS": json.dumps(AMO_SUBJECT_ENUMS, ensure_ascii=False),
    }
