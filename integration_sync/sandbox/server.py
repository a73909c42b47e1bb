"""The sandbox HTTP server: every emulator on one Starlette app, plus the ``/_sandbox`` controls.

``create_app(config)`` builds the app; ``SandboxServer`` runs it under uvicorn in a background
thread on loopback (tests); ``serve`` runs it in the foreground (the CLI). Control routes are
never counted, rate limited or faulted:

- ``GET /_sandbox/stats``; ``GET /_sandbox/config``
- ``POST /_sandbox/faults`` ``{"bitrix24": {...} | null, "abcp": {...}}``
- ``POST /_sandbox/reset`` (any `SandboxConfig` field; unspecified ones keep their value)
- ``POST /_sandbox/abcp/users/{userId}``, ``POST /_sandbox/abcp/raw_users``
- ``GET /_sandbox/bitrix24/contacts``, ``GET /_sandbox/bitrix24/deals``, ``POST .../deals/{id}/stage`` (a
  manager's move); the same under ``/_sandbox/bitrix24-shop/`` (the shop's own portal)
- ``GET|POST /_sandbox/kaspi/orders``, ``POST /_sandbox/kaspi/orders/raw``,
  ``GET /_sandbox/kaspi/orders/{code}``, ``POST /_sandbox/kaspi/orders/{code}/status``
- ``GET /_sandbox/amocrm/{contacts|leads|catalog_elements|notes|links}``, ``GET /_sandbox/amocrm/tokens``,
  ``POST /_sandbox/amocrm/tokens/expire``, ``POST /_sandbox/amocrm/unblock``; the same under
  ``/_sandbox/amocrm-seller/`` plus ``POST .../leads/status``, ``POST .../leads/{id}/status``,
  ``GET .../webhook_deliveries``
- ``GET|POST /_sandbox/sheets/spreadsheets``, ``GET /_sandbox/sheets/spreadsheets/{id}/cells``,
  ``POST /_sandbox/sheets/spreadsheets/{id}/edit`` (an operator's edit)
- ``POST|DELETE /_sandbox/bitrix-shop/subscribe``, ``GET .../deliveries``, ``POST .../orders``,
  ``GET .../orders/{id}``, ``POST .../orders/{id}/status``, ``POST .../ping`` (the Bitrix CMS shop)
- ``GET /_sandbox/telegram/messages``; ``GET /_sandbox/smtp/`` (the SMTP sink's port), ``GET /_sandbox/smtp/messages``
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Literal, Self

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from integration_sync.sandbox.abcp import AbcpService
from integration_sync.sandbox.amocrm import AmoCrmService
from integration_sync.sandbox.amocrm_seller import SellerAmoService
from integration_sync.sandbox.bitrix24 import Bitrix24Service
from integration_sync.sandbox.bitrix24_shop import ShopBitrix24Service
from integration_sync.sandbox.bitrix_shop import BitrixShopService
from integration_sync.sandbox.core import Clock, JsonDict, JsonResponse, Service, read_json
from integration_sync.sandbox.kaspi import KaspiService
from integration_sync.sandbox.sheets import SheetsService
from integration_sync.sandbox.smtp_sink import MailService
from integration_sync.sandbox.telegram import TelegramService
from integration_sync.serving import BackgroundServer


class SandboxConfig(BaseModel):
    """Seed, volumes and limits of one sandbox."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 1
    abcp_users: int = Field(200, ge=0)
    days: int = Field(30, ge=0)
    bitrix24_rate: float = Field(2.0, gt=0)
    bitrix24_burst: int = Field(50, gt=0)
    bitrix24_rate_multiplier: float = Field(1.0, gt=0)
    bitrix24_operating_budget_s: float = Field(480.0, ge=0)
    bitrix24_operating_cost_s: float = Field(0.0, ge=0)
    bitrix24_contacts: int = Field(3, ge=0)
    bitrix24_contact_userfields: list[str] = Field(default_factory=list)
    bitrix24_shop_rate: float | None = Field(None, gt=0)  # the shop's own portal (bitrix24_shop); None: as above
    bitrix24_shop_burst: int | None = Field(None, gt=0)
    bitrix24_shop_contacts: int = Field(3, ge=0)
    abcp_object_response: bool = False
    abcp_limit_cap: int = Field(1000, gt=0)
    abcp_auth_error_status: int = Field(403, ge=400, le=599)
    kaspi_orders: int = Field(300, ge=0)
    kaspi_days: int | None = Field(None, ge=0)  # None: the config's `days`
    kaspi_max_window_days: int = Field(14, gt=0)
    kaspi_window_mode: Literal["width", "lookback"] = "width"
    kaspi_page_size_max: int = Field(100, gt=0)
    kaspi_page_size_over: Literal["reject", "clamp"] = "reject"
    kaspi_require_paging: bool = True
    kaspi_rate: float = Field(10.0, gt=0)
    kaspi_burst: int = Field(20, gt=0)
    kaspi_auth_error_status: int = Field(401, ge=400, le=599)
    kaspi_strict_media_types: bool = True
    kaspi_no_user_agent_delay_s: float = Field(30.0, ge=0)
    kaspi_code_lookup_without_date: bool = False
    kaspi_repeat_customers: float = Field(0.3, ge=0, le=1)
    kaspi_offer_missing_share: float = Field(0.1, ge=0, le=1)
    amocrm_rate: float = Field(7.0, gt=0)
    amocrm_block_mode: bool = False
    amocrm_block_after_429s: int = Field(10, gt=0)
    amocrm_block_window_s: float = Field(60.0, gt=0)
    amocrm_token_lifetime_s: int = Field(86400, gt=0)
    amocrm_contacts: int = Field(20, ge=0)
    amocrm_refresh_revokes_access: bool = True
    amocrm_limit_over_max: Literal["error", "clamp"] = "error"
    amocrm_enum_read_key: Literal["enum_code", "enum"] = "enum_code"
    amocrm_lead_query_includes_contacts: bool = False
    amocrm_filter_query: bool = False
    amocrm_batch_max: int = Field(250, gt=0)
    amocrm_seller_leads: int = Field(60, ge=0)  # the Sheets seller's own account (amocrm_seller)
    amocrm_seller_hook_time_scale: float = Field(1 / 300, gt=0)  # vendor retry delays x this (5 min -> 1 s)
    shop_orders: int = Field(400, ge=0)  # the Bitrix CMS flower shop (bitrix_shop)
    shop_days: int | None = Field(None, ge=0)  # None: the config's `days`
    shop_hook_time_scale: float = Field(1 / 300, gt=0)  # the shop agent's retry delays x this (1 min -> 0.2 s)
    shop_legacy_token: bool = False  # the seed's webhook format: token in the body, no X-Signature
    clock_epoch: float | None = None


class Sandbox:
    """The services of one sandbox and the operations the control routes expose."""

    def __init__(self, config: SandboxConfig) -> None:
        self._lock = threading.RLock()
        self.config = config
        self.clock = Clock(config.clock_epoch)
        self.abcp = AbcpService(self.clock)
        self.bitrix24 = Bitrix24Service(self.clock)
        self.kaspi = KaspiService(self.clock)
        self.services: dict[str, Service] = {s.name: s for s in (self.abcp, self.bitrix24)}
        self.services[self.kaspi.name] = self.kaspi
        self.amocrm = AmoCrmService(self.clock)
        self.services[self.amocrm.name] = self.amocrm
        self.amocrm_seller = SellerAmoService(self.clock)
        self.services[self.amocrm_seller.name] = self.amocrm_seller
        self.bitrix24_shop = ShopBitrix24Service(self.clock)
        self.services[self.bitrix24_shop.name] = self.bitrix24_shop
        self.sheets = SheetsService(self.clock)
        self.services[self.sheets.name] = self.sheets
        self.telegram, self.mail = TelegramService(self.clock), MailService(self.clock)
        self.services.update({self.telegram.name: self.telegram, self.mail.name: self.mail})
        self.shop = BitrixShopService(self.clock)
        self.services[self.shop.name] = self.shop
        self.reset(config)

    def reset(self, config: SandboxConfig | None = None) -> None:
        """Fresh deterministic data for every service, counters zeroed, faults cleared."""
        with self._lock:
            if config is not None:
                self.config = config
            self.clock = Clock(self.config.clock_epoch)  # a fresh clock: advances do not outlive a reset
            for service in self.services.values():
                service.clock = self.clock
            volumes: dict[str, Any] = self.config.model_dump()
            self.abcp.reset(self.config.seed, volumes)
            volumes["bitrix24_seed_people"] = self.abcp.dedupe_people(self.config.bitrix24_contacts)
            self.bitrix24.reset(self.config.seed, volumes)
            self.kaspi.reset(self.config.seed, volumes)
            self.amocrm.reset(self.config.seed, volumes)
            self.amocrm_seller.reset(self.config.seed, volumes)
            self.bitrix24_shop.reset(self.config.seed, volumes)
            self.sheets.reset(self.config.seed, volumes)
            self.telegram.reset(self.config.seed, volumes)
            self.mail.reset(self.config.seed, volumes)
            self.shop.reset(self.config.seed, volumes)

    def reset_from(self, changes: Mapping[str, Any]) -> SandboxConfig:
        config = SandboxConfig.model_validate({**self.config.model_dump(), **changes})
        self.reset(config)
        return config

    def stats(self) -> JsonDict:
        return {name: service.stats() for name, service in self.services.items()}

    def configure_faults(self, spec: Mapping[str, Any]) -> JsonDict:
        unknown = set(spec) - set(self.services)
        if unknown:
            raise ValueError(f"unknown services: {sorted(unknown)}")
        for name, service_spec in spec.items():
            if service_spec is not None and not isinstance(service_spec, Mapping):
                raise ValueError(f"faults for {name} must be an object or null")
            self.services[name].configure_faults(service_spec)
        return {name: service.faults.describe() for name, service in self.services.items()}


def _control_routes(sandbox: Sandbox) -> list[BaseRoute]:
    async def stats(request: Request) -> Response:
        return JsonResponse(sandbox.stats())

    async def config(request: Request) -> Response:
        return JsonResponse(sandbox.config.model_dump())

    async def faults(request: Request) -> Response:
        try:
            body = await read_json(request)
        except ValueError:
            return JsonResponse({"error": "body must be JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JsonResponse({"error": "body must be an object keyed by service"}, status_code=400)
        try:
            return JsonResponse(sandbox.configure_faults(body))
        except ValueError as exc:
            return JsonResponse({"error": str(exc)}, status_code=400)

    async def reset(request: Request) -> Response:
        try:
            body = await read_json(request)
        except ValueError:
            return JsonResponse({"error": "body must be JSON"}, status_code=400)
        if body is not None and not isinstance(body, dict):
            return JsonResponse({"error": "body must be an object"}, status_code=400)
        try:
            config = sandbox.reset_from(body or {})
        except ValidationError as exc:
            return JsonResponse({"error": "invalid config", "details": exc.errors(include_url=False)}, status_code=400)
        return JsonResponse({"ok": True, "config": config.model_dump(), "stats": sandbox.stats()})

    routes: list[BaseRoute] = [
        Route("/_sandbox/stats", stats, methods=["GET"]),
        Route("/_sandbox/config", config, methods=["GET"]),
        Route("/_sandbox/faults", faults, methods=["POST"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
    ]
    for name, service in sandbox.services.items():
        extra = service.control_routes()
        if extra:
            routes.append(Mount(f"/_sandbox/{name}", routes=extra))
    return routes


def create_app(config: SandboxConfig | None = None) -> Starlette:
    """The sandbox app: every service mounted under its prefix, plus the control routes."""
    sandbox = Sandbox(config or SandboxConfig())
    routes = _control_routes(sandbox) + [service.mount() for service in sandbox.services.values()]
    app = Starlette(routes=routes)
    app.state.sandbox = sandbox
    return app


class _DroppedConnectionNoise(logging.Filter):
    """Hide uvicorn's complaint about the responses commit-then-drop cuts short on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


class SandboxServer(BackgroundServer):
    """Runs the sandbox under uvicorn in a background thread on loopback.

    ``with SandboxServer(SandboxConfig(seed=3)) as server: httpx.get(server.base_url + ...)``.
    """

    name = "sandbox"

    def __init__(
        self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self.config = config or SandboxConfig()
        super().__init__(create_app(self.config), host, port, log_level)
        self.sandbox: Sandbox = self.app.state.sandbox

    def start(self, timeout: float = 10.0) -> Self:
        super().start(timeout)
        self.sandbox.mail.sink.start(self.host, 0)  # the SMTP sink, on a port of its own
        return self

    def stop(self) -> None:
        self.sandbox.mail.sink.stop()
        super().stop()

    def configure_logging(self) -> None:
        error_log = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, _DroppedConnectionNoise) for f in error_log.filters):
            error_log.addFilter(_DroppedConnectionNoise())


def serve(config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 8787) -> None:
    """Serve the sandbox in the foreground until interrupted (the CLI's ``sandbox`` command); its SMTP
    sink listens on the next port (8788 by default), or on a free one when that is taken."""
    app = create_app(config)
    try:
        app.state.sandbox.mail.sink.start(host, port + 1)
    except OSError:
        app.state.sandbox.mail.sink.start(host, 0)  # `sandbox_env` asks the sandbox where it is
    # no access log: request lines carry what the real services treat as secrets (ABCP's password hash in
    # the query, the Bitrix24 webhook code in the path), and every connector's request would be one line
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
