"""amoCRM (Kommo) API v4 emulator: OAuth 2.0, contacts, leads (+ complex), pipelines, custom
fields, catalogs, notes, entity links and webhook subscriptions, with the account's limits.

Mounted at ``/amocrm`` (``AMO_BASE_URL = {base}/amocrm``): ``/amocrm/api/v4/...`` and
``POST /amocrm/oauth2/access_token``. The account's business (integration, ids, pipelines, fields) is its
``profile``; a subclass with another profile is another account (amocrm_seller, at ``/amocrm-seller``).
Behaviour from /work/shared/api-facts.md, the vendor samples
(/work/shared/api-samples/amocrm) and the official PHP SDK:

- ``Authorization: Bearer``; missing/unknown/expired/revoked -> 401 problem+json ("Неверный логин
  или пароль"). OAuth errors are the localized league/oauth2-server problems (see amocrm_auth).
- At most ``amocrm_rate`` (7) accepted requests in any 1 s window -> 429 with an nginx HTML body
  and no Retry-After. Block mode: repeated 429s -> 403 nginx HTML on every request until
  ``POST /_sandbox/amocrm/unblock``.
- Success ``application/hal+json``; errors ``application/problem+json``; lists page with ``page``
  (1-based) and ``limit`` (<= 250), no total, no ``next`` on the last page; an empty list, a
  ``query`` without a hit and an unknown id answer 204 with an empty body.
- Batches are refused whole on any invalid item (400 ``validation-errors`` with the item's
  ``request_id`` or ordinal); ``POST /leads/complex`` takes <= 50 leads and answers a bare array.

Unconfirmed, configurable (`SandboxConfig` ``amocrm_*``): whether refreshing revokes the previous
access token (default yes); ``limit`` > 250 (default 400; "clamp" serves 250); the read key of an
enum code (``enum_code``, as the official SDK reads it; "enum" as in older docs); whether a lead
``query`` also matches the linked contacts' fields (default no: leads have no phone of their own);
whether ``filter[query]`` works like ``query`` (default no: unknown filters are ignored, so the
whole list comes back); the plain-batch cap (250). Unconfirmed and fixed: the 429 page body, the
400 body for an over-long complex batch, error codes other than NotSupportedChoice and
FieldNotExpected (InvalidType, FieldMissing, TooManyEntities), 400 for a note/link on an unknown
lead, strict JSON types (``"price": "100"`` is refused), default order by id ascending, and no
trimming of ``query`` (an unencoded ``+`` arrives as a space and finds nothing).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from integration_sync.sandbox.amocrm_auth import BlockGuard, OAuthError, SlidingWindowLimiter, TokenStore
from integration_sync.sandbox.amocrm_http import (
    UNAUTHORIZED,
    AmoConfig,
    Ctx,
    Handler,
    ProblemResponse,
    html,
    reason,
)
from integration_sync.sandbox.amocrm_render import all_links, render_contact, render_element, render_lead, render_note
from integration_sync.sandbox.amocrm_schema import CATALOG_FIELDSET, DEFAULT_PROFILE, AmoProfile
from integration_sync.sandbox.amocrm_seed import seed_account
from integration_sync.sandbox.amocrm_store import Account
from integration_sync.sandbox.amocrm_values import ApiError, bad_request, problem
from integration_sync.sandbox.amocrm_views import AmoViews
from integration_sync.sandbox.core import (
    Clock,
    DroppedResponse,
    JsonDict,
    JsonResponse,
    Service,
    parse_php_query,
)


class AmoCrmService(AmoViews, Service):
    """One amoCRM account reached by one OAuth integration."""

    name = "amocrm"
    profile: AmoProfile = DEFAULT_PROFILE

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.config = AmoConfig()
        self.fault_block_mode = False
        self.tokens = TokenStore(clock, app=self.profile.app)
        self.limiter = SlidingWindowLimiter(self.config.rate, clock)
        self.guard = BlockGuard(clock, self.config.block_after, self.config.block_window_s)
        self.account = Account(clock.now, profile=self.profile)

    # ------------------------------------------------------------------ lifecycle
    def reset(self, seed: int, volumes: Mapping[str, Any]) -> None:
        config = AmoConfig.from_volumes(volumes)
        with self.lock:
            self.config = config
            self.tokens = TokenStore(
                self.clock,
                config.token_lifetime_s,
                refresh_revokes_access=config.refresh_revokes_access,
                app=self.profile.app,
            )
            self.limiter = SlidingWindowLimiter(config.rate, self.clock)
            self.guard = BlockGuard(self.clock, config.block_after, config.block_window_s)
            self.account = Account(self.clock.now, config.lead_query_includes_contacts, self.profile)
            self.seed_data(seed, volumes)
            self.reset_counters()
        self.configure_faults(None)

    def seed_data(self, seed: int, volumes: Mapping[str, Any]) -> None:
        seed_account(self.account, seed, self.config.contacts, self.clock.now())

    def after_write(self) -> None:
        """Called under the lock after every API call: this account sends no webhooks."""
        self.account.status_changes.clear()

    def entities(self) -> dict[str, int]:
        a = self.account
        return {
            "contacts": len(a.contacts),
            "leads": len(a.leads),
            "catalog_elements": len(a.elements),
            "notes": len(a.notes),
            "links": sum(len(links) for links in a.links.values()),
        }

    def apply_fault_extras(self, extra: Mapping[str, Any]) -> None:
        unknown = set(extra) - {"block_mode", "blocked"}
        if unknown:
            raise ValueError(f"unknown fault keys for amocrm: {sorted(unknown)}")
        for key in ("block_mode", "blocked"):
            if key in extra and not isinstance(extra[key], bool):
                raise ValueError(f"{key} must be true or false")
        self.fault_block_mode = bool(extra.get("block_mode", False))
        if extra.get("blocked"):
            self.guard.blocked = True

    @property
    def block_mode(self) -> bool:
        return self.config.block_mode or self.fault_block_mode

    def fault_response(self, status: int, body: Any, method: str) -> Response:
        if body is not None:
            return super().fault_response(status, body, method)
        if status in (403, 429) or status >= 500:
            return html(status)
        if status == 401:
            return ProblemResponse(UNAUTHORIZED, status_code=401)
        return ProblemResponse(problem(status, reason(status), "Injected error"), status_code=status)

    # ------------------------------------------------------------------ routing
    def routes(self) -> list[BaseRoute]:
        api = "/api/v4"
        table: list[tuple[str, str, Handler, bool]] = [
            ("POST", "/oauth2/access_token", self.h_oauth, False),
            ("GET", f"{api}/account", self.h_account, True),
            ("GET", f"{api}/contacts/custom_fields", self.fields_list(self.profile.contact_fieldset, "contacts"), True),
            ("GET", f"{api}/contacts/custom_fields/{{id:int}}", self.field_get(self.profile.contact_fieldset), True),
            ("GET", f"{api}/contacts", self.h_contacts_list, True),
            ("POST", f"{api}/contacts", self.h_contacts_add, True),
            ("PATCH", f"{api}/contacts", self.h_contacts_update, True),
            ("GET", f"{api}/contacts/{{id:int}}", self.h_contact_get, True),
            ("PATCH", f"{api}/contacts/{{id:int}}", self.h_contact_update_one, True),
            ("GET", f"{api}/leads/custom_fields", self.fields_list(self.profile.lead_fieldset, "leads"), True),
            ("GET", f"{api}/leads/custom_fields/{{id:int}}", self.field_get(self.profile.lead_fieldset), True),
            ("GET", f"{api}/leads/pipelines", self.h_pipelines, True),
            ("GET", f"{api}/leads/pipelines/{{id:int}}", self.h_pipeline, True),
            ("GET", f"{api}/leads/pipelines/{{id:int}}/statuses", self.h_statuses, True),
            ("POST", f"{api}/leads/complex", self.h_leads_complex, True),
            ("GET", f"{api}/leads/notes", self.h_notes_list, True),
            ("POST", f"{api}/leads/notes", self.h_notes_add, True),
            ("GET", f"{api}/leads/links", self.h_links_list, True),
            ("POST", f"{api}/leads/link", self.h_link, True),
            ("POST", f"{api}/leads/unlink", self.h_unlink, True),
            ("GET", f"{api}/leads", self.h_leads_list, True),
            ("POST", f"{api}/leads", self.h_leads_add, True),
            ("PATCH", f"{api}/leads", self.h_leads_update, True),
            ("GET", f"{api}/leads/{{id:int}}", self.h_lead_get, True),
            ("PATCH", f"{api}/leads/{{id:int}}", self.h_lead_update_one, True),
            ("GET", f"{api}/leads/{{id:int}}/notes", self.h_notes_list, True),
            ("POST", f"{api}/leads/{{id:int}}/notes", self.h_notes_add, True),
            ("GET", f"{api}/leads/{{id:int}}/notes/{{note_id:int}}", self.h_note_get, True),
            ("GET", f"{api}/leads/{{id:int}}/links", self.h_links_list, True),
            ("POST", f"{api}/leads/{{id:int}}/link", self.h_link, True),
            ("POST", f"{api}/leads/{{id:int}}/unlink", self.h_unlink, True),
            ("GET", f"{api}/catalogs", self.h_catalogs, True),
            ("GET", f"{api}/catalogs/{{id:int}}", self.h_catalog, True),
            ("GET", f"{api}/catalogs/{{id:int}}/custom_fields", self.fields_list(CATALOG_FIELDSET, "catalogs"), True),
            ("GET", f"{api}/catalogs/{{id:int}}/elements", self.h_elements_list, True),
            ("POST", f"{api}/catalogs/{{id:int}}/elements", self.h_elements_add, True),
            ("PATCH", f"{api}/catalogs/{{id:int}}/elements", self.h_elements_update, True),
            ("GET", f"{api}/catalogs/{{id:int}}/elements/{{element_id:int}}", self.h_element_get, True),
            ("PATCH", f"{api}/catalogs/{{id:int}}/elements/{{element_id:int}}", self.h_element_update_one, True),
            ("GET", f"{api}/webhooks", self.h_webhooks_list, True),
            ("POST", f"{api}/webhooks", self.h_webhooks_add, True),
            ("DELETE", f"{api}/webhooks", self.h_webhooks_delete, True),
        ]
        by_path: dict[str, dict[str, tuple[Handler, bool]]] = {}
        for method, path, handler, auth in table:
            by_path.setdefault(path, {})[method] = (handler, auth)
        routes: list[BaseRoute] = [
            Route(path, self._endpoint(path, handlers), methods=list(handlers)) for path, handlers in by_path.items()
        ]
        routes.append(Route("/{path:path}", self._endpoint("*", {}), methods=["GET", "POST", "PATCH", "DELETE"]))
        return routes

    def control_routes(self) -> list[BaseRoute]:
        return [
            Route("/contacts", self.control_dump("contacts"), methods=["GET"]),
            Route("/leads", self.control_dump("leads"), methods=["GET"]),
            Route("/catalog_elements", self.control_dump("catalog_elements"), methods=["GET"]),
            Route("/notes", self.control_dump("notes"), methods=["GET"]),
            Route("/links", self.control_dump("links"), methods=["GET"]),
            Route("/tokens", self.control_tokens, methods=["GET"]),
            Route("/tokens/expire", self.control_expire, methods=["POST"]),
            Route("/unblock", self.control_unblock, methods=["POST"]),
        ]

    def _endpoint(
        self, path: str, handlers: Mapping[str, tuple[Handler, bool]]
    ) -> Callable[[Request], Awaitable[Response]]:
        label = path.replace("/api/v4/", "").lstrip("/").replace(":int", "")

        async def endpoint(request: Request) -> Response:
            key = f"{request.method} {label}"
            self.count_request(key)
            if self.guard.blocked:
                return html(403)
            fault = await self.apply_faults(key)
            if fault is not None:
                return fault
            if not self.limiter.try_acquire():
                self.count_throttled()
                self.guard.record_429(self.block_mode)
                return html(429)
            entry = handlers.get(request.method)
            if entry is None:
                return ProblemResponse(problem(404, "Not Found", "Not found"), status_code=404)
            handler, needs_auth = entry
            if needs_auth and not self._authorized(request):
                return ProblemResponse(UNAUTHORIZED, status_code=401)
            try:
                body = await self._body(request)
                ctx = Ctx(request, parse_php_query(request.url.query), body, self._base(request))
                with self.lock:
                    response = handler(ctx)
                    self.after_write()
            except ApiError as exc:
                response = ProblemResponse(exc.body, status_code=exc.status)
            except OAuthError as exc:
                response = ProblemResponse(exc.body, status_code=exc.status)
            if self.faults.take_commit_then_drop(key):
                return DroppedResponse(
                    bytes(response.body),
                    response.status_code,
                    response.media_type or "application/json",
                    hold_s=self.faults.drop_hold_s,
                )
            return response

        return endpoint

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.tokens.valid(token.strip())

    @staticmethod
    async def _body(request: Request) -> Any:
        if request.method in ("GET", "HEAD"):
            return None
        raw = await request.body()
        if not raw.strip():
            return None
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise bad_request("Request body is not valid JSON") from exc

    def _base(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}/{self.name}"

    # ------------------------------------------------------------------ control routes
    def dump(self, kind: str) -> list[JsonDict]:
        a = self.account
        base = f"http://sandbox/{self.name}"
        with self.lock:
            if kind == "contacts":
                return [render_contact(a, c, base, "enum_code", frozenset({"leads"})) for c in a.contacts.values()]
            if kind == "leads":
                full = frozenset({"contacts", "catalog_elements"})
                return [render_lead(a, lead, base, "enum_code", full) for lead in a.leads.values()]
            if kind == "catalog_elements":
                return [render_element(a, e, base, "enum_code") for e in a.elements.values()]
            if kind == "notes":
                return [render_note(a, n, base) for n in a.notes.values()]
            return all_links(a)

    def control_dump(self, kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return JsonResponse(self.dump(kind))

        return endpoint

    async def control_tokens(self, request: Request) -> Response:
        return JsonResponse(self.tokens.describe())

    async def control_expire(self, request: Request) -> Response:
        return JsonResponse({"expired": self.tokens.expire_access()})

    async def control_unblock(self, request: Request) -> Response:
        was = self.guard.blocked
        self.guard.unblock()
        return JsonResponse({"unblocked": was})
