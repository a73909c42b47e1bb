"""Google Sheets through gspread, with the project's rate budget and a bounded retry.

``sheets_client`` gives a real ``gspread.Client``: in production from a service-account file, in the
sandbox one whose ``requests`` session sends to the emulator with its token. Either way every request
goes through `PolicyAdapter`, a transport adapter that takes a token from the read or write
`RateLimiter` (Google counts 60 reads and 60 writes per minute per user, apart) and retries a 429 or a
5xx a bounded number of times (gspread's own ``BackOffHTTPClient`` never stops). A 429 carries no
Retry-After: the wait is exponential with jitter, and the limiter is penalized so no caller piles on.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import gspread
import requests
from requests.adapters import HTTPAdapter

from integration_sync.connectors.errors import ConfigError
from integration_sync.connectors.http import HttpPolicy
from integration_sync.connectors.ratelimit import RateLimiter

logger = logging.getLogger(__name__)

GOOGLE_SHEETS = "https://sheets.googleapis.com"
READS_PER_MINUTE = 60
WRITES_PER_MINUTE = 60
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT"})  # values.update writes the same cells again


def sheets_limiter(
    kind: str,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    state_path: str | None = None,
) -> RateLimiter:
    """Google's per-user budget for ``kind`` ("read" or "write"): 60 in any minute, as the service counts it."""
    per_minute = READS_PER_MINUTE if kind == "read" else WRITES_PER_MINUTE
    return RateLimiter(
        per_minute / 60.0,
        per_minute,
        name=f"sheets-{kind}",
        window=(per_minute, 60.0),
        clock=clock,
        sleep=sleep,
        state_path=state_path,
    )


class PolicyAdapter(HTTPAdapter):
    """Rewrites Google's address to ``base_url`` (the sandbox), adds the bearer token, keeps the rate
    budget and retries throttled or failed requests a bounded number of times."""

    def __init__(
        self,
        *,
        read_limiter: RateLimiter | None,
        write_limiter: RateLimiter | None,
        policy: HttpPolicy,
        base_url: str | None = None,
        token: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self.read_limiter, self.write_limiter = read_limiter, write_limiter
        self.policy = policy
        self.base_url = base_url.rstrip("/") if base_url else None
        self._token = token
        self._sleep = sleep
        self.attempts = 0
        self.retries = 0

    def _backoff(self, attempt: int) -> float:
        delay = min(self.policy.backoff_max, self.policy.backoff_base * (2 ** (attempt - 1)))
        return float(delay * (0.5 + random.random() / 2))

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.base_url and request.url and request.url.startswith(GOOGLE_SHEETS):
            request.url = self.base_url + request.url[len(GOOGLE_SHEETS) :]
        if self._token:
            request.headers["Authorization"] = f"Bearer {self._token}"
        method = (request.method or "GET").upper()
        limiter = self.read_limiter if method == "GET" else self.write_limiter
        attempt = 0
        while True:
            attempt += 1
            self.attempts += 1
            if limiter is not None:
                limiter.acquire()
            try:
                response = super().send(request, **kwargs)
            except requests.ConnectionError:
                if limiter is not None:
                    limiter.finished()
                if method not in _IDEMPOTENT or attempt >= self.policy.max_attempts:
                    raise
                self.retries += 1
                self._sleep(self._backoff(attempt))
                continue
            if limiter is not None:
                limiter.finished()
            status = response.status_code
            retryable = status == 429 or (status >= 500 and method in _IDEMPOTENT)
            if not retryable or attempt >= self.policy.max_attempts:
                return response
            delay = self._backoff(attempt)
            if status == 429 and limiter is not None:
                limiter.penalize(delay)
            logger.warning("sheets: HTTP %s on %s, retry %d in %.1f s", status, method, attempt, delay)
            response.close()
            self.retries += 1
            self._sleep(delay)


def sheets_client(
    service_account_file: str | None,
    *,
    base_url: str | None,
    token: str | None,
    limiter: RateLimiter | None,
    policy: HttpPolicy,
    write_limiter: RateLimiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> gspread.Client:
    """A gspread client: the sandbox's when ``base_url`` is set, else from the service-account file.

    ``limiter`` paces reads (and writes too unless ``write_limiter`` is given: one conservative budget).
    """
    adapter = PolicyAdapter(
        read_limiter=limiter,
        write_limiter=write_limiter if write_limiter is not None else limiter,
        policy=policy,
        base_url=base_url,
        token=token if base_url else None,
        sleep=sleep,
    )
    if base_url:
        if not token:
            raise ConfigError("sheets", "the Sheets sandbox needs its token")
        session = requests.Session()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        client = gspread.Client(auth=None, session=session)  # type: ignore[arg-type]
    else:
        if not service_account_file:
            raise ConfigError("sheets", "GOOGLE_SERVICE_ACCOUNT_FILE is not set")
        client = gspread.service_account(filename=service_account_file)
        client.http_client.session.mount("https://", adapter)
    client.set_timeout((policy.connect_timeout, policy.timeout))
    return client
