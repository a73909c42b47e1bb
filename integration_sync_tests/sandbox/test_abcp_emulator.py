"""The ABCP ``cp/users`` emulator, exercised over real HTTP with plain httpx."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from integration_sync.sandbox.core import MOSCOW
from integration_sync.sandbox.fakedata import NBSP
from integration_sync.sandbox.server import SandboxConfig, SandboxServer

LOGIN = "api@sandbox"
PSW_MD5 = hashlib.md5(b"sandbox-password", usedforsecurity=False).hexdigest()
BASE_RESET = {
    "seed": 7,
    "abcp_users": 300,
    "days": 30,
    "abcp_object_response": False,
    "abcp_limit_cap": 1000,
    "clock_epoch": None,
}
DATE_FMT = "%Y-%m-%d %H:%M:%S"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(**BASE_RESET)) as srv:
        yield srv


@pytest.fixture
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        assert http.post("/_sandbox/reset", json=BASE_RESET).status_code == 200
        yield http


def users(client: httpx.Client, **params: Any) -> httpx.Response:
    return client.get("/abcp/cp/users", params={"userlogin": LOGIN, "userpsw": PSW_MD5, **params})


def all_users(client: httpx.Client) -> list[dict[str, Any]]:
    response = users(client)
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, list)
    return body


@pytest.mark.parametrize(
    "params",
    [
        {"userlogin": LOGIN, "userpsw": hashlib.md5(b"wrong", usedforsecurity=False).hexdigest()},
        {"userlogin": LOGIN, "userpsw": "sandbox-password"},  # plain password instead of its md5
        {"userlogin": "api@other", "userpsw": PSW_MD5},
        {"userlogin": LOGIN},
        {},
    ],
)
def test_bad_credentials_get_the_abcp_error_body_and_no_data(client: httpx.Client, params: dict[str, str]) -> None:
    response = client.get("/abcp/cp/users", params=params)
    assert response.status_code == 403
    assert response.json() == {"errorCode": 102, "errorMessage": "Неправильное имя или пароль!"}


def test_users_look_like_abcp_users(client: httpx.Client) -> None:
    rows = all_users(client)
    assert len(rows) == 300
    now = datetime.now(MOSCOW).replace(tzinfo=None)
    undocumented = {"regionId", "userCode", "locale", "payDelay", "deliveryAddressZones"}
    for user in rows:
        assert 59 <= len(user) <= 61
        assert undocumented <= set(user)
        assert re.fullmatch(r"\d{7}", user["userId"])
        for key, value in user.items():
            if key == "offices":
                assert isinstance(value, list) and all(isinstance(v, str) for v in value)
            elif key not in undocumented:
                assert value is None or isinstance(value, str), (key, value)
        registered = datetime.strptime(user["registrationDate"], DATE_FMT)
        updated = datetime.strptime(user["updateTime"], DATE_FMT)
        assert updated >= registered
        assert now - timedelta(days=30, minutes=1) <= registered <= now + timedelta(seconds=2)
    # what recorded real traffic shows: lists and numbers among the values, balance null, saldo often absent
    assert any(isinstance(u["deliveryAddressZones"], list) and u["deliveryAddressZones"] for u in rows)
    assert any(isinstance(u["regionId"], int) for u in rows) and any(isinstance(u["payDelay"], int) for u in rows)
    assert any(u["balance"] is None for u in rows)
    assert sum("saldo" not in u for u in rows) >= len(rows) // 5
    assert [int(u["userId"]) for u in rows] == sorted(int(u["userId"]) for u in rows)
    assert any(u["mobile"] == "" for u in rows)
    assert any(u["email"] == "" for u in rows)
    assert any(u["inn"] == "" for u in rows) and any(len(u["inn"]) == 10 for u in rows)
    assert any(len(u["inn"]) == 12 for u in rows)
    mobiles = [u["mobile"] for u in rows if u["mobile"]]
    assert any(m.startswith("+7 (") for m in mobiles) and any(re.fullmatch(r"8\d{10}", m) for m in mobiles)
    assert any(re.fullmatch(r"9\d{9}", m) for m in mobiles) and any(re.fullmatch(r"\+7\d{10}", m) for m in mobiles)
    saldos = [u.get("saldo", "ABSENT") for u in rows]
    assert "ABSENT" in saldos and None in saldos and "" in saldos
    assert any(isinstance(s, str) and NBSP in s for s in saldos)
    assert any(isinstance(s, str) and re.fullmatch(r"-?\d{1,3}( \d{3})+,\d\d", s) for s in saldos)
    assert any(isinstance(s, str) and re.fullmatch(r"-?\d+\.\d\d", s) for s in saldos)
    assert any(isinstance(s, str) and re.fullmatch(r"-?\d+", s) for s in saldos)


def test_limit_skip_page_through_everything_and_limit_is_capped(client: httpx.Client) -> None:
    everything = all_users(client)
    pages = [users(client, limit=70, skip=skip).json() for skip in range(0, 300, 70)]
    assert [len(p) for p in pages] == [70, 70, 70, 70, 20]
    assert [u for page in pages for u in page] == everything
    assert users(client, limit=70, skip=300).json() == []

    client.post("/_sandbox/reset", json={**BASE_RESET, "abcp_limit_cap": 50})
    assert len(users(client, limit=80).json()) == 50  # silently clamped, as documented
    assert len(users(client).json()) == 50

    for bad in ({"limit": "ten"}, {"limit": "0"}, {"skip": "-5"}):
        response = users(client, **bad)
        assert response.status_code == 400
        assert set(response.json()) == {"errorCode", "errorMessage"}


def test_format_p_wraps_count_and_items(client: httpx.Client) -> None:
    body = users(client, format="p", limit=10, skip=5).json()
    assert body["count"] == 300
    assert body["items"] == all_users(client)[5:15]


def test_registration_date_filters(client: httpx.Client) -> None:
    everything = all_users(client)
    dates = sorted(u["registrationDate"] for u in everything)
    start, end = dates[50], dates[120]
    picked = users(client, dateRegistredStart=start, dateRegistredEnd=end).json()
    assert picked == [u for u in everything if start <= u["registrationDate"] <= end]
    assert len(picked) >= 71
    for bad in ("2024-01-01", "01.01.2024 00:00:00", "2024-13-01 00:00:00", "yesterday"):
        response = users(client, dateRegistredStart=bad)
        assert response.status_code == 400, bad
        assert set(response.json()) == {"errorCode", "errorMessage"}


def test_control_update_moves_update_time_to_now(client: httpx.Client) -> None:
    target = all_users(client)[42]
    before = datetime.now(MOSCOW).replace(tzinfo=None, microsecond=0)
    changed = client.post(
        f"/_sandbox/abcp/users/{target['userId']}", json={"saldo": "-100,00", "inn": "7701234567"}
    ).json()
    assert changed["saldo"] == "-100,00" and changed["inn"] == "7701234567"
    assert datetime.strptime(changed["updateTime"], DATE_FMT) >= before - timedelta(seconds=1)
    since = (before - timedelta(seconds=1)).strftime(DATE_FMT)
    recent = users(client, dateUpdatedStart=since).json()
    assert [u["userId"] for u in recent] == [target["userId"]]
    assert recent[0]["saldo"] == "-100,00"
    assert client.post("/_sandbox/abcp/users/1", json={"inn": "1"}).status_code == 404


def test_state_market_ids_phone_and_email_filters(client: httpx.Client) -> None:
    everything = all_users(client)
    ids = [everything[3]["userId"], everything[9]["userId"]]
    response = client.get(
        f"/abcp/cp/users?userlogin={LOGIN}&userpsw={PSW_MD5}&customersIds[]={ids[0]}&customersIds[]={ids[1]}"
    )
    assert [u["userId"] for u in response.json()] == ids
    assert users(client, state="2").json() == [u for u in everything if u["state"] == "2"]
    assert users(client, marketType="2").json() == [u for u in everything if u["marketType"] == "2"]

    with_mobile = next(u for u in everything if u["mobile"].startswith("+7 ("))
    digits = re.sub(r"\D", "", with_mobile["mobile"])
    found = users(client, phone="8" + digits[1:]).json()
    assert with_mobile["userId"] in [u["userId"] for u in found]
    with_email = next(u for u in everything if u["email"])
    found = users(client, email=with_email["email"].upper()).json()
    assert [u["userId"] for u in found] == [
        u["userId"] for u in everything if u["email"].lower() == with_email["email"].lower()
    ]


def test_object_response_switch_and_empty_result(client: httpx.Client) -> None:
    client.post("/_sandbox/reset", json={**BASE_RESET, "abcp_object_response": True})
    body = users(client, limit=3).json()
    assert isinstance(body, dict) and list(body) == ["0", "1", "2"]
    assert users(client, limit=3, skip=1000).json() == []

    client.post("/_sandbox/reset", json=BASE_RESET)
    assert isinstance(users(client, limit=3).json(), list)
    client.post("/_sandbox/faults", json={"abcp": {"object_response": True}})
    assert list(users(client, limit=2).json()) == ["0", "1"]
    client.post("/_sandbox/faults", json={"abcp": None})
    assert isinstance(users(client, limit=2).json(), list)


def test_raw_users_are_appended_verbatim(client: httpx.Client) -> None:
    garbage: list[Any] = [{"name": "Без ID", "registrationDate": "вчера"}, {"userId": 5, "saldo": 12.5}, "junk"]
    assert client.post("/_sandbox/abcp/raw_users", json=garbage).json() == {"raw_users": 3}
    rows = all_users(client)
    assert rows[-3:] == garbage
    filtered = users(client, dateRegistredStart="2099-01-01 00:00:00").json()
    assert filtered == garbage


def test_same_seed_and_clock_give_identical_users(client: httpx.Client) -> None:
    pinned = {**BASE_RESET, "clock_epoch": 1_750_000_000.0, "abcp_users": 40}
    client.post("/_sandbox/reset", json=pinned)
    first = all_users(client)
    client.post("/_sandbox/reset", json=pinned)
    assert all_users(client) == first
    assert max(u["registrationDate"] for u in first) <= "2025-06-15 18:06:40"
    client.post("/_sandbox/reset", json={**pinned, "seed": 8})
    assert all_users(client) != first


def test_abcp_faults_burst_then_commit_then_drop(client: httpx.Client) -> None:
    client.post("/_sandbox/faults", json={"abcp": {"error_burst": {"count": 2, "status": 502}}})
    assert [users(client, limit=1).status_code for _ in range(3)] == [502, 502, 200]
    client.post("/_sandbox/faults", json={"abcp": {"commit_then_drop": {"count": 1}}})
    with pytest.raises(httpx.TransportError):
        users(client, limit=5)
    assert users(client, limit=1).status_code == 200
    stats = client.get("/_sandbox/stats").json()["abcp"]
    assert stats["requests"] == 5 and stats["by_method"] == {"cp/users": 5}
