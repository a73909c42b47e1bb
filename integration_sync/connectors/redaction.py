"""Secret redaction for messages, URLs and log records.

``redact`` replaces each secret and its derived forms (URL-encoded, md5 hex) with ``***``.
A process-wide registry collects the secrets of every client that was created, and
``install_http_log_redaction`` puts a redacting filter on httpx's and httpcore's own loggers so
their ``HTTP Request: GET <full url>`` lines never show a secret.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

MASK = "***"

# query parameter names whose values are secrets whatever their value is
SENSITIVE_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "userpsw",
        "token",
        "access_token",
        "refresh_token",
        "client_secret",
        "secret",
        "api_key",
        "apikey",
        "key",
        "auth",
        "code",
        "sig",
        "signature",
    }
)

# third-party loggers that print request URLs or connection details
HTTP_LOGGER_NAMES = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


def secret_variants(secret: str) -> set[str]:
    """The forms a secret can take on the wire or in logs."""
    if not secret:
        return set()
    digest = hashlib.md5(secret.encode("utf-8"), usedforsecurity=False).hexdigest()
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        digest,
        digest.upper(),
    }
    return {form for form in forms if form}


def _pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    forms: set[str] = set()
    for secret in secrets:
        forms |= secret_variants(secret)
    if not forms:
        return None
    # longest first, so a secret is never half-replaced by one of its substrings
    ordered = sorted(forms, key=len, reverse=True)
    return re.compile("|".join(re.escape(form) for form in ordered))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (and its URL-encoded and md5 forms) in ``text`` with ``***``."""
    pattern = _pattern(secrets)
    if pattern is None:
        return text
    return pattern.sub(MASK, text)


def safe_url(url: str, secrets: Iterable[str] = ()) -> str:
    """A URL fit for messages: secret path segments, userinfo passwords, secret query values and
    the values of sensitive-looking query keys (``userpsw``, ``token``...) become ``***``."""
    secret_list = [s for s in secrets if s]
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url, secret_list)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{user}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        cleaned = [(key, MASK if key.lower() in SENSITIVE_KEYS else value) for key, value in pairs]
        query = urlencode(cleaned, safe="*[]$")
    rebuilt = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    return redact(rebuilt, secret_list)


class SecretRegistry:
    """A thread-safe set of secrets, with a cached compiled pattern."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, *secrets: str) -> None:
        with self._lock:
            before = len(self._secrets)
            self._secrets.update(s for s in secrets if s)
            if len(self._secrets) != before:
                self._pattern = _pattern(self._secrets)

    def redact(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub(MASK, text)

    def __contains__(self, secret: object) -> bool:
        return secret in self._secrets


GLOBAL_SECRETS = SecretRegistry()


def register_secrets(*secrets: str) -> None:
    """Add secrets to the process-wide registry used by the log filters."""
    GLOBAL_SECRETS.add(*secrets)


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record's message (and exception text) redacted.

    With no ``secrets`` it uses the process-wide registry, so secrets registered later are covered.
    """

    def __init__(self, secrets: Iterable[str] | None = None, name: str = "") -> None:
        super().__init__(name)
        if secrets is None:
            self._registry = GLOBAL_SECRETS
        else:
            self._registry = SecretRegistry()
            self._registry.add(*secrets)

    def add(self, *secrets: str) -> None:
        self._registry.add(*secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the raw template
            message = str(record.msg)
        record.msg = self._registry.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._registry.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._registry.redact(record.stack_info)
        return True


_install_lock = threading.Lock()
_installed_filter = RedactingFilter()


def install_http_log_redaction(extra_loggers: Iterable[str] = ()) -> RedactingFilter:
    """Attach the registry-backed redacting filter to httpx/httpcore loggers (idempotent).

    Filters on a logger apply only to records created on that exact logger, so each httpcore
    child logger gets its own copy of the filter.
    """
    with _install_lock:
        for name in (*HTTP_LOGGER_NAMES, *extra_loggers):
            logger = logging.getLogger(name)
            if _installed_filter not in logger.filters:
                logger.addFilter(_installed_filter)
    return _installed_filter
