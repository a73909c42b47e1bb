"""What the amoCRM emulator tests share: a sandbox per module, its clients, and request helpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from integration_sync.sandbox import amocrm_schema as amo
from integration_sync.sandbox.server import SandboxConfig, SandboxServer

FAST: dict[str, Any] = {
    "seed": 5,
    "abcp_users": 5,
    "kaspi_orders": 5,
    "clock_epoch": None,
    # every amocrm knob a test changes, at its default (a reset keeps unnamed fields)
    "amocrm_rate": 1000.0,
    "amocrm_contacts": 20,
    "amocrm_block_mode": False,
    "amocrm_block_after_429s": 10,
    "amocrm_token_lifetime_s": 86400,
    "amocrm_refresh_revokes_access": True,
    "amocrm_limit_over_max": "error",
    "amocrm_enum_read_key": "enum_code",
    "amocrm_lead_query_includes_contacts": False,
    "amocrm_filter_query": False,
}
AUTH = {"Authorization": f"Bearer {amo.AMO_INITIAL_ACCESS_TOKEN}"}
# the revoked-refresh body quoted in the official PHP SDK's issues (api-samples/amocrm)
REVOKED = {
    "hint": "Token has been revoked",
    "title": "Некорректный запрос",
    "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
    "status": 401,
    "detail": "В запросе отсутствует ряд параметров или параметры невалидны",
}
UNAUTHORIZED = {
    "title": "Unauthorized",
    "type": "https://httpstatus.es/401",
    "status": 401,
    "detail": "Неверный логин или пароль",
}


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(**FAST)) as srv:
        yield srv


@pytest.fixture
def control(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        assert http.post("/_sandbox/reset", json=FAST).status_code == 200
        yield http


@pytest.fixture
def api(server: SandboxServer, control: httpx.Client) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.base_url}/amocrm", headers=AUTH, timeout=10) as http:
        yield http


def reset(control: httpx.Client, **changes: Any) -> None:
    assert control.post("/_sandbox/reset", json={**FAST, **changes}).status_code == 200


def dump(control: httpx.Client, kind: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = control.get(f"/_sandbox/amocrm/{kind}").json()
    return rows


def oauth(api: httpx.Client, **changes: Any) -> httpx.Response:
    body = {
        "client_id": amo.AMO_CLIENT_ID,
        "client_secret": amo.AMO_CLIENT_SECRET,
        "redirect_uri": amo.AMO_REDIRECT_URI,
        "grant_type": "refresh_token",
        "refresh_token": amo.AMO_INITIAL_REFRESH_TOKEN,
        **changes,
    }
    return api.post("/oauth2/access_token", json=body, headers={"Authorization": ""})


def phone(value: str, code: str = "MOB") -> dict[str, Any]:
    return {"field_code": "PHONE", "values": [{"value": value, "enum_code": code}]}


def add_contacts(api: httpx.Client, items: list[dict[str, Any]]) -> list[int]:
    response = api.post("/api/v4/contacts", json=items)
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["_embedded"]["contacts"]]


def add_leads(api: httpx.Client, items: list[dict[str, Any]]) -> list[int]:
    response = api.post("/api/v4/leads", json=items)
    assert response.status_code == 200, response.text
    return [lead["id"] for lead in response.json()["_embedded"]["leads"]]


def errors_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["title"], body["status"], body["detail"]) == ("Bad Request", 400, "Request validation failed")
    items: list[dict[str, Any]] = body["validation-errors"]
    return items
