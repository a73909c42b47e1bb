"""Bitrix24 emulator: webhook identity, error bodies, the method result and fault types, and the CRM
schema (contact and deal fields, user fields, pipelines and their stages)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from integration_sync.sandbox.core import JsonDict

B24_USER_ID: Final = "1"
B24_WEBHOOK_CODE: Final = "sandboxb24webhookcode"
USERS_CATEGORY_ID: Final = 5
USERS_STAGE_NEW: Final = "C5:NEW"
UF_ABCP_USER_ID: Final = "UF_CRM_ABCP_USER_ID"
UF_ABCP_INN: Final = "UF_CRM_ABCP_INN"
UF_ABCP_SALDO: Final = "UF_CRM_ABCP_SALDO"

PAGE_SIZE: Final = 50
BATCH_MAX: Final = 50
FINDBYCOMM_MAX: Final = 20
OPERATING_WINDOW_S: Final = 600.0

ERR_QUERY_LIMIT: Final = {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
ERR_OPERATION_TIME: Final = {
    "error": "OPERATION_TIME_LIMIT",
    "error_description": "Method is blocked due to operation time limit.",
}
ERR_INVALID_CREDENTIALS: Final = {"error": "INVALID_CREDENTIALS", "error_description": "Invalid request credentials"}
ERR_METHOD_NOT_FOUND: Final = {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
ERR_BATCH_LENGTH: Final = {"error": "ERROR_BATCH_LENGTH_EXCEEDED", "error_description": "Max batch length exceeded"}
ERR_BATCH_NESTED: Final = {  # unconfirmed code for a batch inside a batch (forbidden since rest 24.0.0)
    "error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
    "error_description": "Method is not allowed for batch usage",
}
HTML_500: Final = (
    b"<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head><body>"
    b"<h1>Internal Server Error</h1></body></html>"
)


class B24Error(Exception):
    """A method failure answered as ``{"error", "error_description"}`` with an HTTP status."""

    def __init__(self, description: str, error: str = "", status: int = 400) -> None:
        super().__init__(description)
        self.description = description
        self.error = error
        self.status = status

    def body(self) -> JsonDict:
        return {"error": self.error, "error_description": self.description}


@dataclass
class MethodResult:
    result: Any
    total: int | None = None
    next: int | None = None


@dataclass
class CommandErrorFault:
    """``batch_command_error``: inside a batch (HTTP 200), the next ``count`` commands of ``methods``
    (after ``skip``) fail in ``result_error`` without executing, as a per-command failure does."""

    count: int
    methods: frozenset[str]
    skip: int
    error: str
    description: str
    state: JsonDict  # the plan's own entry: ``count`` left and ``fired`` show in the fault state

    @classmethod
    def parse(cls, spec: Any) -> CommandErrorFault:
        if not isinstance(spec, Mapping):
            raise ValueError("batch_command_error must be an object")
        methods = spec.get("methods") or []
        if isinstance(methods, str):
            methods = [methods]
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
            raise ValueError("batch_command_error.methods must be a list of method names")
        numbers = {}
        for name, default in (("count", 1), ("skip", 0)):
            value = spec.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"batch_command_error.{name} must be an integer >= 0")
            numbers[name] = value
        return cls(
            count=numbers["count"],
            methods=frozenset(m.lower() for m in methods),
            skip=numbers["skip"],
            error=str(spec.get("error", "INTERNAL_SERVER_ERROR")),
            description=str(spec.get("error_description", "Internal server error")),
            state=dict(spec),
        )

    def take(self, method: str) -> JsonDict | None:
        """The error body for this command, or None to run it."""
        if self.count <= 0 or (self.methods and method not in self.methods):
            return None
        if self.skip > 0:
            self.skip -= 1
            return None
        self.count -= 1
        self.state["count"] = self.count
        self.state["fired"] = int(self.state.get("fired", 0)) + 1
        return {"error": self.error, "error_description": self.description}


# ------------------------------------------------------------------------------------------ schema
@dataclass(frozen=True)
class FieldInfo:
    type: str = "str"  # str | int | id | char | money | date | datetime
    read_only: bool = False
    immutable: bool = False


@dataclass(frozen=True)
class UserField:
    id: int
    name: str
    label: str
    type: str = "string"
    sort: int = 100


_RO = FieldInfo("str", read_only=True)
_UTM = {f"UTM_{p}": FieldInfo() for p in ("SOURCE", "MEDIUM", "CAMPAIGN", "CONTENT", "TERM")}
CONTACT_FIELDS: Final[dict[str, FieldInfo]] = {
    "ID": FieldInfo("int", read_only=True),
    "HONORIFIC": FieldInfo(),
    "NAME": FieldInfo(),
    "SECOND_NAME": FieldInfo(),
    "LAST_NAME": FieldInfo(),
    "PHOTO": _RO,
    "BIRTHDATE": FieldInfo("date"),
    "TYPE_ID": FieldInfo(),
    "SOURCE_ID": FieldInfo(),
    "SOURCE_DESCRIPTION": FieldInfo(),
    "POST": FieldInfo(),
    "COMMENTS": FieldInfo(),
    "OPENED": FieldInfo("char"),
    "EXPORT": FieldInfo("char"),
    "HAS_PHONE": FieldInfo("char", read_only=True),
    "HAS_EMAIL": FieldInfo("char", read_only=True),
    "HAS_IMOL": FieldInfo("char", read_only=True),
    "ASSIGNED_BY_ID": FieldInfo("id"),
    "CREATED_BY_ID": FieldInfo("id", read_only=True),
    "MODIFY_BY_ID": FieldInfo("id", read_only=True),
    "DATE_CREATE": FieldInfo("datetime", read_only=True),
    "DATE_MODIFY": FieldInfo("datetime", read_only=True),
    "COMPANY_ID": FieldInfo("id"),
    "LEAD_ID": FieldInfo("id"),
    "ORIGINATOR_ID": FieldInfo(),
    "ORIGIN_ID": FieldInfo(),
    "ORIGIN_VERSION": FieldInfo(),
    **_UTM,
    "LAST_ACTIVITY_TIME": FieldInfo("datetime", read_only=True),
}
DEAL_FIELDS: Final[dict[str, FieldInfo]] = {
    "ID": FieldInfo("int", read_only=True),
    "TITLE": FieldInfo(),
    "TYPE_ID": FieldInfo(),
    "CATEGORY_ID": FieldInfo("int", immutable=True),
    "STAGE_ID": FieldInfo(),
    "STAGE_SEMANTIC_ID": _RO,
    "IS_NEW": FieldInfo("char", read_only=True),
    "IS_RECURRING": FieldInfo("char"),
    "IS_RETURN_CUSTOMER": FieldInfo("char"),
    "IS_REPEATED_APPROACH": FieldInfo("char"),
    "PROBABILITY": FieldInfo("int"),
    "CURRENCY_ID": FieldInfo(),
    "OPPORTUNITY": FieldInfo("money"),
    "IS_MANUAL_OPPORTUNITY": FieldInfo("char"),
    "TAX_VALUE": FieldInfo("money"),
    "COMPANY_ID": FieldInfo("id"),
    "CONTACT_ID": FieldInfo("id"),
    "QUOTE_ID": FieldInfo("id"),
    "BEGINDATE": FieldInfo("date"),
    "CLOSEDATE": FieldInfo("date"),
    "OPENED": FieldInfo("char"),
    "CLOSED": FieldInfo("char"),
    "COMMENTS": FieldInfo(),
    "ASSIGNED_BY_ID": FieldInfo("id"),
    "CREATED_BY_ID": FieldInfo("id", read_only=True),
    "MODIFY_BY_ID": FieldInfo("id", read_only=True),
    "MOVED_BY_ID": FieldInfo("id", read_only=True),
    "DATE_CREATE": FieldInfo("datetime", read_only=True),
    "DATE_MODIFY": FieldInfo("datetime", read_only=True),
    "MOVED_TIME": FieldInfo("datetime", read_only=True),
    "SOURCE_ID": FieldInfo(),
    "SOURCE_DESCRIPTION": FieldInfo(),
    "LEAD_ID": FieldInfo("id"),
    "ADDITIONAL_INFO": FieldInfo(),
    "LOCATION_ID": FieldInfo(),
    "ORIGINATOR_ID": FieldInfo(),
    "ORIGIN_ID": FieldInfo(),
    **_UTM,
    "LAST_ACTIVITY_TIME": FieldInfo("datetime", read_only=True),
}
MULTI_FIELDS: Final = ("PHONE", "EMAIL", "WEB", "IM")
DEAL_USERFIELDS: Final = (
    UserField(7001, UF_ABCP_USER_ID, "ID клиента ABCP", sort=100),
    UserField(7003, UF_ABCP_INN, "ИНН", sort=110),
    UserField(7005, UF_ABCP_SALDO, "Баланс ABCP", sort=120),
)
CATEGORIES: Final = {0: "Общая", USERS_CATEGORY_ID: "Пользователи"}
# (STATUS_ID, NAME, SORT, semantics P/S/F, colour)
STAGES: Final[dict[int, tuple[tuple[str, str, int, str, str], ...]]] = {
    0: (
        ("NEW", "Новая", 10, "P", "#39A8EF"),
        ("PREPARATION", "Подготовка документов", 20, "P", "#2FC6F6"),
        ("PREPAYMENT_INVOICE", "Счёт на предоплату", 30, "P", "#55D0E0"),
        ("EXECUTING", "В работе", 40, "P", "#47E4C2"),
        ("FINAL_INVOICE", "Финальный счёт", 50, "P", "#FFA900"),
        ("WON", "Сделка успешна", 60, "S", "#7BD500"),
        ("LOSE", "Сделка провалена", 70, "F", "#FF5752"),
        ("APOLOGY", "Анализ причины провала", 80, "F", "#FF5752"),
    ),
    USERS_CATEGORY_ID: (
        ("C5:NEW", "Новый пользователь", 10, "P", "#39A8EF"),
        ("C5:PREPARATION", "В работе", 20, "P", "#2FC6F6"),
        ("C5:WON", "Активен", 30, "S", "#7BD500"),
        ("C5:LOSE", "Отказ", 40, "F", "#FF5752"),
    ),
}
OTHER_STATUSES: Final = {
    "SOURCE": (("CALL", "Звонок"), ("EMAIL", "Электронная почта"), ("WEB", "Веб-сайт"), ("OTHER", "Другое")),
    "CONTACT_TYPE": (("CLIENT", "Клиенты"), ("SUPPLIER", "Поставщики"), ("PARTNER", "Партнёры")),
    "DEAL_TYPE": (("SALE", "Продажа"), ("COMPLEX", "Комплексная продажа"), ("GOODS", "Продажа товара")),
}
SEMANTICS: Final = {"P": "process", "S": "success", "F": "failure"}
