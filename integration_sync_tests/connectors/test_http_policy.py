"""The shared HTTP policy, tested through the real httpx code path against scripted peers:
a Starlette app under uvicorn (503s, 429 HTML, Retry-After, slow and truncated answers) and a raw
socket peer that reads the request and drops the connection without answering."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from integration_sync.connectors.errors import (
    AmbiguousWriteError,
    ApiError,
    AuthError,
    BlockedError,
    RateLimitedError,
    TransientError,
)
from integration_sync.connectors.http import (
    ApiClient,
    HttpPolicy,
    ResponseKind,
    default_classify,
    parse_retry_after,
)
from integration_sync.connectors.ratelimit import RateLimiter

CODE = "hookC0deS3cret77"  # a secret path segment (like a Bitrix24 webhook code)
PASSWORD = "p@ss w0rd/&=!"  # a secret query value (like ABCP's password)
SECRET_FORMS = [
    CODE,
    PASSWORD,
    quote(PASSWORD, safe=""),
    quote_plus(PASSWORD),
    hashlib.md5(PASSWORD.encode(), usedforsecurity=False).hexdigest(),
]

FAST = HttpPolicy(timeout=0.5, connect_timeout=0.5, max_attempts=4, backoff_base=0.01, backoff_max=0.05)


# -- the scripted Starlette peer ----------------------------------------------------------------


@dataclass
class PeerState:
    hits: Counter[str] = field(default_factory=Counter)
    bodies: dict[str, list[bytes]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, key: str, body: bytes) -> int:
        with self.lock:
            self.hits[key] += 1
            self.bodies.setdefault(key, []).append(body)
            return self.hits[key]


class TruncatedResponse(Response):
    """Announces 100 bytes, sends 10 and ends: the server closes the connection mid-body."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"ok": tru', "more_body": False})


def make_app(state: PeerState) -> Starlette:
    async def scripted(request: Request) -> Response:
        """Query: fail=N failing hits first; mode=status|slow|truncate; status; kind=json|html|echo;
        retry_after; delay. Later hits answer 200 JSON."""
        key = request.path_params["key"]
        body = await request.body()
        n = state.hit(key, body)
        q = request.query_params
        if n > int(q.get("fail", "0")):
            return JSONResponse({"ok": True, "hits": n})
        mode = q.get("mode", "status")
        if mode == "slow":
            await asyncio.sleep(float(q.get("delay", "1")))
            return JSONResponse({"late": True})
        if mode == "truncate":
            return TruncatedResponse()
        status = int(q.get("status", "503"))
        headers = {"Retry-After": q["retry_after"]} if "retry_after" in q else {}
        kind = q.get("kind", "json")
        if kind == "html":
            page = "<html><head><title>Error</title></head><body><h1>Too many requests</h1></body></html>"
            return HTMLResponse(page, status_code=status, headers=headers)
        if kind == "echo":  # a server that helpfully repeats what it got, secrets included
            text = f"you sent {request.url} with {body.decode()}"
            return JSONResponse({"error": "ECHO", "error_description": text}, status_code=status)
        return JSONResponse(
            {"error": "SCRIPTED", "error_description": f"scripted failure {n}"},
            status_code=status,
            headers=headers,
        )

    return Starlette(routes=[Route("/s/{secret}/{key}", scripted, methods=["GET", "POST"])])


@dataclass
class Peer:
    base: str
    state: PeerState

    def url(self) -> str:
        return f"{self.base}/s/{CODE}/"


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    state = PeerState()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        make_app(state),
        log_level="critical",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "scripted peer did not start"
        time.sleep(0.01)
    yield Peer(f"http://127.0.0.1:{port}", state)
    server.should_exit = True
    thread.join(5)


class DroppingPeer:
    """Reads a whole request (headers and body), then closes the socket without answering."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.port = self.server.getsockname()[1]
        self.bodies: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                if head:
                    self.bodies.append(body)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.server.close()


@pytest.fixture
def dropping_peer() -> Iterator[DroppingPeer]:
    dropping = DroppingPeer()
    yield dropping
    dropping.close()


def make_client(peer: Peer, policy: HttpPolicy = FAST, **kwargs: Any) -> ApiClient:
    return ApiClient("peer", peer.url(), policy=policy, secrets=[CODE, PASSWORD], **kwargs)


def unique(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}"


def assert_clean(text: str) -> None:
    for form in SECRET_FORMS:
        assert form not in text, f"secret form {form!r} leaked into: {text}"


def assert_error_clean(exc: BaseException) -> None:
    assert exc.__cause__ is None
    assert exc.__context__ is None
    assert_clean(str(exc))
    assert_clean(repr(exc))
    assert_clean("".join(traceback.format_exception(exc)))


# -- retries ------------------------------------------------------------------------------------


def test_503_on_a_read_is_retried_until_it_succeeds(peer: Peer) -> None:
    key = unique("r503")
    with make_client(peer) as client:
        response = client.request("GET", f"{key}?fail=2&status=503", idempotent=True, endpoint="things")
        assert response.json() == {"ok": True, "hits": 3}
        stats = client.stats.snapshot()
    assert peer.state.hits[key] == 3
    assert stats["requests"] == 3
    assert stats["retries"] == 2
    assert stats["by_endpoint"] == {"things": 3}


def test_5xx_on_a_write_is_ambiguous_and_not_retried(peer: Peer) -> None:
    key = unique("w500")
    with make_client(peer) as client, pytest.raises(AmbiguousWriteError) as caught:
        client.request("POST", f"{key}?fail=1&status=500", idempotent=False, json={"name": "x"})
    assert peer.state.hits[key] == 1
    assert "may have been applied" in str(caught.value)
    assert caught.value.method == "POST"


def test_5xx_on_a_read_gives_transient_error_after_max_attempts(peer: Peer) -> None:
    key = unique("r502")
    policy = HttpPolicy(timeout=0.5, max_attempts=3, backoff_base=0.01, backoff_max=0.02)
    with make_client(peer, policy) as client, pytest.raises(TransientError) as caught:
        client.request("GET", f"{key}?fail=99&status=502", idempotent=True)
    assert peer.state.hits[key] == 3
    assert caught.value.status == 502
    assert client.stats.requests == 3


def test_html_429_without_retry_after_is_retried_even_for_writes(peer: Peer) -> None:
    key = unique("h429")
    with make_client(peer) as client:
        response = client.request("POST", f"{key}?fail=2&status=429&kind=html", idempotent=False, json={})
        assert response.status_code == 200
        assert client.stats.throttled == 2
    assert peer.state.hits[key] == 3


def test_throttling_that_outlives_the_retries_raises_rate_limited(peer: Peer) -> None:
    key = unique("t429")
    policy = HttpPolicy(timeout=0.5, max_attempts=3, backoff_base=0.01, backoff_max=0.02)
    with make_client(peer, policy) as client, pytest.raises(RateLimitedError) as caught:
        client.request("POST", f"{key}?fail=99&status=429&kind=html", idempotent=False, json={})
    assert peer.state.hits[key] == 3
    assert caught.value.status == 429
    assert "Too many requests" in caught.value.message  # HTML stripped to its text


def test_retry_after_seconds_is_honoured_and_penalizes_the_limiter(peer: Peer) -> None:
    key = unique("ra")
    limiter = RateLimiter(100.0, 10, name="peer")
    blocked_during_sleep: list[float] = []

    def sleep(seconds: float) -> None:
        blocked_during_sleep.append(limiter.blocked_for())
        time.sleep(seconds)

    with make_client(peer, limiter=limiter, sleep=sleep) as client:
        started = time.monotonic()
        response = client.request("GET", f"{key}?fail=1&status=429&retry_after=1", idempotent=True)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert 0.95 <= elapsed < 3
    assert len(blocked_during_sleep) == 1
    assert 0.8 <= blocked_during_sleep[0] <= 1.0  # every holder of the limiter waits too


def test_retry_after_longer_than_allowed_gives_up_at_once(peer: Peer) -> None:
    key = unique("ra-long")
    with make_client(peer) as client, pytest.raises(RateLimitedError) as caught:
        client.request("GET", f"{key}?fail=1&status=429&retry_after=3600", idempotent=True)
    assert caught.value.retry_after == pytest.approx(3600)
    assert peer.state.hits[key] == 1


def test_503_is_throttled_when_the_connector_says_so(peer: Peer) -> None:
    def classify(response: httpx.Response) -> ResponseKind:
        if response.status_code == 503:
            return ResponseKind.THROTTLED
        return default_classify(response)

    key = unique("w503")
    with make_client(peer, classify=classify) as client:
        response = client.request("POST", f"{key}?fail=2&status=503", idempotent=False, json={})
        assert response.status_code == 200
    assert peer.state.hits[key] == 3


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    http_date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(http_date, now=now.timestamp()) == pytest.approx(30)
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now.timestamp()) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# -- errors that are never retried ---------------------------------------------------------------


def test_blocked_answer_stops_at_once(peer: Peer) -> None:
    def classify(response: httpx.Response) -> ResponseKind:
        if response.status_code == 403 and "text/html" in response.headers.get("content-type", ""):
            return ResponseKind.BLOCKED
        return default_classify(response)

    key = unique("blk")
    with make_client(peer, classify=classify) as client, pytest.raises(BlockedError) as caught:
        client.request("GET", f"{key}?fail=9&status=403&kind=html", idempotent=True)
    assert peer.state.hits[key] == 1
    assert caught.value.status == 403


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_not_retried(peer: Peer, status: int) -> None:
    key = unique(f"auth{status}")
    with make_client(peer) as client, pytest.raises(AuthError) as caught:
        client.request("GET", f"{key}?fail=9&status={status}", idempotent=True)
    assert peer.state.hits[key] == 1
    assert caught.value.status == status


def test_other_4xx_is_an_api_error_with_the_parsed_body(peer: Peer) -> None:
    key = unique("c400")
    with make_client(peer) as client, pytest.raises(ApiError) as caught:
        client.request("POST", f"{key}?fail=9&status=400", idempotent=False, json={})
    assert type(caught.value) is ApiError
    assert caught.value.status == 400
    assert caught.value.code == "SCRIPTED"
    assert caught.value.message == "scripted failure 1"
    assert peer.state.hits[key] == 1


# -- network failures: nothing sent vs maybe applied --------------------------------------------


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connect_errors_are_retried_even_for_writes() -> None:
    policy = HttpPolicy(timeout=0.5, connect_timeout=0.5, max_attempts=3, backoff_base=0.01, backoff_max=0.02)
    url = f"http://127.0.0.1:{_unused_port()}/s/{CODE}/"
    with ApiClient("peer", url, policy=policy, secrets=[CODE]) as client:
        with pytest.raises(TransientError) as caught:
            client.request("POST", "x", idempotent=False, json={"a": 1})
        stats = client.stats.snapshot()
    assert stats["connect_failures"] == 3  # every attempt was made: a refused connect sent nothing
    assert stats["requests"] == 0
    assert stats["retries"] == 2
    assert_error_clean(caught.value)


def test_read_timeout_on_a_write_is_ambiguous(peer: Peer) -> None:
    key = unique("slow-w")
    policy = HttpPolicy(timeout=0.3, max_attempts=4, backoff_base=0.01, backoff_max=0.02)
    with make_client(peer, policy) as client, pytest.raises(AmbiguousWriteError):
        client.request("POST", f"{key}?fail=9&mode=slow&delay=0.8", idempotent=False, json={"n": 1})
    assert peer.state.hits[key] == 1  # no retry


def test_read_timeout_on_a_read_is_retried(peer: Peer) -> None:
    key = unique("slow-r")
    policy = HttpPolicy(timeout=0.3, max_attempts=4, backoff_base=0.01, backoff_max=0.02)
    with make_client(peer, policy) as client:
        response = client.request("GET", f"{key}?fail=1&mode=slow&delay=0.8", idempotent=True)
    assert response.json()["hits"] == 2


def test_connection_dropped_mid_response_on_a_write_is_ambiguous(peer: Peer) -> None:
    key = unique("trunc-w")
    with make_client(peer) as client, pytest.raises(AmbiguousWriteError) as caught:
        client.request("POST", f"{key}?fail=9&mode=truncate", idempotent=False, json={"n": 1})
    assert peer.state.hits[key] == 1
    assert peer.state.bodies[key] == [b'{"n":1}']  # the server did read (and "apply") the write
    assert_error_clean(caught.value)


def test_connection_dropped_mid_response_on_a_read_is_retried(peer: Peer) -> None:
    key = unique("trunc-r")
    with make_client(peer) as client:
        response = client.request("GET", f"{key}?fail=2&mode=truncate", idempotent=True)
    assert response.json()["hits"] == 3


def test_connection_dropped_before_any_answer(dropping_peer: DroppingPeer) -> None:
    url = f"http://127.0.0.1:{dropping_peer.port}/s/{CODE}/"
    with ApiClient("peer", url, policy=FAST, secrets=[CODE]) as client:
        with pytest.raises(AmbiguousWriteError) as write_error:
            client.request("POST", "contacts", idempotent=False, json={"name": "Ann"})
        assert len(dropping_peer.bodies) == 1
        assert dropping_peer.bodies[0] == b'{"name":"Ann"}'
        assert_error_clean(write_error.value)

        with pytest.raises(TransientError):
            client.request("GET", "contacts", idempotent=True)
        assert len(dropping_peer.bodies) == 1 + FAST.max_attempts
        assert client.stats.ambiguous == 1


# -- limiter and stats -----------------------------------------------------------------------------


def test_limiter_is_acquired_before_every_attempt(peer: Peer) -> None:
    limiter = RateLimiter(20.0, 1, name="peer")
    key = unique("lim")
    with make_client(peer, limiter=limiter) as client:
        started = time.monotonic()
        client.request("GET", f"{key}?fail=2&status=502", idempotent=True)  # 3 attempts
        client.request("GET", f"{key}-b", idempotent=True)  # 1 more
        elapsed = time.monotonic() - started
    # 4 tokens from a bucket of 1 refilled at 20/s: at least 3 / 20 s
    assert elapsed >= 0.14
    assert client.stats.requests == 4


def test_the_limiter_window_starts_when_the_answer_is_in(peer: Peer) -> None:
    # at most 2 requests in any 0.5 s as the service counts them; the first answers after 0.3 s
    limiter = RateLimiter(100.0, 10, name="peer", window=(2, 0.5), hold_s=5.0)
    key = unique("win")
    with make_client(peer, policy=HttpPolicy(timeout=2.0, max_attempts=1), limiter=limiter) as client:
        started = time.monotonic()
        client.request("GET", f"{key}-a?fail=1&mode=slow&delay=0.3", idempotent=True)
        client.request("GET", f"{key}-b", idempotent=True)
        client.request("GET", f"{key}-c", idempotent=True)  # waits until 0.5 s after the first answer
        elapsed = time.monotonic() - started
    # not 0.5 s after the first was sent (too early: it may have reached the service late), nor
    # hold_s (the answer was reported)
    assert 0.8 <= elapsed < 3.0


def test_stats_label_defaults_to_the_path_under_the_base_url(peer: Peer) -> None:
    key = unique("lbl")
    with make_client(peer) as client:
        client.request("GET", f"{key}?x=1", idempotent=True)
        client.request("GET", f"{key}?x=2", idempotent=True)
        assert client.stats.snapshot()["by_endpoint"] == {key: 2}


# -- redaction through the real stack -------------------------------------------------------------


def test_secrets_never_reach_errors_or_logs(peer: Peer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    with make_client(peer) as client:
        # retried read: our warning lines and httpx's INFO lines carry the URL
        client.request(
            "GET",
            unique("red-r"),
            idempotent=True,
            params={"fail": 1, "status": 503, "userpsw": PASSWORD},
        )
        for status, method, idempotent in ((500, "POST", False), (401, "GET", True), (400, "POST", False)):
            key = unique(f"red{status}")
            with pytest.raises(Exception) as caught:
                client.request(
                    method,
                    key,
                    idempotent=idempotent,
                    params={"fail": 9, "status": status, "kind": "echo", "password": PASSWORD},
                    json={"password": PASSWORD} if method == "POST" else None,
                )
            errors.append(caught.value)
    assert [type(e) for e in errors] == [AmbiguousWriteError, AuthError, ApiError]
    for error in errors:
        assert "***" in str(error)  # the echo was there, masked
        assert_error_clean(error)
    text = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert any(r.name == "httpx" and "HTTP Request" in r.getMessage() for r in caplog.records)
    assert any(r.levelno == logging.WARNING and "retrying" in r.getMessage() for r in caplog.records)
    assert "***" in text
    assert_clean(text)
    assert_clean(caplog.text)
