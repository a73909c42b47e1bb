"""amoCRM OAuth 2.0 token store, the per-integration request limit and the account block.

- Tokens: one integration (`app`, `AMO_APP` by default). Access tokens expire after ``lifetime_s``; refresh tokens
  are single use (a second use -> 401 "Token has been revoked"); refreshing revokes the access
  token issued with the used refresh token unless ``refresh_revokes_access`` is off; the long-lived
  token never expires. Error bodies are amoCRM's localized league/oauth2-server problems.
- Limit: a sliding-window log, at most ``rate`` accepted requests in any 1-second window (refused
  requests are not logged), so a client that spaces requests 1/rate apart never sees a 429.
- Block: with block mode on, ``block_after`` 429s within ``block_window_s`` block the account:
  every request answers 403 (nginx HTML) until unblocked through the control route.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from integration_sync.sandbox.amocrm_schema import AMO_APP, OAuthApp
from integration_sync.sandbox.core import Clock, JsonDict

OAUTH_TYPE: Final = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"
BAD_REQUEST_TITLE: Final = "Некорректный запрос"
BAD_REQUEST_DETAIL: Final = "В запросе отсутствует ряд параметров или параметры невалидны"


def oauth_problem(status: int, title: str, detail: str, hint: str | None = None) -> JsonDict:
    body: JsonDict = {}
    if hint is not None:
        body["hint"] = hint
    body.update({"title": title, "type": OAUTH_TYPE, "status": status, "detail": detail})
    return body


INVALID_CLIENT: Final = oauth_problem(401, "Некорректный клиент", "Авторизация клиента не прошла")
UNSUPPORTED_GRANT: Final = oauth_problem(
    400,
    "Неподдерживаемый тип авторизации",
    "Тип авторизации не поддерживается сервером авторизации",
    "Check that all required parameters have been provided",
)


class OAuthError(Exception):
    def __init__(self, status: int, body: JsonDict) -> None:
        super().__init__(body.get("hint") or body.get("detail"))
        self.status = status
        self.body = body


def _invalid_request(param: str) -> OAuthError:
    return OAuthError(400, oauth_problem(400, BAD_REQUEST_TITLE, BAD_REQUEST_DETAIL, f"Check the `{param}` parameter"))


def _bad_token(status: int, hint: str) -> OAuthError:
    return OAuthError(status, oauth_problem(status, BAD_REQUEST_TITLE, BAD_REQUEST_DETAIL, hint))


@dataclass
class AccessToken:
    token: str
    expires_at: float  # math.inf for the long-lived token
    revoked: bool = False


@dataclass
class RefreshToken:
    token: str
    issued_at: float
    access: str  # the access token issued with it
    used_at: float | None = None


@dataclass
class TokenStore:
    clock: Clock
    lifetime_s: int = 86400
    refresh_lifetime_s: int = 90 * 86400
    refresh_revokes_access: bool = True
    access: dict[str, AccessToken] = field(default_factory=dict)
    refresh: dict[str, RefreshToken] = field(default_factory=dict)
    code_used: bool = False
    serial: int = 0
    log: list[JsonDict] = field(default_factory=list)
    app: OAuthApp = AMO_APP

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        now = self.clock.now()
        self.access[self.app.initial_access] = AccessToken(self.app.initial_access, now + self.lifetime_s)
        self.refresh[self.app.initial_refresh] = RefreshToken(self.app.initial_refresh, now, self.app.initial_access)
        self.access[self.app.long_lived] = AccessToken(self.app.long_lived, math.inf)

    def valid(self, token: str) -> bool:
        with self._lock:
            entry = self.access.get(token)
            return entry is not None and not entry.revoked and self.clock.now() < entry.expires_at

    def expire_access(self) -> list[str]:
        """Control route: every OAuth access token stops working (the long-lived one stays)."""
        with self._lock:
            expired = []
            for entry in self.access.values():
                if math.isfinite(entry.expires_at) and not entry.revoked and entry.expires_at > self.clock.now():
                    entry.expires_at = self.clock.now() - 1
                    expired.append(entry.token)
            return expired

    def _issue(self) -> JsonDict:
        self.serial += 1
        now = self.clock.now()
        access = f"sandbox-amo-access-{self.serial}"
        refresh = f"sandbox-amo-refresh-{self.serial}"
        self.access[access] = AccessToken(access, now + self.lifetime_s)
        self.refresh[refresh] = RefreshToken(refresh, now, access)
        return {
            "token_type": "Bearer",
            "expires_in": self.lifetime_s,
            "server_time": int(now),
            "access_token": access,
            "refresh_token": refresh,
        }

    def exchange(self, params: Mapping[str, Any]) -> JsonDict:
        """``POST /oauth2/access_token``: the token pair, or raise OAuthError."""
        with self._lock:
            try:
                result = self._exchange(params)
            except OAuthError as exc:
                self.log.append(
                    {
                        "grant_type": params.get("grant_type"),
                        "ok": False,
                        "status": exc.status,
                        "hint": exc.body.get("hint"),
                        "refresh_token": params.get("refresh_token"),
                        "at": self.clock.now(),
                    }
                )
                raise
            self.log.append(
                {
                    "grant_type": params.get("grant_type"),
                    "ok": True,
                    "status": 200,
                    "hint": None,
                    "refresh_token": params.get("refresh_token"),
                    "issued": result["refresh_token"],
                    "at": self.clock.now(),
                }
            )
            return result

    def _exchange(self, params: Mapping[str, Any]) -> JsonDict:
        for name in ("client_id", "client_secret", "grant_type", "redirect_uri"):
            if not isinstance(params.get(name), str) or not params[name]:
                raise _invalid_request(name)
        grant = params["grant_type"]
        if grant not in ("authorization_code", "refresh_token"):
            raise OAuthError(400, dict(UNSUPPORTED_GRANT))
        if (params["client_id"], params["client_secret"], params["redirect_uri"]) != (
            self.app.client_id,
            self.app.client_secret,
            self.app.redirect_uri,
        ):
            raise OAuthError(401, dict(INVALID_CLIENT))
        if grant == "authorization_code":
            code = params.get("code")
            if not isinstance(code, str) or not code:
                raise _invalid_request("code")
            if code != self.app.auth_code:
                raise _bad_token(400, "Cannot decrypt the authorization code")
            if self.code_used:
                raise _bad_token(400, "Authorization code has been revoked")
            self.code_used = True
            return self._issue()
        token = params.get("refresh_token")
        if not isinstance(token, str) or not token:
            raise _invalid_request("refresh_token")
        entry = self.refresh.get(token)
        if entry is None:
            raise _bad_token(401, "Cannot decrypt the refresh token")
        if entry.used_at is not None:
            raise _bad_token(401, "Token has been revoked")
        if self.clock.now() > entry.issued_at + self.refresh_lifetime_s:
            raise _bad_token(401, "Token has expired")
        entry.used_at = self.clock.now()
        if self.refresh_revokes_access and entry.access in self.access:
            self.access[entry.access].revoked = True
        return self._issue()

    def describe(self) -> JsonDict:
        with self._lock:
            now = self.clock.now()
            return {
                "refresh_issued": list(self.refresh),
                "refresh_used": [t.token for t in self.refresh.values() if t.used_at is not None],
                "refresh_active": [t.token for t in self.refresh.values() if t.used_at is None],
                "access_valid": [t.token for t in self.access.values() if not t.revoked and now < t.expires_at],
                "exchanges": [dict(entry) for entry in self.log],
                "refresh_reuse_attempts": sum(1 for e in self.log if e.get("hint") == "Token has been revoked"),
            }


class SlidingWindowLimiter:
    """At most ``rate`` accepted requests in any window of ``window_s`` seconds."""

    def __init__(self, rate: float, clock: Clock, window_s: float = 1.0) -> None:
        if rate * window_s < 1:  # slower than one request per window: one request per 1/rate seconds
            window_s = 1.0 / rate
        self.capacity = max(1, math.floor(rate * window_s))
        self.window_s = window_s
        self.clock = clock
        self._lock = threading.Lock()
        self._accepted: deque[float] = deque()

    def try_acquire(self) -> bool:
        with self._lock:
            now = self.clock.monotonic()
            while self._accepted and self._accepted[0] <= now - self.window_s:
                self._accepted.popleft()
            if len(self._accepted) >= self.capacity:
                return False
            self._accepted.append(now)
            return True


class BlockGuard:
    """Counts 429s; past the threshold (block mode on) the account answers 403 to everything."""

    def __init__(self, clock: Clock, after: int, window_s: float) -> None:
        self.clock = clock
        self.after = after
        self.window_s = window_s
        self.blocked = False
        self._lock = threading.Lock()
        self._hits: deque[float] = deque()

    def record_429(self, enabled: bool) -> None:
        with self._lock:
            now = self.clock.monotonic()
            self._hits.append(now)
            while self._hits and self._hits[0] <= now - self.window_s:
                self._hits.popleft()
            if enabled and len(self._hits) >= self.after:
                self.blocked = True

    def unblock(self) -> None:
        with self._lock:
            self.blocked = False
            self._hits.clear()
