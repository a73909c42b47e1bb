"""The one HTTP policy every connector uses: rate limit, retries, ambiguity, errors, redaction.

``ApiClient.request`` sends one logical request through a shared ``httpx.Client`` (keep-alive)
with a tenacity retry loop:

- connect errors / connect and pool timeouts (nothing sent): retried for every request;
- read/write timeouts and errors, dropped connections: retried only when ``idempotent``,
  otherwise ``AmbiguousWriteError`` at once (the write may have been applied);
- the rate limiter is told when each answer is in (``finished``), for limits the service counts per
  window (amoCRM);
- THROTTLED answers (per the connector's ``classify``): retried for every request (a throttled
  request was not applied) with exponential backoff and jitter, honouring ``Retry-After`` and
  penalizing the shared rate limiter; ``RateLimitedError`` once the attempts are used up;
- BLOCKED: ``BlockedError`` at once, and the client's ``BlockFlag`` (if any) is tripped so that
  no process sharing it sends anything until it is cleared or lapses;
- 401/403: ``AuthError`` — except that a 401 with an ``AuthHook`` asks the hook to renew the
  credentials (e.g. refresh an OAuth token) and the request is sent ONCE more;
- other 4xx: ``ApiError`` (``BatchItemsError`` when the connector's parser found per-item errors);
- other 5xx: retried when idempotent, else ``AmbiguousWriteError``.

Every message and log line is redacted; our errors are raised outside ``except`` blocks so no
httpx exception (whose text may hold a secret URL) is chained to them.
"""

from __future__ import annotations

import email.utils
import enum
import json as jsonlib
import logging
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, Self
from urllib.parse import urlsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from integration_sync.connectors.errors import (
    AmbiguousWriteError,
    ApiError,
    AuthError,
    BatchItemsError,
    BlockedError,
    ConfigError,
    IntegrationError,
    RateLimitedError,
    TransientError,
)
from integration_sync.connectors.ratelimit import BlockFlag, RateLimiter
from integration_sync.connectors.redaction import (
    install_http_log_redaction,
    redact,
    register_secrets,
    safe_url,
)

logger = logging.getLogger(__name__)


class ResponseKind(enum.Enum):
    """How the policy treats an HTTP response."""

    OK = "ok"
    THROTTLED = "throttled"
    BLOCKED = "blocked"
    AUTH = "auth"
    CLIENT_ERROR = "client_error"
    SERVER_ERROR = "server_error"


def default_classify(response: httpx.Response) -> ResponseKind:
    """2xx/3xx OK, 429 THROTTLED, 401/403 AUTH, other 4xx CLIENT_ERROR, 5xx SERVER_ERROR."""
    status = response.status_code
    if status == 429:
        return ResponseKind.THROTTLED
    if status in (401, 403):
        return ResponseKind.AUTH
    if 400 <= status < 500:
        return ResponseKind.CLIENT_ERROR
    if status >= 500:
        return ResponseKind.SERVER_ERROR
    return ResponseKind.OK


@dataclass(frozen=True)
class ErrorInfo:
    """An error answer reduced to a code and a message; ``auth`` marks credential errors;
    ``item_errors`` (request id → problems) marks a batch refused because of some of its items."""

    code: str | None
    message: str
    auth: bool = False
    item_errors: Mapping[str, Sequence[str]] | None = None


_TAG_RE = re.compile(r"<(script|style)[^>]*>.*?</\1>|<[^>]+>", re.IGNORECASE | re.DOTALL)
_SPACE_RE = re.compile(r"\s+")


def body_snippet(response: httpx.Response, limit: int = 300) -> str:
    """The start of a response body as one line of text (HTML tags stripped)."""
    try:
        text = response.text
    except Exception:  # undecodable body
        return f"<{len(response.content)} bytes>"
    text = _SPACE_RE.sub(" ", _TAG_RE.sub(" ", text)).strip()
    return text[:limit] + ("…" if len(text) > limit else "")


def response_json(response: httpx.Response) -> Any:
    """The decoded JSON body, or None when the body is not JSON."""
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


def default_parse_error(response: httpx.Response) -> ErrorInfo:
    """Understands the common shapes: ``{error, error_description}``, ``{errorCode, errorMessage}``,
    ``{error: {code, message, status}}`` (Google), problem+json ``{title, detail}``, else text."""
    body = response_json(response)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = error.get("status") or error.get("code")
            return ErrorInfo(str(code) if code is not None else None, str(error.get("message", "")))
        code_value = error if error not in (None, "") else body.get("errorCode", body.get("code"))
        message = (
            body.get("error_description")
            or body.get("errorMessage")
            or body.get("message")
            or body.get("detail")
            or body.get("title")
            or ""
        )
        if not isinstance(message, str):
            message = jsonlib.dumps(message, ensure_ascii=False)
        code = str(code_value) if code_value not in (None, "") else None
        if code or message:
            return ErrorInfo(code, message)
    return ErrorInfo(None, body_snippet(response))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def default_retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


class AuthHook(Protocol):
    """Credentials that can change while a client runs (OAuth access tokens)."""

    def auth_headers(self) -> Mapping[str, str]:
        """Headers for the next attempt (the hook may renew credentials ahead of expiry here)."""
        ...

    def on_unauthorized(self, sent_headers: Mapping[str, str]) -> bool:
        """A request sent with ``sent_headers`` got 401: renew the credentials (or pick up ones
        another process renewed). True: send the request once more; False: give up (AuthError)."""
        ...


@dataclass(frozen=True)
class HttpPolicy:
    """Timeouts and retry budget of one connector."""

    timeout: float = 20.0
    connect_timeout: float = 10.0
    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0  # a longer Retry-After gives up at once (RateLimitedError)
    user_agent: str = "integration_sync/0.1 (httpx)"


class ApiStats:
    """Request counters of one client (thread-safe). ``requests`` counts every attempt that was
    sent (retries included); connect failures, where nothing was sent, are counted apart."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.by_endpoint: Counter[str] = Counter()
        self.throttled = 0
        self.retries = 0
        self.connect_failures = 0
        self.ambiguous = 0
        self.errors = 0
        self.auth_renewals = 0
        self.blocked = 0

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def count_sent(self, endpoint: str) -> None:
        with self._lock:
            self.requests += 1
            self.by_endpoint[endpoint] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "by_endpoint": dict(self.by_endpoint),
                "throttled": self.throttled,
                "retries": self.retries,
                "connect_failures": self.connect_failures,
                "ambiguous": self.ambiguous,
                "errors": self.errors,
                "auth_renewals": self.auth_renewals,
                "blocked": self.blocked,
            }


_RetryKind = Literal["throttled", "transient", "connect"]


class _Retry(Exception):
    """Internal: a retryable failure (message already redacted)."""

    def __init__(
        self,
        kind: _RetryKind,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after


class _Unauthorized(Exception):
    """Internal: a 401 that the client's AuthHook may cure (carries the AuthError to raise if not)."""

    def __init__(self, error: AuthError, sent_headers: Mapping[str, str]) -> None:
        super().__init__(error.message)
        self.error = error
        self.sent_headers = sent_headers


_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
_AFTER_SEND_ERRORS = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.DecodingError,
)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _query_pairs(
    params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None,
) -> httpx.QueryParams | None:
    """Query parameters as string pairs; a list value repeats its key."""
    if params is None:
        return None
    items = params.items() if isinstance(params, Mapping) else params
    pairs: list[tuple[str, str]] = []
    for key, value in items:
        if isinstance(value, list | tuple):
            pairs.extend((key, _query_value(item)) for item in value)
        else:
            pairs.append((key, _query_value(value)))
    return httpx.QueryParams(tuple(pairs))


class ApiClient:
    """One service's HTTP client: a keep-alive ``httpx.Client`` behind the shared policy."""

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        policy: HttpPolicy | None = None,
        limiter: RateLimiter | None = None,
        secrets: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        classify: Callable[[httpx.Response], ResponseKind] | None = None,
        parse_error: Callable[[httpx.Response], ErrorInfo] | None = None,
        retry_after: Callable[[httpx.Response], float | None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        auth: AuthHook | None = None,
        block: BlockFlag | None = None,
    ) -> None:
        self.service = service
        self.policy = policy or HttpPolicy()
        self.limiter = limiter
        self.auth = auth
        self.block = block
        self.secrets: tuple[str, ...] = tuple(s for s in secrets if s)
        register_secrets(*self.secrets)
        install_http_log_redaction(extra_loggers=(logger.name,))
        self._classify = classify or default_classify
        self._parse_error = parse_error or default_parse_error
        self._retry_after = retry_after or default_retry_after
        self._sleep = sleep
        self.stats = ApiStats()
        try:
            self._client = httpx.Client(
                base_url=base_url,
                timeout=httpx.Timeout(self.policy.timeout, connect=self.policy.connect_timeout),
                headers={"User-Agent": self.policy.user_agent, **dict(headers or {})},
                follow_redirects=False,
            )
        except (httpx.InvalidURL, ValueError, TypeError):
            pass
        else:
            self.base_url = str(self._client.base_url)
            return
        raise ConfigError(service, f"invalid base URL {self.safe_url(base_url)}")

    # -- helpers -------------------------------------------------------------------------------

    def add_secrets(self, *secrets: str) -> None:
        """Redact these too from now on (e.g. a freshly issued token)."""
        fresh = tuple(s for s in secrets if s and s not in self.secrets)
        if fresh:
            self.secrets = self.secrets + fresh
            register_secrets(*fresh)

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def safe_url(self, url: str | httpx.URL) -> str:
        return safe_url(str(url), self.secrets)

    def _endpoint_label(self, url: str) -> str:
        path = urlsplit(url).path if "://" in url else url.split("?", 1)[0]
        base_path = self._client.base_url.path
        if path.startswith(base_path):
            path = path[len(base_path) :]
        return self.redact(path.strip("/") or "/")

    def parse_json(self, response: httpx.Response) -> Any:
        """The JSON body of a successful response; ApiError when it is not JSON."""
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            pass
        snippet = self.redact(body_snippet(response, 200))
        raise ApiError(
            self.service,
            f"response is not JSON: {snippet!r}",
            status=response.status_code,
            request=f"{response.request.method} {self.safe_url(response.request.url)}",
        )

    # -- the request loop ----------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        endpoint: str | None = None,
    ) -> httpx.Response:
        """Send one logical request under the policy and return the OK response."""
        method = method.upper()
        label = endpoint or self._endpoint_label(url)
        problem = ""
        try:
            request = self._client.build_request(
                method,
                url,
                params=_query_pairs(params),
                json=json,
                data=data,
                content=content,
                headers=headers,
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, TypeError) as exc:
            problem = self.redact(f"{type(exc).__name__}: {exc}")
        if problem:
            raise ConfigError(self.service, f"cannot build {method} {label}: {problem}")
        where = f"{method} {self.safe_url(request.url)}"

        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.policy.max_attempts)),
            wait=self._wait,
            retry=retry_if_exception_type(_Retry),
            before_sleep=self._before_sleep(where),
            sleep=self._sleep,
            reraise=True,
        )
        final: _Retry | None = None
        unauthorized: _Unauthorized | None = None
        renewed = False
        while final is None:
            try:
                return retrying(self._attempt, request, where, label, idempotent)
            except _Retry as exc:
                final = exc
            except _Unauthorized as exc:
                unauthorized = exc
            if unauthorized is not None:
                # outside the except block: a renewal error must not chain the 401
                if renewed or self.auth is None or not self.auth.on_unauthorized(unauthorized.sent_headers):
                    self.stats.add(errors=1)
                    raise unauthorized.error
                renewed = True
                unauthorized = None
                self.stats.add(auth_renewals=1)
                logger.info("%s %s: 401, credentials renewed; sending once more", self.service, where)
        self.stats.add(errors=1)
        attempts = self.policy.max_attempts
        if final.kind == "throttled":
            raise RateLimitedError(
                self.service,
                f"still throttled after {attempts} attempts: {final.message}",
                status=final.status,
                code=final.code,
                request=where,
                retry_after=final.retry_after,
            )
        raise TransientError(
            self.service,
            f"failed after {attempts} attempts: {final.message}",
            status=final.status,
            code=final.code,
            request=where,
        )

    def _check_block(self, where: str) -> None:
        info = self.block.active() if self.block is not None else None
        if info is None:
            return
        self.stats.add(blocked=1, errors=1)
        where_file = f"; clear it by deleting {self.block.path}" if self.block and self.block.path else ""
        raise BlockedError(
            self.service,
            f"not sent: calls are suspended, {self.redact(info.describe())}{where_file}",
            status=info.status,
            request=where,
        )

    def _attempt(self, request: httpx.Request, where: str, label: str, idempotent: bool) -> httpx.Response:
        self._check_block(where)
        if self.auth is not None:
            request.headers.update(self.auth.auth_headers())
        if self.limiter is not None:
            self.limiter.acquire()
        failure: Literal["connect", "after_send", "other"] | None = None
        detail = ""
        response: httpx.Response | None = None
        try:
            self._check_block(where)  # tripped by another caller while we waited
            response = self._client.send(request)
        except _CONNECT_ERRORS as exc:
            failure, detail = "connect", self._describe(exc)
        except _AFTER_SEND_ERRORS as exc:
            failure, detail = "after_send", self._describe(exc)
        except httpx.HTTPError as exc:
            failure, detail = "other", self._describe(exc)
        finally:
            if self.limiter is not None:
                self.limiter.finished()  # the service's window counts this request from its answer

        if failure == "connect":
            self.stats.add(connect_failures=1)
            raise _Retry("connect", f"connection failed ({detail})")
        self.stats.count_sent(label)
        if failure == "after_send":
            if idempotent:
                raise _Retry("transient", f"connection failed after sending ({detail})")
            self.stats.add(ambiguous=1, errors=1)
            raise AmbiguousWriteError(
                self.service,
                f"{where}: {detail}; the request may have been applied: look the records up before sending it again",
                method=request.method,
                url=self.safe_url(request.url),
            )
        if failure == "other" or response is None:
            self.stats.add(errors=1)
            raise ApiError(self.service, detail, request=where)
        return self._check(response, where, request.method, idempotent)

    def _check(self, response: httpx.Response, where: str, method: str, idempotent: bool) -> httpx.Response:
        kind = self._classify(response)
        if kind is ResponseKind.OK:
            return response
        status = response.status_code
        info = self._parse_error(response)
        code = self.redact(info.code) if info.code else None
        message = self.redact(info.message) or response.reason_phrase
        if kind is ResponseKind.THROTTLED:
            self.stats.add(throttled=1)
            retry_after = self._retry_after(response)
            if retry_after is not None and retry_after > self.policy.max_retry_after:
                self.stats.add(errors=1)
                raise RateLimitedError(
                    self.service,
                    f"throttled, asked to wait {retry_after:.0f} s "
                    f"(more than {self.policy.max_retry_after:.0f} s): {message}",
                    status=status,
                    code=code,
                    request=where,
                    retry_after=retry_after,
                )
            raise _Retry("throttled", message, status=status, code=code, retry_after=retry_after)
        if kind is ResponseKind.SERVER_ERROR:
            if idempotent:
                raise _Retry(
                    "transient",
                    f"HTTP {status}: {message}",
                    status=status,
                    code=code,
                    retry_after=self._retry_after(response),
                )
            self.stats.add(ambiguous=1, errors=1)
            raise AmbiguousWriteError(
                self.service,
                f"{where}: HTTP {status} {message}; the request may have been applied: look the "
                "records up before sending it again",
                method=method,
                url=self.safe_url(response.request.url),
            )
        if kind is ResponseKind.BLOCKED:
            self.stats.add(errors=1, blocked=1)
            if self.block is not None:
                self.block.trip(f"HTTP {status} {message}"[:300], status=status)
            raise BlockedError(self.service, message, status=status, code=code, request=where)
        if kind is ResponseKind.AUTH or info.auth or status in (401, 403):
            error = AuthError(self.service, message, status=status, code=code, request=where)
            if status == 401 and self.auth is not None:
                raise _Unauthorized(error, dict(response.request.headers))
            self.stats.add(errors=1)
            raise error
        self.stats.add(errors=1)
        if info.item_errors:
            item_errors = {
                self.redact(str(key)): [self.redact(str(problem)) for problem in problems]
                for key, problems in info.item_errors.items()
            }
            raise BatchItemsError(
                self.service, message, status=status, code=code, request=where, item_errors=item_errors
            )
        raise ApiError(self.service, message, status=status, code=code, request=where)

    def _describe(self, exc: BaseException) -> str:
        text = str(exc) or exc.__class__.__doc__ or ""
        return self.redact(f"{type(exc).__name__}: {text.strip().splitlines()[0] if text else ''}")

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        attempt = state.attempt_number
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            delay = min(exc.retry_after, self.policy.max_retry_after)
        else:
            ceiling = min(self.policy.backoff_max, self.policy.backoff_base * 2 ** (attempt - 1))
            delay = ceiling * random.uniform(0.5, 1.0)
        if isinstance(exc, _Retry) and exc.kind == "throttled" and self.limiter is not None:
            self.limiter.penalize(delay)
        return delay

    def _before_sleep(self, where: str) -> Callable[[RetryCallState], None]:
        def log_retry(state: RetryCallState) -> None:
            self.stats.add(retries=1)
            exc = state.outcome.exception() if state.outcome is not None else None
            reason = exc.message if isinstance(exc, _Retry) else type(exc).__name__
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            logger.warning(
                "%s %s: attempt %d failed (%s); retrying in %.2f s",
                self.service,
                where,
                state.attempt_number,
                self.redact(reason),
                delay,
            )

        return log_retry

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = [
    "ApiClient",
    "ApiStats",
    "AuthHook",
    "ErrorInfo",
    "HttpPolicy",
    "IntegrationError",
    "ResponseKind",
    "body_snippet",
    "default_classify",
    "default_parse_error",
    "parse_retry_after",
    "response_json",
]


class ServiceClient:
    """What every typed client shares: the request counters of its one `ApiClient`."""

    _api: ApiClient

    @property
    def stats(self) -> ApiStats:
        """Request counters (``requests``, ``by_endpoint``, ``throttled``, ``retries``)."""
        return self._api.stats

    @property
    def requests_used(self) -> int:
        return self._api.stats.requests
