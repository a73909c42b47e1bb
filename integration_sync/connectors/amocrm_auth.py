"""amoCRM credentials: OAuth 2.0 token pairs kept in a shared SQLite store, refreshed single-flight.

amoCRM's refresh token is single-use: two workers refreshing at once, or a new pair that was not
saved, kill the integration. So:

- ``TokenStore(path)`` is a small SQLite file (WAL) holding one pair per account (access, refresh,
  expires_at, updated_at). Tokens given in the configuration (``.env``) are migrated into it once,
  when it has no row for the account; from then on the store wins. ``adopt(old_path, account)``
  moves an account's pair out of an older store file once (an upgrade keeps its pair).
- A refresh takes an exclusive ``filelock`` lock next to the store, re-reads the pair (another
  process may have refreshed already: then that pair is used and nothing is sent), calls
  ``POST {base}/oauth2/access_token`` and saves the new pair in one transaction BEFORE releasing
  the lock. Pairs are refreshed ahead of expiry (``refresh_margin_s``) and after a 401 (once).
- A long-lived token (``AMO_LONG_LIVED_TOKEN``) needs none of this: it is sent as is.
- A dead refresh token (401 "Token has been revoked") raises an ``AuthError`` saying how to
  re-authorize: ``AmoAuth.exchange_code(code)`` stores the pair of a fresh authorization code.

Tokens, the client secret and codes are never logged nor put in exceptions (redacted).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from filelock import FileLock, Timeout

from integration_sync.connectors.errors import ApiError, AuthError, ConfigError, TransientError
from integration_sync.connectors.http import (
    ApiClient,
    ErrorInfo,
    HttpPolicy,
    ResponseKind,
    body_snippet,
    default_classify,
    response_json,
)
from integration_sync.connectors.ratelimit import BlockFlag, RateLimiter

logger = logging.getLogger(__name__)

SERVICE = "amocrm"
TOKEN_PATH = "oauth2/access_token"  # noqa: S105 (a path, not a password)
DEFAULT_REFRESH_MARGIN_S = 600.0
REAUTHORIZE_HINT = (
    "re-authorize the integration: in amoCRM open Settings → Integrations → this integration, get a "
    "new authorization code (or complete the OAuth redirect) and store its pair with "
    "AmoAuth.exchange_code(code); or configure AMO_LONG_LIVED_TOKEN instead"
)


# -- amoCRM's wire-level error handling (shared with the API client) ------------------------------


def is_html(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "").lower()
    if "html" in content_type:
        return True
    return response.content[:200].lstrip().startswith(b"<")


def classify_amocrm(response: httpx.Response) -> ResponseKind:
    """429 (an HTML page without Retry-After) throttles; 403 with an HTML page is the account
    block ("stop everything"); a JSON 403 is an ordinary permission error."""
    if response.status_code == 429:
        return ResponseKind.THROTTLED
    if response.status_code == 403 and is_html(response):
        return ResponseKind.BLOCKED
    return default_classify(response)


def _problem_text(problem: Mapping[str, Any]) -> str:
    path = str(problem.get("path") or "").strip()
    detail = str(problem.get("detail") or problem.get("title") or "").strip()
    code = str(problem.get("code") or "").strip()
    text = f"{path}: {detail}" if path else detail
    return f"{text} ({code})" if code else text or "invalid"


def parse_amocrm_error(response: httpx.Response) -> ErrorInfo:
    """problem+json ``{title, status, detail, hint}``; a 400 with ``validation-errors`` becomes
    per-request-id item errors."""
    body = response_json(response)
    if not isinstance(body, dict):
        return ErrorInfo(None, body_snippet(response), auth=response.status_code == 401)
    item_errors: dict[str, list[str]] = {}
    raw = body.get("validation-errors")
    if isinstance(raw, list):
        for entry in raw:
            if not isinstance(entry, dict):
                continue
            key = str(entry.get("request_id", ""))
            problems = entry.get("errors")
            texts = [_problem_text(p) for p in problems if isinstance(p, dict)] if isinstance(problems, list) else []
            item_errors.setdefault(key, []).extend(texts or ["invalid"])
    hint = body.get("hint")
    message = str(hint or body.get("detail") or body.get("title") or body.get("message") or "").strip()
    if item_errors:
        first_key, first = next(iter(item_errors.items()))
        message = f"{message or 'validation failed'} ({len(item_errors)} item(s); {first_key}: {'; '.join(first)})"
    if not message:
        message = body_snippet(response)
    code = "validation-errors" if item_errors else None
    return ErrorInfo(code, message, auth=response.status_code == 401, item_errors=item_errors or None)


def account_root(base_url: str) -> str:
    """The account's root URL (``https://sub.amocrm.ru``) from it or from its ``/api/v4`` URL."""
    root = (base_url or "").strip().rstrip("/")
    for suffix in ("/api/v4", "/api"):
        if root.endswith(suffix):
            root = root[: -len(suffix)]
    if not root.startswith(("http://", "https://")):
        raise ConfigError(SERVICE, "base URL must start with http:// or https:// (e.g. https://sub.amocrm.ru)")
    return root


# -- the token store ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPair:
    """One OAuth pair. ``expires_at`` is epoch seconds (None: unknown, e.g. migrated from .env)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float | None
    updated_at: float

    def expires_within(self, seconds: float, now: float) -> bool:
        return self.expires_at is not None and self.expires_at - now < seconds


_SCHEMA = """
CREATE TABLE IF NOT EXISTS oauth_tokens (
    account TEXT PRIMARY KEY,
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    expires_at REAL,
    updated_at REAL NOT NULL
)
"""


class TokenStore:
    """OAuth pairs per account in a SQLite file (WAL), plus the lock that serializes refreshes.

    Every operation opens its own short connection, so the store is safe in any process and
    thread. The refresh lock is ``{path}.lock`` (``filelock``), taken with ``lock()``.
    """

    def __init__(self, path: str | Path, *, lock_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.lock_path = Path(f"{self.path}.lock")
        self.lock_timeout_s = lock_timeout_s
        self._file_lock = FileLock(str(self.lock_path))
        self._thread_lock = threading.RLock()
        self._ready = False

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        try:
            if fresh:
                with contextlib.suppress(OSError):
                    os.chmod(self.path, 0o600)  # it holds secrets
            if not self._ready:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(_SCHEMA)
                self._ready = True
            conn.execute("PRAGMA busy_timeout=30000")
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The exclusive cross-process refresh lock (reentrant within a process)."""
        with self._thread_lock:
            timed_out = False
            try:
                self._file_lock.acquire(timeout=self.lock_timeout_s)
            except Timeout:
                timed_out = True
            if timed_out:
                raise TransientError(
                    SERVICE,
                    f"another process held the token lock {self.lock_path} for more than {self.lock_timeout_s:.0f} s",
                )
            try:
                yield
            finally:
                self._file_lock.release()

    def get(self, account: str) -> TokenPair | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT access_token, refresh_token, expires_at, updated_at FROM oauth_tokens WHERE account = ?",
                (account,),
            ).fetchone()
        if row is None:
            return None
        return TokenPair(
            access_token=str(row[0]),
            refresh_token=str(row[1]),
            expires_at=float(row[2]) if row[2] is not None else None,
            updated_at=float(row[3]),
        )

    def save(self, account: str, pair: TokenPair) -> None:
        """Replace the account's pair in one transaction."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO oauth_tokens (account, access_token, refresh_token, expires_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(account) DO UPDATE SET access_token = excluded.access_token,"
                    " refresh_token = excluded.refresh_token, expires_at = excluded.expires_at,"
                    " updated_at = excluded.updated_at",
                    (account, pair.access_token, pair.refresh_token, pair.expires_at, pair.updated_at),
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def insert_if_absent(self, account: str, pair: TokenPair) -> bool:
        """Store the pair only when the account has none (the one-time migration from config)."""
        with self._connect() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO oauth_tokens (account, access_token, refresh_token, expires_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (account, pair.access_token, pair.refresh_token, pair.expires_at, pair.updated_at),
            )
            return cursor.rowcount == 1

    def delete(self, account: str) -> bool:
        with self._connect() as conn:
            return conn.execute("DELETE FROM oauth_tokens WHERE account = ?", (account,)).rowcount == 1

    def accounts(self) -> list[str]:
        with self._connect() as conn:
            return [str(row[0]) for row in conn.execute("SELECT account FROM oauth_tokens ORDER BY account")]

    def adopt(self, legacy_path: str | Path, account: str) -> bool:
        """Move the account's pair from an older store file into this one, once: only when this
        store has no pair for the account and the old file has one. The row leaves the old file
        (under its refresh lock), so a stale, already-used refresh token is never adopted twice."""
        legacy_file = Path(legacy_path)
        if not legacy_file.exists() or self.get(account) is not None:
            return False
        legacy = TokenStore(legacy_file, lock_timeout_s=self.lock_timeout_s)
        with legacy.lock():
            pair = legacy.get(account)
            if pair is None:
                return False
            self.insert_if_absent(account, pair)  # before the delete: a crash between keeps the pair
            legacy.delete(account)
        logger.info("amoCRM: tokens of %s moved from %s to %s", account, legacy_file.name, self.path.name)
        return True


# -- the credentials hook -----------------------------------------------------------------------


def _bearer(headers: Mapping[str, str]) -> str | None:
    for key, value in headers.items():
        if key.lower() == "authorization" and value.lower().startswith("bearer "):
            return value[7:].strip()
    return None


class AmoAuth:
    """The credentials of one amoCRM account, as an ``AuthHook`` for the shared HTTP policy.

    OAuth mode (``client_id``, ``client_secret``, ``redirect_uri``, a ``store``, and optionally the
    initial pair from config), or long-lived-token mode (``long_lived_token``: no refresh).
    ``account`` keys the pair in the store (default: the base URL's host and path plus the client
    id). ``refresh_count`` counts the refreshes this instance actually made.
    """

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str = "",
        client_secret: str = "",
        redirect_uri: str = "",
        initial_access_token: str = "",
        initial_refresh_token: str = "",
        initial_expires_at: float | None = None,
        long_lived_token: str | None = None,
        store: TokenStore | None = None,
        account: str | None = None,
        refresh_margin_s: float = DEFAULT_REFRESH_MARGIN_S,
        policy: HttpPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = account_root(base_url)
        self.long_lived_token = (long_lived_token or "").strip() or None
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self._client_secret = client_secret
        self._initial = (initial_access_token.strip(), initial_refresh_token.strip(), initial_expires_at)
        self.store = store
        parts = urlsplit(self.root)
        self.account = account or f"{parts.netloc}{parts.path}|{client_id}"
        self.refresh_margin_s = refresh_margin_s
        self.policy = policy
        self._clock = clock
        self._lock = threading.RLock()
        self._pair: TokenPair | None = None
        self._limiter: RateLimiter | None = None
        self._block: BlockFlag | None = None
        self._oauth: ApiClient | None = None
        self._secrets: list[str] = [s for s in (client_secret, self.long_lived_token, *self._initial[:2]) if s]
        self._sinks: list[Callable[..., None]] = []
        self._requests_before = 0
        self.refresh_count = 0
        if self.long_lived_token is None:
            missing = [
                name
                for name, value in (("client_id", client_id), ("client_secret", client_secret), ("store", store))
                if not value
            ]
            if missing:
                raise ConfigError(
                    SERVICE, f"OAuth needs {', '.join(missing)} (or configure a long-lived token: AMO_LONG_LIVED_TOKEN)"
                )

    @property
    def mode(self) -> str:
        return "long_lived" if self.long_lived_token else "oauth"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret this hook knows of (for redaction by the API client)."""
        return tuple(self._secrets)

    @property
    def requests_used(self) -> int:
        """Token-endpoint requests sent by this instance."""
        return self._requests_before + (self._oauth.stats.requests if self._oauth is not None else 0)

    def attach(
        self,
        *,
        limiter: RateLimiter | None,
        block: BlockFlag | None,
        secrets_sink: Callable[..., None] | None = None,
    ) -> None:
        """Share an API client's rate budget and block flag (token calls count toward both);
        ``secrets_sink(*secrets)`` is told of every token this hook learns, for redaction."""
        with self._lock:
            self._limiter = limiter
            self._block = block
            if self._oauth is not None:
                self._oauth.limiter = limiter
                self._oauth.block = block
            if secrets_sink is not None:
                self._sinks.append(secrets_sink)
                secrets_sink(*self._secrets)

    # -- AuthHook ------------------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token()}"}

    def on_unauthorized(self, sent_headers: Mapping[str, str]) -> bool:
        """After a 401: pick up a pair another process saved, else refresh (single-flight)."""
        if self.long_lived_token is not None:
            return False
        stale = _bearer(sent_headers) or ""
        self._refresh(stale_access_token=stale)
        return True

    # -- tokens --------------------------------------------------------------------------------

    def access_token(self) -> str:
        """A usable access token (refreshed first when it expires within ``refresh_margin_s``)."""
        if self.long_lived_token is not None:
            return self.long_lived_token
        with self._lock:
            pair = self._pair or self._load()
            if pair.expires_within(self.refresh_margin_s, self._clock()):
                pair = self._refresh(stale_access_token=None)
            return pair.access_token

    def current(self) -> TokenPair | None:
        """The stored pair (read from the store; None in long-lived mode or when there is none)."""
        if self.long_lived_token is not None or self.store is None:
            return None
        return self.store.get(self.account)

    def status(self) -> dict[str, Any]:
        """What an operator may see: mode, account, expiry, last update (never the tokens)."""
        pair = self.current()
        return {
            "mode": self.mode,
            "account": self.account,
            "has_tokens": pair is not None or self.long_lived_token is not None,
            "expires_at": pair.expires_at if pair else None,
            "updated_at": pair.updated_at if pair else None,
        }

    def refresh(self) -> TokenPair:
        """Refresh now (single-flight), whatever the expiry."""
        if self.long_lived_token is not None:
            raise ConfigError(SERVICE, "a long-lived token cannot be refreshed")
        return self._refresh(stale_access_token=None, force=True)

    def exchange_code(self, code: str) -> TokenPair:
        """Trade an authorization code (from the OAuth redirect or the integration's settings)
        for a pair and store it, replacing any stored pair of the account."""
        if self.store is None:
            raise ConfigError(SERVICE, "exchange_code needs a token store")
        if not code.strip():
            raise ConfigError(SERVICE, "empty authorization code")
        self._remember_secrets(code.strip())
        with self._lock, self.store.lock():
            pair = self._token_call({"grant_type": "authorization_code", "code": code.strip()}, refreshing=False)
            self.store.save(self.account, pair)
            self._pair = pair
        logger.info("amoCRM: authorization code exchanged; tokens stored for %s", self.account)
        return pair

    def _load(self) -> TokenPair:
        assert self.store is not None
        pair = self.store.get(self.account)
        if pair is None:
            access, refresh, expires_at = self._initial
            if access and refresh:
                migrated = TokenPair(access, refresh, expires_at, self._clock())
                if self.store.insert_if_absent(self.account, migrated):
                    logger.info("amoCRM: initial tokens from the configuration stored for %s", self.account)
                pair = self.store.get(self.account)
        if pair is None:
            raise AuthError(SERVICE, f"no OAuth tokens stored for {self.account}: {REAUTHORIZE_HINT}")
        self._adopt(pair)
        return pair

    def _adopt(self, pair: TokenPair) -> None:
        self._pair = pair
        self._remember_secrets(pair.access_token, pair.refresh_token)

    def _remember_secrets(self, *secrets: str) -> None:
        fresh = [s for s in secrets if s and s not in self._secrets]
        if fresh:
            self._secrets.extend(fresh)
            if self._oauth is not None:
                self._oauth.add_secrets(*fresh)
            for sink in self._sinks:
                sink(*fresh)

    def _refresh(self, *, stale_access_token: str | None, force: bool = False) -> TokenPair:
        """Single-flight across processes: lock, re-read, refresh only if still needed, save, unlock."""
        assert self.store is not None
        with self._lock, self.store.lock():
            current = self.store.get(self.account)
            if current is None:
                current = self._load()
            now = self._clock()
            if not force:
                if stale_access_token is not None and current.access_token != stale_access_token:
                    self._adopt(current)  # someone else refreshed (or the store was updated): use theirs
                    return current
                if stale_access_token is None and not current.expires_within(self.refresh_margin_s, now):
                    self._adopt(current)
                    return current
            self._remember_secrets(current.refresh_token)
            pair = self._token_call(
                {"grant_type": "refresh_token", "refresh_token": current.refresh_token}, refreshing=True
            )
            self.store.save(self.account, pair)  # saved before the lock is released
            self._adopt(pair)
            self.refresh_count += 1
        logger.info("amoCRM: access token refreshed for %s", self.account)
        return pair

    def _transport(self) -> ApiClient:
        if self._oauth is None:
            self._oauth = ApiClient(
                SERVICE,
                self.root + "/",
                policy=self.policy,
                limiter=self._limiter,
                block=self._block,
                secrets=self._secrets,
                headers={"Accept": "application/json"},
                classify=classify_amocrm,
                parse_error=parse_amocrm_error,
            )
        return self._oauth

    def _token_call(self, grant: Mapping[str, str], *, refreshing: bool) -> TokenPair:
        body = {
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "redirect_uri": self.redirect_uri,
            **grant,
        }
        api = self._transport()
        refused: ApiError | None = None
        response: httpx.Response | None = None
        try:
            # never idempotent: a refresh token works once, so a lost answer is not resent blindly
            response = api.request("POST", TOKEN_PATH, idempotent=False, json=body, endpoint=TOKEN_PATH)
        except AuthError as exc:
            refused = exc
        except ApiError as exc:
            if type(exc) is not ApiError or exc.status != 400:
                raise
            refused = exc
        if refused is not None or response is None:
            what = "refresh token" if refreshing else "authorization code"
            reason = refused.message if refused is not None else "no answer"
            raise AuthError(
                SERVICE,
                f"amoCRM refused the {what} ({reason}): the stored tokens cannot be renewed; {REAUTHORIZE_HINT}",
                status=refused.status if refused is not None else None,
                code=refused.code if refused is not None else None,
                request=refused.request if refused is not None else "",
            )
        data = api.parse_json(response)
        access = data.get("access_token") if isinstance(data, dict) else None
        refresh = data.get("refresh_token") if isinstance(data, dict) else None
        expires_in = data.get("expires_in") if isinstance(data, dict) else None
        if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
            raise ApiError(SERVICE, "token answer without access_token/refresh_token", status=response.status_code)
        self._remember_secrets(access, refresh)
        now = self._clock()
        lifetime = None
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            lifetime = float(expires_in)
        return TokenPair(access, refresh, now + lifetime if lifetime is not None else None, now)

    def close(self) -> None:
        with self._lock:
            if self._oauth is not None:
                self._requests_before += self._oauth.stats.requests
                self._oauth.close()
                self._oauth = None
