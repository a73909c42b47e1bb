"""amoCRM credentials: the SQLite token store, the one-time migration from config, single-flight
refresh across PROCESSES, 401 → refresh → one retry, a revoked refresh token, long-lived tokens,
and secrets kept out of errors and logs (against the sandbox emulator and a scripted token peer)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.connectors.amocrm_auth import AmoAuth, TokenPair, TokenStore
from integration_sync.connectors.errors import AuthError, ConfigError
from integration_sync_tests.connectors.sandbox_support import FAST_POLICY, Sandbox, running_sandbox

CONTACT_ID = 20000001  # the first seeded contact of the sandbox account


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(amocrm_contacts=3, kaspi_orders=0) as sb:
        yield sb


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    sandbox.reset()
    return sandbox


def make_auth(sb: Sandbox, store: TokenStore, **overrides: Any) -> AmoAuth:
    env = sb.env
    options: dict[str, Any] = {
        "client_id": env["AMO_CLIENT_ID"],
        "client_secret": env["AMO_CLIENT_SECRET"],
        "redirect_uri": env["AMO_REDIRECT_URI"],
        "initial_access_token": env["AMO_ACCESS_TOKEN"],
        "initial_refresh_token": env["AMO_REFRESH_TOKEN"],
        "store": store,
        "policy": FAST_POLICY,
        **overrides,
    }
    return AmoAuth(env["AMO_BASE_URL"], **options)


def make_client(sb: Sandbox, auth: AmoAuth, tmp_path: Path) -> AmoCrmClient:
    return AmoCrmClient(
        sb.env["AMO_BASE_URL"], auth=auth, rate_state_path=tmp_path / "amocrm-rate.json", policy=FAST_POLICY
    )


def tokens(sb: Sandbox) -> dict[str, Any]:
    result: dict[str, Any] = sb.control("GET", "amocrm/tokens")
    return result


def secrets_of(sb: Sandbox, *extra: str) -> list[str]:
    env = sb.env
    return [s for s in (env["AMO_CLIENT_SECRET"], env["AMO_ACCESS_TOKEN"], env["AMO_REFRESH_TOKEN"], *extra) if s]


def assert_clean(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret leaked: {text!r}"


# -- the store (no network) ---------------------------------------------------------------------


def test_store_saves_pairs_per_account_in_wal_mode_with_private_permissions(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "state" / "amocrm-tokens.sqlite")
    assert store.get("acc") is None
    pair = TokenPair("a1", "r1", 1000.0, 10.0)
    store.save("acc", pair)
    store.save("other", TokenPair("a2", "r2", None, 11.0))
    assert store.get("acc") == pair
    assert store.get("other") == TokenPair("a2", "r2", None, 11.0)
    assert store.accounts() == ["acc", "other"]
    store.save("acc", TokenPair("a3", "r3", 2000.0, 12.0))
    assert store.get("acc") == TokenPair("a3", "r3", 2000.0, 12.0)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert "a3" not in repr(store.get("acc")) and "r3" not in repr(store.get("acc"))


def test_config_tokens_are_migrated_once_then_the_store_wins(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.sqlite")
    common: dict[str, Any] = {"client_id": "cid", "client_secret": "sec", "redirect_uri": "https://x", "store": store}
    first = AmoAuth("https://acc.amocrm.ru", initial_access_token="A0", initial_refresh_token="R0", **common)
    assert first.access_token() == "A0"
    store.save(first.account, TokenPair("A1", "R1", time.time() + 86400, time.time()))  # a refresh happened
    # a later start with the (now stale) .env pair: the store wins, .env is not migrated again
    later = AmoAuth("https://acc.amocrm.ru/api/v4/", initial_access_token="A0", initial_refresh_token="R0", **common)
    assert later.account == first.account
    assert later.access_token() == "A1"
    assert store.get(first.account) is not None and store.get(first.account).refresh_token == "R1"  # type: ignore[union-attr]


def test_oauth_needs_client_credentials_and_a_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="client_secret"):
        AmoAuth("https://acc.amocrm.ru", client_id="cid", store=TokenStore(tmp_path / "t.sqlite"))
    with pytest.raises(ConfigError, match="store"):
        AmoAuth("https://acc.amocrm.ru", client_id="cid", client_secret="sec")
    with pytest.raises(ConfigError):
        AmoAuth("acc.amocrm.ru", long_lived_token="x")
    assert AmoAuth("https://acc.amocrm.ru", long_lived_token="LL").auth_headers() == {"Authorization": "Bearer LL"}


def test_no_stored_pair_and_no_config_tokens_tells_how_to_authorize(tmp_path: Path) -> None:
    auth = AmoAuth("https://acc.amocrm.ru", client_id="c", client_secret="s", store=TokenStore(tmp_path / "t.sqlite"))
    with pytest.raises(AuthError, match="exchange_code"):
        auth.auth_headers()


# -- against the sandbox ------------------------------------------------------------------------


def test_401_refreshes_once_saves_the_pair_and_retries(sb: Sandbox, tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.sqlite")
    auth = make_auth(sb, store)
    with make_client(sb, auth, tmp_path) as client:
        assert client.get_contact(CONTACT_ID) is not None
        sb.control("POST", "amocrm/tokens/expire", {})
        contact = client.get_contact(CONTACT_ID)
        assert contact is not None and contact.id == CONTACT_ID
        assert client.stats.auth_renewals == 1
        assert auth.refresh_count == 1
    state = tokens(sb)
    assert state["refresh_used"] == [sb.env["AMO_REFRESH_TOKEN"]]
    assert state["refresh_reuse_attempts"] == 0
    saved = store.get(auth.account)
    assert saved is not None and saved.refresh_token in state["refresh_active"]
    assert saved.access_token in state["access_valid"] and saved.expires_at is not None


def test_a_second_401_after_the_refresh_is_an_auth_error(sb: Sandbox, tmp_path: Path) -> None:
    auth = make_auth(sb, TokenStore(tmp_path / "tokens.sqlite"))
    with make_client(sb, auth, tmp_path) as client:
        sb.control("POST", "amocrm/tokens/expire", {})
        # the contact GET answers 401 whatever the token (the token POST is not faulted)
        sb.faults({"amocrm": {"error_burst": {"count": 5, "status": 401, "methods": ["GET contacts/{id}"]}}})
        with pytest.raises(AuthError) as caught:
            client.get_contact(CONTACT_ID)
        assert caught.value.status == 401
        assert auth.refresh_count == 1  # one refresh, one retry, then give up
        assert client.stats.requests == 2
    assert len(tokens(sb)["refresh_used"]) == 1


def test_refresh_ahead_of_expiry_sends_no_doomed_request(sb: Sandbox, tmp_path: Path) -> None:
    auth = make_auth(sb, TokenStore(tmp_path / "tokens.sqlite"), initial_expires_at=time.time() + 120)
    with make_client(sb, auth, tmp_path) as client:
        assert client.get_contact(CONTACT_ID) is not None
        assert auth.refresh_count == 1
        assert client.stats.auth_renewals == 0 and client.stats.requests == 1  # no 401 was needed
        assert client.requests_used == 2  # plus the token call


def test_revoked_refresh_token_is_a_clear_auth_error_without_secrets(
    sb: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = TokenStore(tmp_path / "tokens.sqlite")
    auth = make_auth(sb, store)
    with make_client(sb, auth, tmp_path) as client:
        sb.control("POST", "amocrm/tokens/expire", {})
        assert client.get_contact(CONTACT_ID) is not None  # refresh-0 used, a new pair saved
        fresh = store.get(auth.account)
        assert fresh is not None
    # a worker that lost the new pair puts the old one back: its refresh token is single-use
    env = sb.env
    store.save(auth.account, TokenPair(env["AMO_ACCESS_TOKEN"], env["AMO_REFRESH_TOKEN"], None, time.time()))
    other = make_auth(sb, store)
    with make_client(sb, other, tmp_path) as client, pytest.raises(AuthError) as caught:
        client.get_contact(CONTACT_ID)
    message = str(caught.value)
    assert "revoked" in message.lower()
    assert "re-authorize" in message and "exchange_code" in message
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert tokens(sb)["refresh_reuse_attempts"] == 1
    leaked = secrets_of(sb, fresh.access_token, fresh.refresh_token)
    assert_clean(message, leaked)
    assert_clean(caplog.text, leaked)


def test_a_bad_authorization_code_is_refused_with_the_hint(sb: Sandbox, tmp_path: Path) -> None:
    auth = make_auth(sb, TokenStore(tmp_path / "tokens.sqlite"))
    with pytest.raises(AuthError, match="authorization code") as caught:
        auth.exchange_code("not-a-code-the-sandbox-issued")
    assert "not-a-code-the-sandbox-issued" not in str(caught.value)
    auth.close()


def test_long_lived_token_needs_no_refresh_and_a_bad_one_fails_at_once(sb: Sandbox, tmp_path: Path) -> None:
    long_lived = next(t for t in tokens(sb)["access_valid"] if "long" in t)
    good = AmoAuth(sb.env["AMO_BASE_URL"], long_lived_token=long_lived)
    with make_client(sb, good, tmp_path) as client:
        assert client.get_contact(CONTACT_ID) is not None
        assert good.mode == "long_lived" and good.refresh_count == 0
    bad = AmoAuth(sb.env["AMO_BASE_URL"], long_lived_token="not-the-long-lived-token")
    with make_client(sb, bad, tmp_path) as client, pytest.raises(AuthError) as caught:
        client.get_contact(CONTACT_ID)
    assert client.stats.requests == 1 and client.stats.auth_renewals == 0
    assert "not-the-long-lived-token" not in str(caught.value)
    assert tokens(sb)["refresh_used"] == []


# -- two processes refreshing at once -----------------------------------------------------------

WORKER = r"""
import hashlib, json, sys, time
from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.connectors.amocrm_auth import AmoAuth, TokenStore
from integration_sync.connectors.http import HttpPolicy

env, store_path, rate_path, out = json.loads(sys.argv[1]), *sys.argv[2:5]
start_at, preload = float(sys.argv[5]), sys.argv[6] == "1"
policy = HttpPolicy(timeout=10.0, connect_timeout=5.0, max_attempts=5, backoff_base=0.05, backoff_max=0.2)
auth = AmoAuth(
    env["AMO_BASE_URL"], client_id=env["AMO_CLIENT_ID"], client_secret=env["AMO_CLIENT_SECRET"],
    redirect_uri=env["AMO_REDIRECT_URI"], initial_access_token=env["AMO_ACCESS_TOKEN"],
    initial_refresh_token=env["AMO_REFRESH_TOKEN"], store=TokenStore(store_path), policy=policy,
)
with AmoCrmClient(env["AMO_BASE_URL"], auth=auth, rate_state_path=rate_path, policy=policy) as client:
    if preload:
        auth.access_token()  # hold the (dead) stored access token before the race
    time.sleep(max(0.0, start_at - time.time()))
    names = [client.get_contact(20000001).name for _ in range(3)]
    token = auth.access_token()
    result = {"names": names, "refreshes": auth.refresh_count, "renewals": client.stats.auth_renewals,
              "token": hashlib.sha256(token.encode()).hexdigest()}
with open(out, "w") as f:
    json.dump(result, f)
"""


def _run_workers(sb: Sandbox, tmp_path: Path, *, preload: bool, count: int = 2) -> list[dict[str, Any]]:
    store_path, rate_path = tmp_path / "tokens.sqlite", tmp_path / "amocrm-rate.json"
    start_at = time.time() + 2.5  # both processes past their imports, then racing
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                json.dumps(sb.env),
                str(store_path),
                str(rate_path),
                str(tmp_path / f"out{n}.json"),
                str(start_at),
                "1" if preload else "0",
            ]
        )
        for n in range(count)
    ]
    for proc in procs:
        assert proc.wait(timeout=30) == 0
    return [json.loads((tmp_path / f"out{n}.json").read_text()) for n in range(count)]


@pytest.mark.parametrize("trigger", ["401", "ahead_of_expiry"])
def test_two_processes_refreshing_at_once_make_exactly_one_refresh(sb: Sandbox, tmp_path: Path, trigger: str) -> None:
    store = TokenStore(tmp_path / "tokens.sqlite")
    seed = make_auth(sb, store)
    env = sb.env
    if trigger == "401":
        store.save(seed.account, TokenPair(env["AMO_ACCESS_TOKEN"], env["AMO_REFRESH_TOKEN"], None, time.time()))
        sb.control("POST", "amocrm/tokens/expire", {})  # both will send the dead token and get 401
    else:  # the stored pair expires within the refresh margin: both want to refresh first
        expires = time.time() + 60
        store.save(seed.account, TokenPair(env["AMO_ACCESS_TOKEN"], env["AMO_REFRESH_TOKEN"], expires, time.time()))
    results = _run_workers(sb, tmp_path, preload=trigger == "401")

    state = tokens(sb)
    assert state["refresh_used"] == [sb.env["AMO_REFRESH_TOKEN"]], state  # exactly one refresh call
    assert state["refresh_reuse_attempts"] == 0
    assert all(exchange["ok"] for exchange in state["exchanges"])
    assert sum(r["refreshes"] for r in results) == 1
    assert all(r["names"] == [results[0]["names"][0]] * 3 for r in results)  # both went on working
    saved = store.get(seed.account)
    assert saved is not None and saved.refresh_token in state["refresh_active"]
    expected = hashlib.sha256(saved.access_token.encode()).hexdigest()
    assert [r["token"] for r in results] == [expected, expected]  # both use the saved pair
    if trigger == "401":
        assert sum(r["renewals"] for r in results) >= 1


# -- exchange_code against a scripted token endpoint --------------------------------------------


@pytest.fixture
def token_peer() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    calls: list[dict[str, Any]] = []

    async def token(request: Request) -> Response:
        body = await request.json()
        calls.append(body)
        if body.get("grant_type") == "authorization_code" and body.get("code") == "good-code":
            return JSONResponse(
                {"token_type": "Bearer", "expires_in": 86400, "access_token": "ACC-NEW", "refresh_token": "REF-NEW"}
            )
        return JSONResponse({"hint": "Authorization code has expired", "status": 400}, status_code=400)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = Starlette(routes=[Route("/oauth2/access_token", token, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}", calls
    server.should_exit = True
    thread.join(5)


def test_exchange_code_stores_the_new_pair(token_peer: tuple[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    base, calls = token_peer
    store = TokenStore(tmp_path / "tokens.sqlite")
    auth = AmoAuth(
        base, client_id="cid", client_secret="csecret", redirect_uri="https://r", store=store, policy=FAST_POLICY
    )
    pair = auth.exchange_code("good-code")
    assert (pair.access_token, pair.refresh_token) == ("ACC-NEW", "REF-NEW")
    assert store.get(auth.account) == pair
    assert auth.auth_headers() == {"Authorization": "Bearer ACC-NEW"}
    assert calls == [
        {
            "client_id": "cid",
            "client_secret": "csecret",
            "redirect_uri": "https://r",
            "grant_type": "authorization_code",
            "code": "good-code",
        }
    ]
    with pytest.raises(AuthError, match="expired") as caught:
        auth.exchange_code("old-code")
    assert "old-code" not in str(caught.value) and "csecret" not in str(caught.value)
    assert store.get(auth.account) == pair  # a failed exchange keeps the stored pair
    auth.close()
