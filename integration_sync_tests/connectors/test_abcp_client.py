"""ABCP client against the sandbox emulator: md5 auth, paging, date filters, answer shapes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from integration_sync.connectors.abcp import AbcpClient, abcp_date, flatten_message
from integration_sync.connectors.errors import ApiError, AuthError, ConfigError
from integration_sync_tests.connectors.sandbox_support import FAST_POLICY, Sandbox, running_sandbox

MOSCOW = ZoneInfo("Europe/Moscow")
USERS = 200


@pytest.fixture(scope="module")
def module_sandbox() -> Iterator[Sandbox]:
    with running_sandbox(seed=1, abcp_users=USERS, days=30) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(module_sandbox: Sandbox) -> Sandbox:
    # no reset between tests: a reset regenerates the users relative to "now"
    module_sandbox.faults({"abcp": {}})
    return module_sandbox


def client(sandbox: Sandbox, *, page_size: int = 500, max_pages: int | None = None) -> AbcpClient:
    env = sandbox.env
    return AbcpClient(
        env["ABCP_BASE_URL"],
        env["ABCP_USERLOGIN"],
        env["ABCP_USERPSW"],
        page_size=page_size,
        max_pages=max_pages,
        policy=FAST_POLICY,
    )


@pytest.fixture(scope="module")
def all_users(module_sandbox: Sandbox) -> list[dict[str, object]]:
    with client(module_sandbox, page_size=1000) as abcp:
        return list(abcp.fetch_users())


# -- pure helpers -------------------------------------------------------------------------------


def test_abcp_date_converts_aware_datetimes_to_moscow_wall_clock() -> None:
    assert abcp_date(datetime(2025, 1, 31, 21, 30, tzinfo=UTC)) == "2025-02-01 00:30:00"
    with pytest.raises(ValueError):
        abcp_date(datetime(2025, 1, 1))


def test_error_messages_of_every_shape_are_flattened() -> None:
    assert flatten_message("x") == "x"
    assert flatten_message(["a", "b"]) == "a; b"
    assert flatten_message({"limit": "bad", "skip": ["neg"]}) == "limit: bad; skip: neg"
    assert flatten_message(None) == ""


def test_missing_configuration_is_refused() -> None:
    with pytest.raises(ConfigError):
        AbcpClient("", "login", "pw")
    with pytest.raises(ConfigError):
        AbcpClient("https://h.example/cp/users", "login", "pw", page_size=0)


# -- against the emulator --------------------------------------------------------------------------


def test_md5_auth_and_full_fetch(sandbox: Sandbox, all_users: list[dict[str, object]]) -> None:
    assert len(all_users) == USERS
    assert all(isinstance(user, dict) and isinstance(user["userId"], str) for user in all_users)
    assert len({user["userId"] for user in all_users}) == USERS


def test_wrong_password_is_an_auth_error_without_secrets(sandbox: Sandbox) -> None:
    wrong = "wr0ng-Passw0rd!"
    env = sandbox.env
    with AbcpClient(env["ABCP_BASE_URL"], env["ABCP_USERLOGIN"], wrong, policy=FAST_POLICY) as abcp:
        with pytest.raises(AuthError) as caught:
            list(abcp.fetch_users())
        assert abcp.requests_used == 1  # never retried
    md5 = hashlib.md5(wrong.encode(), usedforsecurity=False).hexdigest()
    text = f"{caught.value} {caught.value!r} {caught.value.request}"
    assert wrong not in text
    assert md5 not in text
    assert "userpsw=***" in text
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_paging_with_a_page_smaller_than_the_user_count(sandbox: Sandbox, all_users: list[dict[str, object]]) -> None:
    before = sandbox.stats("abcp")["requests"]
    with client(sandbox, page_size=30) as abcp:
        users = list(abcp.fetch_users())
        used = abcp.requests_used
    assert users == all_users  # same rows, same order, unchanged
    assert used == USERS // 30 + 1  # 6 full pages and the short 7th
    assert sandbox.stats("abcp")["requests"] - before == used


def test_an_exact_multiple_of_the_page_size_ends_with_an_empty_page(sandbox: Sandbox) -> None:
    with client(sandbox, page_size=50) as abcp:
        assert len(list(abcp.fetch_users())) == USERS
        assert abcp.requests_used == USERS // 50 + 1


def test_max_pages_truncates(sandbox: Sandbox, all_users: list[dict[str, object]]) -> None:
    with client(sandbox, page_size=40, max_pages=2) as abcp:
        users = list(abcp.fetch_users())
        assert abcp.truncated
    assert users == all_users[:80]


def _moscow(text: object) -> datetime:
    assert isinstance(text, str)
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=MOSCOW)


def test_registered_date_filter(sandbox: Sandbox, all_users: list[dict[str, object]]) -> None:
    dates = sorted(_moscow(u["registrationDate"]) for u in all_users)
    start = dates[len(dates) // 4].astimezone(UTC)  # given in UTC: the client converts to Moscow
    end = dates[len(dates) // 2].astimezone(UTC)
    expected = [u for u in all_users if start <= _moscow(u["registrationDate"]) <= end]
    assert 0 < len(expected) < USERS
    with client(sandbox, page_size=25) as abcp:
        got = list(abcp.fetch_users(registered_from=start, registered_to=end))
    assert got == expected


def test_updated_date_filter(sandbox: Sandbox, all_users: list[dict[str, object]]) -> None:
    dates = sorted(_moscow(u["updateTime"]) for u in all_users)
    start = dates[-20]  # an aware Moscow datetime
    expected = [u for u in all_users if _moscow(u["updateTime"]) >= start]
    with client(sandbox) as abcp:
        got = list(abcp.fetch_users(updated_from=start))
    assert got == expected
    assert len(got) >= 20


def test_object_keyed_answers_are_accepted(sandbox: Sandbox, all_users: list[dict[str, object]]) -> None:
    sandbox.faults({"abcp": {"object_response": True}})
    with client(sandbox, page_size=70) as abcp:
        assert list(abcp.fetch_users()) == all_users


def test_non_object_items_are_yielded_not_dropped() -> None:
    raw = [42, "junk", None, {"userId": "1", "odd": True}]
    with running_sandbox(seed=2, abcp_users=10, days=5) as own:
        own.control("POST", "abcp/raw_users", raw)
        with client(own, page_size=4) as abcp:
            users = list(abcp.fetch_users())
    assert len(users) == 10 + len(raw)
    assert users[-len(raw) :] == raw


@pytest.mark.parametrize(
    ("message", "expected_type", "expected_text"),
    [
        (["limit is too big", "skip is negative"], ApiError, "limit is too big; skip is negative"),
        ({"skip": "must be >= 0"}, ApiError, "skip: must be >= 0"),
        ("Неправильное имя или пароль!", AuthError, "Неправильное имя или пароль!"),
    ],
)
def test_error_bodies_are_checked_even_on_http_200(
    sandbox: Sandbox, message: object, expected_type: type[Exception], expected_text: str
) -> None:
    body = {"errorCode": 7, "errorMessage": message}
    sandbox.faults({"abcp": {"error_burst": {"count": 1, "status": 200, "body": body}}})
    with client(sandbox) as abcp, pytest.raises(ApiError) as caught:
        list(abcp.fetch_users())
    assert type(caught.value) is expected_type
    assert caught.value.message == expected_text
    assert caught.value.status == 200


def test_server_errors_and_dropped_answers_are_retried(sandbox: Sandbox, all_users: list[dict[str, object]]) -> None:
    sandbox.faults({"abcp": {"error_burst": {"count": 2, "status": 502}, "commit_then_drop": {"count": 1}}})
    with client(sandbox, page_size=1000) as abcp:
        assert list(abcp.fetch_users()) == all_users
        assert abcp.stats.retries == 3
        assert abcp.requests_used == 4
