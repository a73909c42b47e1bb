"""ABCP admin API emulator: ``GET /abcp/cp/users``.

Enforced like the real API (see /work/shared/api-facts.md): ``userlogin`` + ``userpsw`` (md5 hex of
the password), date filters in ``YYYY-MM-DD HH:MM:SS`` Moscow server time, ``limit``/``skip`` paging
with a cap, ``format=p`` envelope, the documented keys as strings or null plus the undocumented ones
recorded real users carry (numbers and lists among them), and an array that sometimes comes as an
object keyed "0", "1", ...

Unconfirmed vendor details, kept configurable: the HTTP status of an auth failure (403 here; the
body ``{"errorCode": 102, "errorMessage": "Неправильное имя или пароль!"}`` was seen in real
traffic); the limit cap (1000, the documented default; larger limits are silently clamped, so a
client that stops paging at "fewer rows than I asked for" loses data, as it would for real); the
body of a malformed-parameter error (400, ``errorCode`` 1).
"""

from __future__ import annotations

import copy
import hashlib
import random
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from integration_sync.sandbox.core import (
    Clock,
    DroppedResponse,
    JsonDict,
    JsonResponse,
    Service,
    json_dumps,
    moscow_str,
    parse_php_query,
    read_json,
)
from integration_sync.sandbox.fakedata import ABSENT, RuFaker

ABCP_USERLOGIN: Final = "api@sandbox"
ABCP_USERPSW_PLAIN: Final = "sandbox-password"
ABCP_USERPSW_MD5: Final = hashlib.md5(ABCP_USERPSW_PLAIN.encode(), usedforsecurity=False).hexdigest()
ABCP_AUTH_ERROR: Final = {"errorCode": 102, "errorMessage": "Неправильное имя или пароль!"}
ABCP_METHOD: Final = "cp/users"

USER_KEYS: Final = (
    "userId",
    "customerCode",
    "email",
    "marketType",
    "name",
    "secondName",
    "surname",
    "birthDate",
    "mobile",
    "phone",
    "icq",
    "skype",
    "city",
    "state",
    "registrationDate",
    "updateTime",
    "lastLoginDate",
    "registrationIp",
    "organizationName",
    "organizationForm",
    "organizationOfficialName",
    "inn",
    "kpp",
    "ogrn",
    "okpo",
    "organizationOfficialAddress",
    "organizationAddress",
    "bankName",
    "bik",
    "correspondentAccount",
    "organizationAccount",
    "deliveryAddress",
    "info",
    "comment",
    "profileId",
    "profileName",
    "balance",
    "saldo",
    "creditLimit",
    "currency",
    "paymentDelay",
    "discount",
    "managerId",
    "managerName",
    "offices",
    "defaultOfficeId",
    "emailConfirmed",
    "mobileConfirmed",
    "mailingSubscribe",
    "agreementNumber",
    "agreementDate",
    "source",
    "referrer",
    "activityType",
    "contractorId",
    "erpId",
)
PROFILES: Final = (("1", "Розница"), ("2", "Опт"), ("3", "Опт VIP"), ("7", "Автосервисы"))
MANAGERS: Final = (("15", "Сидорова Анна"), ("22", "Климов Олег"), (None, None))
OFFICES: Final = ("1042", "1187", "1203", "1311")
DATE_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
DATE_FILTERS: Final = {
    "dateRegistredStart": ("registrationDate", ">="),
    "dateRegistredEnd": ("registrationDate", "<="),
    "dateUpdatedStart": ("updateTime", ">="),
    "dateUpdatedEnd": ("updateTime", "<="),
}


class AbcpParamError(ValueError):
    """A malformed request parameter (answered 400 with an ABCP error body)."""


def _digits_tail(value: Any, size: int = 10) -> str:
    digits = "".join(ch for ch in str(value or "") if ch.isdigit())
    return digits[-size:]


def make_user(rng: random.Random, user_id: int, registered: float, updated: float) -> JsonDict:
    """One ABCP user: ~56 documented keys (strings or null; offices a list of id strings) plus the
    undocumented ones real users carry."""
    fake = RuFaker(rng)
    person = fake.person()
    city = fake.city()
    wholesale = rng.random() < 0.4
    profile_id, profile_name = rng.choice(PROFILES[1:] if wholesale else PROFILES[:1])
    manager_id, manager_name = rng.choice(MANAGERS)
    user: JsonDict = dict.fromkeys(USER_KEYS)
    user.update(
        userId=str(user_id),
        customerCode=f"K{user_id % 100000:05d}",
        marketType="2" if wholesale else "1",
        name=person.first,
        secondName=person.middle if rng.random() < 0.8 else "",
        surname=person.last,
        birthDate=None if rng.random() < 0.7 else f"19{rng.randint(55, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
        mobile="" if rng.random() < 0.15 else fake.phone(),
        phone=fake.phone() if rng.random() < 0.2 else "",
        icq=None,
        skype="",
        city=city,
        state=rng.choices(("1", "0", "2"), weights=(85, 10, 5))[0],
        registrationDate=moscow_str(registered),
        updateTime=moscow_str(updated),
        lastLoginDate=moscow_str(updated) if rng.random() < 0.6 else None,
        registrationIp=f"{rng.randint(5, 217)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        organizationName="",
        organizationForm="",
        organizationOfficialName="",
        inn="",
        kpp="",
        ogrn="",
        okpo="",
        organizationOfficialAddress="",
        organizationAddress="",
        bankName="",
        bik="",
        correspondentAccount="",
        organizationAccount="",
        deliveryAddress=fake.address(city) if rng.random() < 0.7 else "",
        info="",
        comment=rng.choice(("", "", "", "Постоянный клиент", "Звонить после 18:00")),
        profileId=profile_id,
        profileName=profile_name,
        balance=f"{fake.amount(-5000, 50000):.2f}",
        creditLimit=rng.choice(("0.00", "0.00", "50000.00", "100000.00")),
        currency="RUR",
        paymentDelay=rng.choice(("0", "0", "14", "30")),
        discount=rng.choice(("0", "0", "3", "5", "7.5")),
        managerId=manager_id,
        managerName=manager_name,
        offices=rng.sample(OFFICES, rng.randint(0, 2)),
        defaultOfficeId=rng.choice(OFFICES),
        emailConfirmed=rng.choice(("1", "1", "0")),
        mobileConfirmed=rng.choice(("1", "0")),
        mailingSubscribe=rng.choice(("1", "0")),
        agreementNumber=None,
        agreementDate=None,
        source=rng.choice(("site", "site", "manager", "import")),
        referrer=None,
        activityType=None,
        contractorId=None,
        erpId=None,
    )
    user["email"] = "" if rng.random() < 0.1 else fake.email(person, user_id)
    if wholesale or rng.random() < 0.1:
        form, org_name = fake.organisation()
        inn = fake.inn_person() if form == "ИП" else fake.inn_legal()
        user.update(
            organizationName=org_name,
            organizationForm=form,
            organizationOfficialName=org_name,
            inn="" if rng.random() < 0.12 else inn,
            kpp="" if form == "ИП" else fake.kpp(inn),
            ogrn=fake.ogrn(),
            okpo=fake.digits(8),
            organizationOfficialAddress=fake.address(city),
            organizationAddress=fake.address(city),
            bankName=rng.choice(("ПАО Сбербанк", "Банк ВТБ (ПАО)", "АО «Альфа-Банк»")),
            bik="04" + fake.digits(7),
            correspondentAccount="30101810" + fake.digits(12),
            organizationAccount="40702810" + fake.digits(12),
            agreementNumber=f"Д-{user_id % 10000}",
            agreementDate=moscow_str(registered)[:10],
        )
    saldo = fake.money()
    if saldo is ABSENT:
        del user["saldo"]
    else:
        user["saldo"] = saldo
    _undocumented_keys(rng, user, user_id)
    return user


def _undocumented_keys(rng: random.Random, user: JsonDict, user_id: int) -> None:
    """What recorded real users carry beyond the documented keys: more keys, values that are not
    strings (numbers, lists), a null ``balance`` and, for many users, no ``saldo`` key at all."""
    user["regionId"] = rng.choice(("77", "50", 78, 16, None))
    user["userCode"] = f"{user_id % 1000000:06d}"
    user["locale"] = rng.choice(("ru_RU", "ru_RU", "ru_RU", "en_US"))
    user["payDelay"] = rng.choice((0, 0, 14, "30", None))
    user["deliveryAddressZones"] = rng.choice(([], [], ["1"], ["1", "3"], [{"id": "2", "name": "МКАД"}]))
    if rng.random() < 0.1:
        user["balance"] = None
    if rng.random() < 0.3:
        user.pop("saldo", None)


def generate_users(seed: int, count: int, days: int, anchor: float) -> list[JsonDict]:
    """``count`` users registered over the ``days`` days before ``anchor``, ordered by userId."""
    master = random.Random(f"abcp-users:{seed}")
    span = max(days, 0) * 86400.0
    registered = sorted(anchor - master.uniform(0.0, span) for _ in range(count))
    user_id = 8714000 + master.randint(0, 999)
    users = []
    for index, reg in enumerate(registered):
        user_id += master.randint(1, 37)
        rng = random.Random(f"abcp-user:{seed}:{index}")
        updated = reg + rng.uniform(0.0, anchor - reg) if rng.random() < 0.4 else reg
        users.append(make_user(rng, user_id, reg, updated))
    return users


class AbcpService(Service):
    """The ``cp/users`` endpoint of one ABCP shop."""

    name = "abcp"

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.users: list[JsonDict] = []
        self.raw_users: list[Any] = []
        self.object_response_default = False
        self.object_response = False
        self.limit_cap = 1000
        self.default_limit = 1000
        self.auth_error_status = 403

    # ------------------------------------------------------------------ lifecycle
    def reset(self, seed: int, volumes: Mapping[str, Any]) -> None:
        anchor = float(int(self.clock.start_epoch if self.clock.pinned else self.clock.now()))
        users = generate_users(seed, int(volumes.get("abcp_users", 200)), int(volumes.get("days", 30)), anchor)
        with self.lock:
            self.users = users
            self.raw_users = []
            self.object_response_default = bool(volumes.get("abcp_object_response", False))
            self.object_response = self.object_response_default
            self.limit_cap = int(volumes.get("abcp_limit_cap", 1000))
            self.auth_error_status = int(volumes.get("abcp_auth_error_status", 403))
            self.reset_counters()
        self.configure_faults(None)

    def dedupe_people(self, count: int) -> list[JsonDict]:
        """Bitrix24 contacts that already exist for some ABCP users, written differently.

        The first has the user's mobile as ``8XXXXXXXXXX``, the second the user's email in upper
        case, so a sync must normalize before it matches. The rest are left to the portal.
        """
        people: list[JsonDict] = []
        with self.lock:
            with_phone = next((u for u in self.users if len(_digits_tail(u.get("mobile"))) == 10), None)
            with_email = next((u for u in self.users if u.get("email") and u is not with_phone), None)
        for user, kind in ((with_phone, "phone"), (with_email, "email")):
            if user is None or len(people) >= count:
                continue
            person: JsonDict = {
                "NAME": user["name"],
                "SECOND_NAME": user["secondName"],
                "LAST_NAME": user["surname"],
                "ABCP_USER_ID": user["userId"],
            }
            if kind == "phone":
                person["PHONE"] = "8" + _digits_tail(user["mobile"])
            else:
                person["EMAIL"] = str(user["email"]).upper()
            people.append(person)
        return people

    def entities(self) -> dict[str, int]:
        return {"users": len(self.users) + len(self.raw_users)}

    def apply_fault_extras(self, extra: Mapping[str, Any]) -> None:
        unknown = set(extra) - {"object_response"}
        if unknown:
            raise ValueError(f"unknown fault keys for abcp: {sorted(unknown)}")
        with self.lock:
            self.object_response = bool(extra.get("object_response", self.object_response_default))

    def fault_response(self, status: int, body: Any, method: str) -> Response:
        if body is not None:
            return super().fault_response(status, body, method)
        if status >= 500:
            html = (
                f"<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center>"
                "<hr><center>nginx</center></body></html>"
            )
            return Response(html.encode(), status_code=status, media_type="text/html")
        return JsonResponse({"errorCode": status, "errorMessage": "Ошибка запроса"}, status_code=status)

    # ------------------------------------------------------------------ routes
    def routes(self) -> list[BaseRoute]:
        return [Route("/cp/users", self.handle_users, methods=["GET"])]

    def control_routes(self) -> list[BaseRoute]:
        return [
            Route("/users/{user_id}", self.control_update_user, methods=["POST"]),
            Route("/raw_users", self.control_raw_users, methods=["POST"]),
        ]

    async def handle_users(self, request: Request) -> Response:
        self.count_request(ABCP_METHOD)
        fault = await self.apply_faults(ABCP_METHOD)
        if fault is not None:
            return fault
        params = parse_php_query(request.url.query)
        if params.get("userlogin") != ABCP_USERLOGIN or params.get("userpsw") != ABCP_USERPSW_MD5:
            return JsonResponse(ABCP_AUTH_ERROR, status_code=self.auth_error_status)
        try:
            body = self.query_users(params)
        except AbcpParamError as exc:
            return JsonResponse({"errorCode": 1, "errorMessage": str(exc)}, status_code=400)
        if self.faults.take_commit_then_drop(ABCP_METHOD):
            return DroppedResponse(json_dumps(body), hold_s=self.faults.drop_hold_s)
        return JsonResponse(body)

    # ------------------------------------------------------------------ query logic
    def query_users(self, params: Mapping[str, Any]) -> Any:
        """The body ``cp/users`` answers for these (already authenticated) parameters."""
        conditions = []
        for param, (field, op) in DATE_FILTERS.items():
            value = params.get(param)
            if value is None or value == "":
                continue
            if not isinstance(value, str) or not DATE_RE.match(value):
                raise AbcpParamError(f"Неверный формат даты в параметре {param}: ожидается ГГГГ-ММ-ДД ЧЧ:ММ:СС")
            try:
                datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
            except ValueError as exc:
                raise AbcpParamError(f"Неверная дата в параметре {param}") from exc
            conditions.append((field, op, value))
        limit = self._int_param(params, "limit", self.default_limit, 1)
        limit = min(limit, self.limit_cap)
        skip = self._int_param(params, "skip", 0, 0)
        ids = params.get("customersIds")
        id_set: set[str] | None = None
        if ids not in (None, ""):
            values = ids.values() if isinstance(ids, dict) else ids if isinstance(ids, list) else [ids]
            id_set = {str(v) for v in values}
        state = params.get("state")
        market = params.get("marketType")
        phone = _digits_tail(params.get("phone")) if params.get("phone") else None
        email = str(params.get("email")).strip().lower() if params.get("email") else None

        with self.lock:
            matched = [
                u
                for u in self.users
                if all(self._date_ok(u.get(f), op, v) for f, op, v in conditions)
                and (id_set is None or u["userId"] in id_set)
                and (state in (None, "") or u.get("state") == str(state))
                and (market in (None, "") or u.get("marketType") == str(market))
                and (phone is None or phone in (_digits_tail(u.get("mobile")), _digits_tail(u.get("phone"))))
                and (email is None or str(u.get("email") or "").lower() == email)
            ]
            rows: list[Any] = matched + self.raw_users
            page = copy.deepcopy(rows[skip : skip + limit])
            as_object = self.object_response
        items: Any = {str(i): row for i, row in enumerate(page)} if as_object and page else page
        if str(params.get("format", "")).lower() == "p":
            return {"count": len(rows), "items": items}
        return items

    @staticmethod
    def _date_ok(value: Any, op: str, bound: str) -> bool:
        if not isinstance(value, str) or not DATE_RE.match(value):
            return False
        return value >= bound if op == ">=" else value <= bound

    @staticmethod
    def _int_param(params: Mapping[str, Any], name: str, default: int, minimum: int) -> int:
        raw = params.get(name)
        if raw is None or raw == "":
            return default
        if not isinstance(raw, str) or not raw.strip().isdigit():
            raise AbcpParamError(f"Параметр {name} должен быть целым числом")
        value = int(raw)
        if value < minimum:
            raise AbcpParamError(f"Параметр {name} должен быть не меньше {minimum}")
        return value

    # ------------------------------------------------------------------ control
    def update_user(self, user_id: str, fields: Mapping[str, Any]) -> JsonDict | None:
        """Change a user's fields and stamp updateTime with the current Moscow time."""
        with self.lock:
            for user in self.users:
                if user["userId"] == user_id:
                    for key, value in fields.items():
                        user[key] = value
                    user["updateTime"] = moscow_str(self.clock.now())
                    return copy.deepcopy(user)
        return None

    async def control_update_user(self, request: Request) -> Response:
        try:
            body = await read_json(request)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return JsonResponse({"error": "body must be a JSON object of fields"}, status_code=400)
        user = self.update_user(str(request.path_params["user_id"]), body)
        if user is None:
            return JsonResponse({"error": "user not found"}, status_code=404)
        return JsonResponse(user)

    async def control_raw_users(self, request: Request) -> Response:
        try:
            body = await read_json(request)
        except ValueError:
            body = None
        if not isinstance(body, list):
            return JsonResponse({"error": "body must be a JSON list"}, status_code=400)
        with self.lock:
            self.raw_users.extend(body)
            total = len(self.raw_users)
        return JsonResponse({"raw_users": total})
