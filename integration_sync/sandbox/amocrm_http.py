"""HTTP plumbing of the amoCRM emulator: response types (hal+json, problem+json, nginx HTML pages,
204), the per-request context, the emulator's configuration and query-string helpers."""

from __future__ import annotations

import http
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from integration_sync.sandbox.amocrm_values import bad_request
from integration_sync.sandbox.core import JsonDict, JsonResponse

MAX_LIMIT: Final = 250
COMPLEX_MAX: Final = 50
UNAUTHORIZED: Final = {
    "title": "Unauthorized",
    "type": "https://httpstatus.es/401",
    "status": 401,
    "detail": "Неверный логин или пароль",
}


def reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def nginx_page(status: int) -> bytes:
    """The bare nginx error page amoCRM's front answers 403 (block) and 429 (limit) with."""
    title = f"{status} {reason(status)}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        f"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


class HalResponse(JsonResponse):
    media_type = "application/hal+json"


class ProblemResponse(JsonResponse):
    media_type = "application/problem+json"


def html(status: int) -> Response:
    return Response(nginx_page(status), status_code=status, media_type="text/html")


def no_content() -> Response:
    return Response(status_code=204)


@dataclass
class AmoConfig:
    rate: float = 7.0
    block_mode: bool = False
    block_after: int = 10
    block_window_s: float = 60.0
    token_lifetime_s: int = 86400
    contacts: int = 20
    refresh_revokes_access: bool = True
    over_limit: str = "error"
    enum_read_key: str = "enum_code"
    lead_query_includes_contacts: bool = False
    filter_query: bool = False
    batch_max: int = 250

    @classmethod
    def from_volumes(cls, volumes: Mapping[str, Any]) -> AmoConfig:
        defaults = cls()
        names = {
            "rate": "amocrm_rate",
            "block_mode": "amocrm_block_mode",
            "block_after": "amocrm_block_after_429s",
            "block_window_s": "amocrm_block_window_s",
            "token_lifetime_s": "amocrm_token_lifetime_s",
            "contacts": "amocrm_contacts",
            "refresh_revokes_access": "amocrm_refresh_revokes_access",
            "over_limit": "amocrm_limit_over_max",
            "enum_read_key": "amocrm_enum_read_key",
            "lead_query_includes_contacts": "amocrm_lead_query_includes_contacts",
            "filter_query": "amocrm_filter_query",
            "batch_max": "amocrm_batch_max",
        }
        values = {attr: volumes.get(key, getattr(defaults, attr)) for attr, key in names.items()}
        return cls(**values)


@dataclass
class Ctx:
    request: Request
    params: JsonDict
    body: Any
    base: str

    def int_param(self, name: str) -> int:
        return int(self.request.path_params[name])

    @property
    def with_(self) -> frozenset[str]:
        raw = self.params.get("with")
        return frozenset(p.strip() for p in raw.split(",")) if isinstance(raw, str) else frozenset()


Handler = Callable[[Ctx], Response]


def as_list(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return value
    return [value]


def int_values(value: Any, name: str) -> set[int]:
    out: set[int] = set()
    for item in as_list(value):
        text = str(item).strip()
        if not text.lstrip("-").isdigit():
            raise bad_request(f"Invalid filter value for {name}")
        out.add(int(text))
    return out


def value_range(value: Any, name: str) -> tuple[int | None, int | None]:
    if isinstance(value, dict):
        low = value.get("from")
        high = value.get("to")
        return (
            min(int_values(low, name)) if low not in (None, "") else None,
            max(int_values(high, name)) if high not in (None, "") else None,
        )
    exact = min(int_values(value, name))
    return exact, exact
