"""ABCP admin API client: ``GET cp/users`` with md5 password auth, date filters and paging.

The client hands back every item exactly as ABCP sent it (a user is a dict of strings/nulls; an
item that is not an object is yielded too): it drops nothing, so the flow can store every field
and reject a malformed item with a reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from integration_sync.connectors.errors import ApiError, AuthError, ConfigError
from integration_sync.connectors.http import (
    ApiClient,
    ErrorInfo,
    HttpPolicy,
    ServiceClient,
    body_snippet,
    response_json,
)
from integration_sync.connectors.ratelimit import RateLimiter

SERVICE = "abcp"
MOSCOW = ZoneInfo("Europe/Moscow")
USERS_PATH = "cp/users"

# ABCP documents 1000 as the default ``limit``, so it serves at least that many rows per page
TRUSTED_LIMIT = 1000

DEFAULT_POLICY = HttpPolicy(timeout=20.0, connect_timeout=10.0, max_attempts=4, backoff_base=1.5)

# errorCode values / message fragments that mean bad credentials or no access
# (102 "Неправильное имя или пароль!" was seen in real traffic)
_AUTH_CODES = frozenset({"102"})
_AUTH_WORDS = re.compile(
    r"парол|логин|авториз|доступ|password|login|userpsw|auth|credential|access denied|forbidden",
    re.IGNORECASE,
)


def abcp_date(value: datetime) -> str:
    """An aware datetime as ABCP's Moscow wall-clock ``YYYY-MM-DD HH:MM:SS``."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("ABCP date filters need an aware datetime")
    return value.astimezone(MOSCOW).strftime("%Y-%m-%d %H:%M:%S")


def flatten_message(message: Any) -> str:
    """``errorMessage`` may be a string, a list or a dict: make it one line."""
    if message is None:
        return ""
    if isinstance(message, str):
        return message
    if isinstance(message, list):
        return "; ".join(flatten_message(item) for item in message)
    if isinstance(message, dict):
        return "; ".join(f"{key}: {flatten_message(value)}" for key, value in message.items())
    return json.dumps(message, ensure_ascii=False)


def _is_error_body(body: Any) -> bool:
    return isinstance(body, dict) and ("errorCode" in body or "errorMessage" in body)


def _error_info(body: dict[str, Any]) -> ErrorInfo:
    raw_code = body.get("errorCode")
    code = None if raw_code in (None, "") else str(raw_code)
    message = flatten_message(body.get("errorMessage")) or "error without a message"
    auth = (code in _AUTH_CODES) or bool(_AUTH_WORDS.search(message))
    return ErrorInfo(code, message, auth=auth)


def parse_abcp_error(response: httpx.Response) -> ErrorInfo:
    body = response_json(response)
    if _is_error_body(body):
        return _error_info(body)
    return ErrorInfo(None, body_snippet(response))


class AbcpClient(ServiceClient):
    """Reads users from the ABCP admin API (``{base_url}/cp/users``)."""

    def __init__(
        self,
        base_url: str,
        userlogin: str,
        password: str,
        *,
        page_size: int = 500,
        max_pages: int | None = None,
        policy: HttpPolicy | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        if not base_url or not userlogin or not password:
            raise ConfigError(SERVICE, "base_url, userlogin and password are required")
        if page_size < 1:
            raise ConfigError(SERVICE, "page_size must be positive")
        if max_pages is not None and max_pages < 1:
            raise ConfigError(SERVICE, "max_pages must be positive (or None for no limit)")
        self.userlogin = userlogin
        self.page_size = page_size
        self.max_pages = max_pages
        self.truncated = False  # True when the last fetch stopped at max_pages
        self._password_md5 = hashlib.md5(password.encode("utf-8"), usedforsecurity=False).hexdigest()
        root = base_url.rstrip("/")
        if root.endswith("/" + USERS_PATH):
            root = root[: -len(USERS_PATH)]
        self._api = ApiClient(
            SERVICE,
            root.rstrip("/") + "/",
            policy=policy or DEFAULT_POLICY,
            limiter=limiter,
            secrets=(password, self._password_md5),
            headers={"Accept": "application/json"},
            parse_error=parse_abcp_error,
        )

    def fetch_users(
        self,
        *,
        registered_from: datetime | None = None,
        registered_to: datetime | None = None,
        updated_from: datetime | None = None,
        updated_to: datetime | None = None,
    ) -> Iterator[Any]:
        """Yield users page by page (``limit``/``skip``, ``skip`` advancing by the rows received).

        ABCP silently clamps ``limit`` to a cap it does not publish, so a page shorter than asked
        for may not be the last: paging ends at an empty page (one extra cheap request), or a short
        page when ``page_size`` is within what the server is known to serve (``TRUSTED_LIMIT``),
        or at ``max_pages`` (then ``self.truncated`` is True).

        Items are yielded unchanged, in server order; non-object items are yielded too.
        """
        filters: dict[str, str] = {}
        for name, value in (
            ("dateRegistredStart", registered_from),
            ("dateRegistredEnd", registered_to),
            ("dateUpdatedStart", updated_from),
            ("dateUpdatedEnd", updated_to),
        ):
            if value is not None:
                filters[name] = abcp_date(value)
        self.truncated = False
        skip = 0
        pages = 0
        previous_page: list[Any] | None = None
        while True:
            if self.max_pages is not None and pages >= self.max_pages:
                self.truncated = True
                return
            items = self._fetch_page(filters, skip)
            pages += 1
            if items and items == previous_page:
                raise ApiError(SERVICE, f"the server returned the same page again at skip={skip}")
            yield from items
            if not items or (len(items) < self.page_size and self.page_size <= TRUSTED_LIMIT):
                return
            skip += len(items)
            previous_page = items

    def _fetch_page(self, filters: dict[str, str], skip: int) -> list[Any]:
        params = {
            "userlogin": self.userlogin,
            "userpsw": self._password_md5,
            **filters,
            "limit": self.page_size,
            "skip": skip,
        }
        response = self._api.request("GET", USERS_PATH, idempotent=True, params=params, endpoint=USERS_PATH)
        body = self._api.parse_json(response)
        where = f"GET {self._api.safe_url(response.request.url)}"
        if _is_error_body(body):
            info = _error_info(body)
            message = self._api.redact(info.message)
            code = self._api.redact(info.code) if info.code else None
            if info.auth:
                raise AuthError(SERVICE, message, status=response.status_code, code=code, request=where)
            raise ApiError(SERVICE, message, status=response.status_code, code=code, request=where)
        return self._items(body, where)

    def _items(self, body: Any, where: str) -> list[Any]:
        if isinstance(body, list):
            return body
        if isinstance(body, dict):
            if isinstance(body.get("items"), list):  # format=p: {count, items}
                return list(body["items"])
            keys = list(body)
            if all(isinstance(key, str) and key.isdigit() for key in keys):
                return [body[key] for key in sorted(keys, key=int)]
        shape = type(body).__name__
        raise ApiError(SERVICE, f"unexpected response shape ({shape})", request=where)

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> AbcpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
