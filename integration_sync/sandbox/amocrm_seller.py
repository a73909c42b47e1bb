"""The Sheets seller's amoCRM account: a second, separate account served at ``/amocrm-seller``.

A different business from the Kaspi shop and the school (its own host in reality): its own OAuth
integration and tokens, rate budget and data, on the same emulator classes with another profile.
Seeded as ../shared/seeds/amocrm-google-sheets-sync.md describes: pipelines named with the keyword
``sotuv`` (and one without), the trigger status under its variant spellings (typo, Uzbek, case),
leads with a main contact (name in one field, phones typed several ways), a company and the
seed's custom fields with missing values. Lead status changes (API or the operator control call)
are sent as amoCRM status webhooks to every ``status_lead`` subscription (see amocrm_hooks).

Controls: ``POST /_sandbox/amocrm-seller/leads/{id}/status`` ``{status_id, pipeline_id?}`` (an
operator moving one lead), ``POST /_sandbox/amocrm-seller/leads/status`` ``[{id, status_id,
pipeline_id?}, ...]`` (several at once: one hook), ``GET /_sandbox/amocrm-seller/webhook_deliveries``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from integration_sync.sandbox.amocrm import AmoCrmService
from integration_sync.sandbox.amocrm_hooks import HookSender, status_form
from integration_sync.sandbox.amocrm_http import Ctx, HalResponse, no_content
from integration_sync.sandbox.amocrm_schema import (
    CONTACT_FIELDSET,
    AmoProfile,
    EnumItem,
    FieldDef,
    FieldSet,
    OAuthApp,
    Pipeline,
    _pipeline,
)
from integration_sync.sandbox.amocrm_store import Account, Record
from integration_sync.sandbox.core import Clock, JsonDict, JsonResponse, read_json

SELLER_APP: Final = OAuthApp(
    "sandbox-seller-client",
    "sandbox-seller-secret",
    "https://example.invalid/seller-oauth",
    "sandbox-seller-auth-code",
    "sandbox-seller-access-0",
    "sandbox-seller-refresh-0",
    "sandbox-seller-long-lived-token",
)
SELLER_ACCOUNT_ID: Final = 32000001
SELLER_SUBDOMAIN: Final = "sellersandbox"
SELLER_USERS: Final = (2001, 2002, 2003)

TRIGGER_VARIANTS: Final = (
    "ЗАКАЗ БЕЗ НУМЕРАЦИИ",
    "ЗАЗАЗ БЕЗ НУМЕРАЦИИ",
    "NOMERATSIYALANMAGAN ZAKAZ",
    "Заказ без нумерации",
)
SELLER_PIPELINE_MAIN: Final = 9100001
SELLER_PIPELINE_NO_KEYWORD: Final = 9100005
SELLER_PIPELINES: Final[tuple[Pipeline, ...]] = (
    _pipeline(
        SELLER_PIPELINE_MAIN,
        "Sotuv bo'limi",
        1,
        91000010,
        [(91000011, "Yangi lid"), (91000012, TRIGGER_VARIANTS[0]), (91000013, "ЗАКАЗ ОТПРАВЛЕН"), (91000014, "ОТКАЗ")],
        main=True,
    ),
    _pipeline(
        9100002,
        "Sotuv 2",
        2,
        91000020,
        [(91000021, "Yangi lid"), (91000022, TRIGGER_VARIANTS[1]), (91000023, "Заказ отправлен"), (91000024, "OTKAZ")],
        main=False,
    ),
    _pipeline(  # no reject stage of its own: a refusal goes to 143
        9100003,
        "Onlayn sotuv",
        3,
        91000030,
        [(91000031, "Qo'ng'iroq qilindi"), (91000032, TRIGGER_VARIANTS[2]), (91000033, "Заказ отправлен")],
        main=False,
    ),
    _pipeline(
        9100004,
        "Sotuv filial",
        4,
        91000040,
        [
            (91000041, "Новая заявка"),
            (91000042, TRIGGER_VARIANTS[3]),
            (91000043, "Заказ отправлен"),
            (91000044, "Отказ"),
        ],
        main=False,
    ),
    _pipeline(  # the keyword filter must skip it although its trigger name matches
        SELLER_PIPELINE_NO_KEYWORD,
        "Servis",
        5,
        91000050,
        [(91000051, "Yangi murojaat"), (91000052, TRIGGER_VARIANTS[0]), (91000053, "Hal qilindi")],
        main=False,
    ),
)

SELLER_FIELD_PRODUCT: Final = 950101
SELLER_FIELD_ORDER_DATE: Final = 950102
SELLER_FIELD_REGION: Final = 950103
SELLER_FIELD_EMPLOYEE_CODE: Final = 950104
SELLER_FIELD_ORDER_NO: Final = 950105
PRODUCTS: Final = ("Krem Aloe Vera", "Shampun Argan", "Vitamin D3 2000", "Massajyor Pro", "Choy Detox")
PRODUCT_ENUMS: Final = {name: 951001 + i for i, name in enumerate(PRODUCTS)}
SELLER_LEAD_FIELDSET: Final = FieldSet(
    (
        FieldDef(
            SELLER_FIELD_PRODUCT,
            "Продукт",
            "select",
            "leads",
            500,
            enums=tuple(EnumItem(eid, name, (i + 1) * 10) for i, (name, eid) in enumerate(PRODUCT_ENUMS.items())),
        ),
        FieldDef(SELLER_FIELD_ORDER_DATE, "Дата заказа", "date", "leads", 501),
        FieldDef(SELLER_FIELD_REGION, "Регион", "text", "leads", 502),
        FieldDef(SELLER_FIELD_EMPLOYEE_CODE, "Код сотрудника", "text", "leads", 503),
        FieldDef(SELLER_FIELD_ORDER_NO, "Заказ №", "text", "leads", 504),
    )
)
SELLER_PROFILE: Final = AmoProfile(
    SELLER_APP,
    SELLER_ACCOUNT_ID,
    SELLER_SUBDOMAIN,
    SELLER_USERS,
    SELLER_PIPELINES,
    SELLER_LEAD_FIELDSET,
    CONTACT_FIELDSET,
)

FIRST = ("Bahodir", "Elyorbek", "Dilnoza", "Gulnora", "Sardor", "Madina", "Jasur", "Nodira", "Otabek", "Zarina")
LAST = ("Husanov", "Isoqulov", "Karimova", "Toshmatova", "Rahimov", "Yusupova", "Aliyev", "Nazarova")
REGIONS = ("Toshkent", "Toshkent sh.", "ташкент", "Samarqand", "Farg'ona", "Andijon", "Buxoro", "Namangan ", "")
EMPLOYEE_CODES = ("0134", "134", "0144", "144", "0201", "", "07")
COMPANIES = ('OOO "Orzu Savdo"', "YaTT Karimov", "Baraka Market", "ChP Nur", "MChJ Ipak Yo'li")
UZ_CODES = ("90", "91", "93", "94", "95", "97", "98", "99", "33", "88")


@dataclass
class Company(Record):
    responsible_user_id: int = SELLER_USERS[0]


def phone_as_typed(rng: random.Random) -> str:
    code, rest = rng.choice(UZ_CODES), f"{rng.randrange(10**7):07d}"
    return rng.choice(
        (
            f"+998{code}{rest}",
            f"998{code}{rest}",
            f"+998 {code} {rest[:3]} {rest[3:5]} {rest[5:]}",
            f"+998 ({code}) {rest[:3]}-{rest[3:5]}-{rest[5:]}",
            f"{code} {rest[:3]} {rest[3:5]} {rest[5:]}",
            f"8{code}{rest}",
        )
    )


def _apply(account: Account, kind: str, item: JsonDict) -> int:
    errors: list[JsonDict] = []
    if kind == "contact":
        plan = account.check_contact(item, 0, errors, update=False)
        assert not errors, errors
        return account.apply_contact(plan).id
    plan = account.check_lead(item, 0, errors, update=False)
    assert not errors, errors
    return account.apply_lead(plan).id


def seed_seller(account: Account, seed: int, leads: int, days: int, now: float) -> None:
    """``leads`` leads created over the last ``days`` days; the first walk every pipeline's trigger."""
    rng = random.Random(seed * 7919 + 31)
    for name in COMPANIES:
        ts = int(now) - days * 86400
        company = Company(account.new_id("companies"), name, SELLER_USERS[0], SELLER_USERS[0], ts, ts)
        account.companies[company.id] = company
    company_ids = list(account.companies)
    triggers = [(p.id, s.id) for p in SELLER_PIPELINES for s in p.statuses if s.name in TRIGGER_VARIANTS]
    span = max(days, 1) * 86400
    for n in range(leads):
        created = int(now) - span + (n * span) // max(leads, 1) + rng.randrange(3600)
        phones = [{"value": phone_as_typed(rng), "enum_code": "WORK"}]
        if rng.random() < 0.2:
            phones.append({"value": phone_as_typed(rng), "enum_code": "MOB"})
        contact_item: JsonDict = {
            "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}" if n % 9 else rng.choice(FIRST).upper(),
            "responsible_user_id": rng.choice(SELLER_USERS),
            "created_at": created,
            "updated_at": created,
            "custom_fields_values": [{"field_code": "PHONE", "values": phones}] if n % 13 != 5 else None,
        }
        contact_id = _apply(account, "contact", contact_item)
        if n < len(triggers):
            pipeline_id, status_id = triggers[n]
        else:
            pipeline = rng.choice(SELLER_PIPELINES)
            pipeline_id = pipeline.id
            status_id = rng.choice([s.id for s in pipeline.statuses if s.type == 0])
        cf: list[JsonDict] = []
        if n % 7 != 3:
            cf.append(
                {"field_id": SELLER_FIELD_PRODUCT, "values": [{"enum_id": rng.choice(list(PRODUCT_ENUMS.values()))}]}
            )
        if n % 5 != 2:
            cf.append({"field_id": SELLER_FIELD_ORDER_DATE, "values": [{"value": created - created % 86400}]})
        region = rng.choice(REGIONS)
        if region:
            cf.append({"field_id": SELLER_FIELD_REGION, "values": [{"value": region}]})
        code = rng.choice(EMPLOYEE_CODES)
        if code:
            cf.append({"field_id": SELLER_FIELD_EMPLOYEE_CODE, "values": [{"value": code}]})
        if status_id in (91000013, 91000023, 91000033, 91000043, 142) and rng.random() < 0.7:
            cf.append({"field_id": SELLER_FIELD_ORDER_NO, "values": [{"value": f"Z-{10000 + n}"}]})
        updated = min(created + rng.randrange(2 * 86400), int(now))
        lead_item: JsonDict = {
            "name": f"Buyurtma #{1000 + n}" if n % 4 else f"Сделка {rng.choice(FIRST)}",
            "price": rng.randrange(1, 60) * 10000,
            "pipeline_id": pipeline_id,
            "status_id": status_id,
            "responsible_user_id": rng.choice(SELLER_USERS),
            "created_at": created,
            "updated_at": updated,
            "custom_fields_values": cf or None,
            "_embedded": {"contacts": [{"id": contact_id, "is_main": True}]},
        }
        if status_id in (142, 143):
            lead_item["closed_at"] = updated
        lead_id = _apply(account, "lead", lead_item)
        if n % 6 != 4:
            account.lead_companies[lead_id] = [rng.choice(company_ids)]
    account.status_changes.clear()


def seller_env(base: str) -> dict[str, str]:
    """The seller flow's ``SHEETS_AMO_*`` settings for the sandbox served at ``base``."""
    return {
        "SHEETS_AMO_BASE_URL": f"{base.rstrip('/')}/amocrm-seller",
        "SHEETS_AMO_CLIENT_ID": SELLER_APP.client_id,
        "SHEETS_AMO_CLIENT_SECRET": SELLER_APP.client_secret,
        "SHEETS_AMO_REDIRECT_URI": SELLER_APP.redirect_uri,
        "SHEETS_AMO_ACCESS_TOKEN": SELLER_APP.initial_access,
        "SHEETS_AMO_REFRESH_TOKEN": SELLER_APP.initial_refresh,
        "SHEETS_AMO_LONG_LIVED_TOKEN": "",
        "PIPELINE_KEYWORD": "sotuv",
        "TRIGGER_STATUS_NAME": TRIGGER_VARIANTS[0],
        "TRIGGER_STATUS_NAMES": ",".join(TRIGGER_VARIANTS[1:]),
    }


def render_company(account: Account, company: Record, base: str) -> JsonDict:
    return {
        "id": company.id,
        "name": company.name,
        "responsible_user_id": getattr(company, "responsible_user_id", SELLER_USERS[0]),
        "group_id": 0,
        "created_by": company.created_by,
        "updated_by": company.updated_by,
        "created_at": company.created_at,
        "updated_at": company.updated_at,
        "closest_task_at": None,
        "is_deleted": False,
        "custom_fields_values": None,
        "account_id": account.profile.account_id,
        "_links": {"self": {"href": f"{base}/api/v4/companies/{company.id}"}},
        "_embedded": {"tags": []},
    }


class SellerAmoService(AmoCrmService):
    """The seller's account: the amoCRM emulator with the seller profile, companies and status hooks."""

    name = "amocrm-seller"
    profile = SELLER_PROFILE

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.hooks = HookSender()

    def reset(self, seed: int, volumes: Mapping[str, Any]) -> None:
        self.hooks.reset(float(volumes.get("amocrm_seller_hook_time_scale", 1 / 300)))
        super().reset(seed, volumes)

    def seed_data(self, seed: int, volumes: Mapping[str, Any]) -> None:
        leads, days = int(volumes.get("amocrm_seller_leads", 60)), int(volumes.get("days", 30))
        seed_seller(self.account, seed, leads, days, self.clock.now())

    def after_write(self) -> None:
        """Every status change of the call in one hook per ``status_lead`` subscription."""
        account = self.account
        changes, account.status_changes = account.status_changes, []
        hooks = [h for h in account.webhooks if "status_lead" in h["settings"] and not h["disabled"]]
        if changes and hooks:
            self.hooks.submit(hooks, status_form(account, [(account.leads[i], s, p) for i, s, p in changes]))

    def entities(self) -> dict[str, int]:
        return {**super().entities(), "companies": len(self.account.companies)}

    # ------------------------------------------------------------------ companies (read only)
    def routes(self) -> list[BaseRoute]:
        routes = super().routes()
        extra = [
            Route(
                "/api/v4/companies",
                self._endpoint("/api/v4/companies", {"GET": (self.h_companies, True)}),
                methods=["GET"],
            ),
            Route(
                "/api/v4/companies/{id:int}",
                self._endpoint("/api/v4/companies/{id:int}", {"GET": (self.h_company, True)}),
                methods=["GET"],
            ),
        ]
        return routes[:-1] + extra + routes[-1:]  # before the catch-all

    def h_companies(self, ctx: Ctx) -> Response:
        rows = self._select(ctx, self.account.companies.values())
        return self._page(ctx, "companies", rows, lambda c: render_company(self.account, c, ctx.base))

    def h_company(self, ctx: Ctx) -> Response:
        company = self.account.companies.get(ctx.int_param("id"))
        return no_content() if company is None else HalResponse(render_company(self.account, company, ctx.base))

    # ------------------------------------------------------------------ controls
    def control_routes(self) -> list[BaseRoute]:
        return [
            *super().control_routes(),
            Route("/leads/status", self.control_move_many, methods=["POST"]),
            Route("/leads/{id:int}/status", self.control_move_one, methods=["POST"]),
            Route("/webhook_deliveries", self.control_deliveries, methods=["GET"]),
        ]

    def _move(self, moves: list[Any]) -> Response:
        """Operator moves, validated like a PATCH; one hook for all of them."""
        items: list[JsonDict] = []
        for move in moves:
            if not isinstance(move, dict) or not isinstance(move.get("id"), int) or "status_id" not in move:
                return JsonResponse({"error": "each move needs id and status_id"}, status_code=400)
            items.append({k: move[k] for k in ("id", "status_id", "pipeline_id") if k in move})
        with self.lock:
            plans = []
            for i, item in enumerate(items):
                current = self.account.leads.get(item["id"])
                if current is not None:  # an operator moves a lead within its pipeline unless told otherwise
                    item.setdefault("pipeline_id", current.pipeline_id)
                errors: list[JsonDict] = []
                plan = self.account.check_lead(item, i, errors, update=True)
                if errors:
                    return JsonResponse({"error": "invalid move", "index": i, "details": errors}, status_code=400)
                plans.append(plan)
            moved = [self.account.apply_lead(plan).id for plan in plans]
            self.after_write()
        return JsonResponse({"moved": moved})

    async def control_move_one(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            return JsonResponse({"error": "body must be an object"}, status_code=400)
        return self._move([{**body, "id": int(request.path_params["id"])}])

    async def control_move_many(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, list) or not body:
            return JsonResponse({"error": "body must be a non-empty array"}, status_code=400)
        return self._move(body)

    async def control_deliveries(self, request: Request) -> Response:
        return JsonResponse(self.hooks.describe())
