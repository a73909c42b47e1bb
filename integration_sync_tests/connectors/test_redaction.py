"""Secret redaction: strings, URLs, log records (including httpx/httpcore's own loggers)."""

from __future__ import annotations

import copy
import hashlib
import logging
from urllib.parse import quote, quote_plus

import pytest

from integration_sync.connectors.errors import AmbiguousWriteError, ApiError, RateLimitedError
from integration_sync.connectors.redaction import (
    HTTP_LOGGER_NAMES,
    RedactingFilter,
    install_http_log_redaction,
    redact,
    register_secrets,
    safe_url,
)

PASSWORD = "pa ss/wörd&1"
MD5 = hashlib.md5(PASSWORD.encode(), usedforsecurity=False).hexdigest()


def test_redact_masks_plain_encoded_and_md5_forms() -> None:
    text = f"plain={PASSWORD} q={quote(PASSWORD, safe='')} plus={quote_plus(PASSWORD)} md5={MD5} MD5={MD5.upper()}"
    out = redact(text, [PASSWORD])
    assert out == "plain=*** q=*** plus=*** md5=*** MD5=***"


def test_redact_prefers_the_longest_form_and_ignores_empty_secrets() -> None:
    assert redact("abcdef abc", ["abc", "abcdef", ""]) == "*** ***"
    assert redact("nothing here", []) == "nothing here"
    assert redact("nothing here", [""]) == "nothing here"


def test_safe_url_masks_secret_segments_userinfo_and_sensitive_query_values() -> None:
    url = "https://user:hunter2@portal.example/rest/1/webhookcode123/crm.contact.add?a=1&token=zzz&x=webhookcode123"
    out = safe_url(url, ["webhookcode123"])
    assert "webhookcode123" not in out
    assert "hunter2" not in out
    assert "zzz" not in out
    assert out.startswith("https://user:***@portal.example/rest/1/***/crm.contact.add?")
    assert "a=1" in out
    assert "token=***" in out


def test_safe_url_masks_userpsw_even_when_not_registered() -> None:
    out = safe_url(f"https://h.example/cp/users?userlogin=api%40h&userpsw={MD5}&limit=5")
    assert MD5 not in out
    assert "userpsw=***" in out
    assert "limit=5" in out


def test_filter_redacts_arguments_and_exception_text(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("integration_sync_tests.redaction.local")
    logger.addFilter(RedactingFilter([PASSWORD]))
    caplog.set_level(logging.DEBUG, logger=logger.name)
    try:
        raise RuntimeError(f"bad password {PASSWORD}")
    except RuntimeError:
        logger.exception("login with %s / %s failed", PASSWORD, MD5)
    assert caplog.records, "nothing was logged"
    assert "RuntimeError: bad password ***" in caplog.text
    assert "login with *** / *** failed" in caplog.text
    assert PASSWORD not in caplog.text
    assert MD5 not in caplog.text


def test_http_library_loggers_are_covered_including_later_secrets(caplog: pytest.LogCaptureFixture) -> None:
    filt = install_http_log_redaction()
    assert install_http_log_redaction() is filt
    for name in HTTP_LOGGER_NAMES:
        assert logging.getLogger(name).filters.count(filt) == 1  # installed once per logger
    later_secret = "registered-after-install-42"
    register_secrets(later_secret)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("httpx").info("HTTP Request: %s %s", "GET", f"https://h/rest/1/{later_secret}/x")
    logging.getLogger("httpcore.http11").debug("send_request_headers.started %s", later_secret)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["HTTP Request: GET https://h/rest/1/***/x", "send_request_headers.started ***"]


def test_errors_keep_their_fields_when_copied() -> None:
    # copy.deepcopy goes through the same __reduce__ protocol as pickle (multiprocess executors)
    error = RateLimitedError("bitrix24", "slow down", status=429, code="X", request="POST u", retry_after=3.0)
    clone = copy.deepcopy(error)
    assert type(clone) is RateLimitedError
    assert (clone.service, clone.status, clone.code, clone.retry_after) == ("bitrix24", 429, "X", 3.0)
    assert str(clone) == str(error)
    ambiguous = copy.deepcopy(AmbiguousWriteError("b", "m", method="POST", url="u"))
    assert ambiguous.method == "POST"
    assert str(ApiError("svc", "msg", status=400, code="E", request="GET u")) == "svc: GET u: [HTTP 400 E] msg"
