"""The payment webhook receiver over real HTTP (httpx against a `ReceiverServer` on loopback)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration_sync.webhooks.inbox import payment_of_key
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings

SECRET = "s3cr3t-webhook-key"
PAYLOAD: dict[str, Any] = {
    "course_order": {
        "status": "CONFIRMED",
        "amount": 100,
        "created_at": "2025-01-20 23:49:20",
        "updated_at": "2025-01-20 23:49:20",
        "code": "PROMO2025",
        "payment_id": "pay_123456",
        "invoice_id": "inv_789",
        "payment_method": "SBP",
        "currency": "RUB",
        "course_order_items": [
            {
                "cost": 5000,
                "number_lessons": 10,
                "course": {"name": "Годовой 2к25 стандарт", "subject": {"name": "Русский", "project": "ЕГЭ"}},
                "package_id": None,
            }
        ],
        "user": {
            "first_name": "Иван",
            "last_name": "Петров",
            "phone": "89991234567",
            "email": "ivan@example.com",
            "telegram_id": 123456789,
            "telegram_tag": "ivan_petrov",
        },
        "utm": {"source": "platform", "medium": "direct", "compaign": "summer2025", "term": "", "content": ""},
        "domain": "pl.el-ed.ru",
        "unknown_extra": {"tolerated": True},
    }
}
URL = "/webhook/payment"


def payload(payment_id: str = "pay_123456", **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(PAYLOAD)
    data["course_order"]["payment_id"] = payment_id
    data["course_order"].update(changes)
    return data


def sign(body: bytes, secret: str = SECRET, timestamp: str | None = None) -> dict[str, str]:
    message = body if timestamp is None else timestamp.encode() + b"." + body
    headers = {"X-Signature": hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()}
    if timestamp is not None:
        headers["X-Timestamp"] = timestamp
    return headers


def make_settings(tmp_path: Path, **changes: Any) -> ReceiverSettings:
    return ReceiverSettings(secret=SECRET, inbox_path=tmp_path / "inbox.sqlite", max_body_bytes=4096, **changes)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ReceiverServer]:
    with ReceiverServer(make_settings(tmp_path, excluded_domains=frozenset({"test.el-ed.ru"}))) as srv:
        yield srv


def post(server: ReceiverServer, data: Any, client: httpx.Client | None = None, **kw: Any) -> httpx.Response:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    headers = kw.pop("headers", None) or sign(body)
    if client is not None:
        return client.post(server.url(URL), content=body, headers=headers, **kw)
    return httpx.post(server.url(URL), content=body, headers=headers, timeout=10, **kw)


def test_valid_signature_is_accepted_and_stored(server: ReceiverServer) -> None:
    body = json.dumps(PAYLOAD, ensure_ascii=False).encode()
    response = post(server, body)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "event_id": 1}
    [event] = server.inbox.read_after(0, 10)
    assert event.event_key == "payment:pay_123456" and event.status == "accepted" and event.reason is None
    assert event.payload.encode() == body  # the raw body
    assert event.event_date == "2025-01-20" and event.source == "platform_payment"


def test_event_date_is_the_moscow_date(server: ReceiverServer) -> None:
    response = post(server, payload("pay_tz", created_at="2025-01-20T22:30:00+00:00"))
    assert response.status_code == 200
    assert server.inbox.read_after(0, 1)[0].event_date == "2025-01-21"


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Signature": "00" * 32}, sign(b"other"), sign(json.dumps(PAYLOAD).encode(), secret="wrong")],
    ids=["missing", "zeros", "other-body", "wrong-secret"],
)
def test_bad_or_missing_signature_is_401_and_nothing_stored(server: ReceiverServer, headers: dict[str, str]) -> None:
    response = httpx.post(server.url(URL), content=json.dumps(PAYLOAD).encode(), headers=headers)
    assert response.status_code == 401
    assert "error" in response.json() and SECRET not in response.text
    assert server.inbox.count() == 0


def test_tampered_body_is_401(server: ReceiverServer) -> None:
    body = json.dumps(PAYLOAD).encode()
    tampered = body.replace(b"5000", b"9000")
    response = httpx.post(server.url(URL), content=tampered, headers=sign(body))
    assert response.status_code == 401 and server.inbox.count() == 0


def test_legacy_secret_only_when_enabled(tmp_path: Path) -> None:
    body = json.dumps(PAYLOAD).encode()
    with ReceiverServer(make_settings(tmp_path / "off")) as off:
        assert httpx.post(off.url(URL), content=body, headers={"X-Webhook-Secret": SECRET}).status_code == 401
        assert off.inbox.count() == 0
    with ReceiverServer(make_settings(tmp_path / "on", legacy_secret_enabled=True)) as on:
        wrong = httpx.post(on.url(URL), content=body, headers={"X-Webhook-Secret": SECRET + "x"})
        assert wrong.status_code == 401 and SECRET not in wrong.text
        assert httpx.post(on.url(URL), content=body, headers={"X-Webhook-Secret": SECRET}).status_code == 200
        assert on.inbox.count() == 1


def test_signed_timestamp_fresh_ok_stale_401(server: ReceiverServer) -> None:
    body = json.dumps(payload("pay_fresh")).encode()
    fresh = post(server, body, headers=sign(body, timestamp=str(int(time.time()))))
    assert fresh.status_code == 200
    body = json.dumps(payload("pay_stale")).encode()
    stale = post(server, body, headers=sign(body, timestamp=str(int(time.time()) - 3600)))
    assert stale.status_code == 401 and stale.json() == {"error": "stale timestamp"}
    # the timestamp is covered by the signature: swapping it breaks the signature
    headers = sign(body, timestamp=str(int(time.time()) - 3600))
    headers["X-Timestamp"] = str(int(time.time()))
    assert post(server, body, headers=headers).status_code == 401
    assert server.inbox.count() == 1


def test_oversized_body_is_413(server: ReceiverServer) -> None:
    body = json.dumps(payload(code="x" * 10_000)).encode()
    assert post(server, body).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        yield body[:3000]
        yield body[3000:]

    response = httpx.post(server.url(URL), content=chunks(), headers=sign(body))
    assert response.status_code == 413
    assert server.inbox.count() == 0


def _items(cost: Any) -> list[dict[str, Any]]:
    return [{"cost": cost, "course": {"name": "c"}}]


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        (b"{not json", None),
        (payload("   "), ["course_order", "payment_id"]),
        ({"course_order": {k: v for k, v in PAYLOAD["course_order"].items() if k != "payment_id"}}, None),
        (payload(course_order_items=_items(-1)), ["course_order", "course_order_items", "0", "cost"]),
        (payload(course_order_items=_items("abc")), ["course_order", "course_order_items", "0", "cost"]),
        (payload(course_order_items=_items(True)), ["course_order", "course_order_items", "0", "cost"]),
        (payload(course_order_items=[]), ["course_order", "course_order_items"]),
        (payload(created_at="yesterday"), ["course_order", "created_at"]),
        ([1, 2, 3], None),
    ],
    ids=["bad-json", "blank-id", "missing-id", "negative", "nan-string", "bool", "no-items", "bad-date", "array"],
)
def test_invalid_body_is_422_with_reasons(server: ReceiverServer, data: Any, loc: list[str] | None) -> None:
    response = post(server, data)
    assert response.status_code == 422
    answer = response.json()
    assert "error" in answer and isinstance(answer["details"], list)
    if loc is not None:
        assert loc in [d["loc"] for d in answer["details"]]
        assert all(set(d) == {"loc", "msg"} for d in answer["details"])
    if data == {"course_order": {k: v for k, v in PAYLOAD["course_order"].items() if k != "payment_id"}}:
        assert ["course_order", "payment_id"] in [d["loc"] for d in answer["details"]]
    assert server.inbox.count() == 0


def test_excluded_status_and_domain_are_202_and_stored_skipped(server: ReceiverServer) -> None:
    pending = post(server, payload("pay_p", status="PENDING"))
    assert pending.status_code == 202 and pending.json()["status"] == "skipped"
    domain = post(server, payload("pay_d", domain="TEST.el-ed.ru "))
    assert domain.status_code == 202
    events = {e.event_key: e for e in server.inbox.read_after(0, 10)}
    skipped = events["payment:pay_p:skipped:PENDING"]
    assert skipped.status == "skipped" and "PENDING" in (skipped.reason or "")
    by_domain = events["payment:pay_d:skipped:CONFIRMED"]
    assert by_domain.status == "skipped" and "test.el-ed.ru" in (by_domain.reason or "")
    assert post(server, payload("pay_p", status="PENDING")).status_code == 409  # the same skipped webhook again
    # the same payment confirmed later is accepted (once): a PENDING webhook never swallows the payment
    assert post(server, payload("pay_p", status="CONFIRMED")).status_code == 200
    assert post(server, payload("pay_p", status="CONFIRMED")).status_code == 409


def test_payment_id_shaped_like_a_skipped_key_does_not_collide(server: ReceiverServer) -> None:
    """``X:skipped:PENDING`` is a payment id of its own, not payment X's skipped PENDING webhook."""
    assert post(server, payload("pay_c", status="PENDING")).status_code == 202
    assert post(server, payload("pay_c:skipped:PENDING")).status_code == 200
    assert post(server, payload("pay_d:skipped:PENDING")).status_code == 200
    assert post(server, payload("pay_d", status="PENDING")).status_code == 202
    assert post(server, payload("100%3A")).status_code == 200  # an id that looks escaped stays itself
    assert post(server, payload("100:")).status_code == 200
    keys = [e.event_key for e in server.inbox.read_after(0, 10)]
    assert len(set(keys)) == 6
    assert [payment_of_key(k) for k in keys] == [
        "pay_c",
        "pay_c:skipped:PENDING",
        "pay_d:skipped:PENDING",
        "pay_d",
        "100%3A",
        "100:",
    ]


def test_repeated_payment_id_is_409_and_the_original_unchanged(server: ReceiverServer) -> None:
    first_body = json.dumps(payload("pay_dup")).encode()
    assert post(server, first_body).status_code == 200
    again = post(server, payload("pay_dup", course_order_items=_items(1)))
    assert again.status_code == 409 and again.json() == {"error": "duplicate", "payment_id": "pay_dup"}
    [event] = server.inbox.read_after(0, 10)
    assert event.payload.encode() == first_body


def test_100_concurrent_distinct_payments(server: ReceiverServer) -> None:
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(lambda n: post(server, payload(f"pay_{n}"), client).status_code, range(100)))
    assert codes == [200] * 100
    assert server.inbox.count() == 100
    assert len({e.event_key for e in server.inbox.read_after(0, 1000)}) == 100


def test_50_concurrent_posts_of_the_same_payment(server: ReceiverServer) -> None:
    body = json.dumps(payload("pay_same")).encode()
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(lambda _: post(server, body, client).status_code, range(50)))
    assert codes.count(200) == 1 and codes.count(409) == 49
    assert server.inbox.count() == 1


def test_inbox_write_failure_is_503(tmp_path: Path) -> None:
    with ReceiverServer(make_settings(tmp_path)) as srv:
        srv.inbox.path = tmp_path / "missing-dir" / "gone" / "inbox.sqlite"  # unwritable: sqlite cannot open it
        response = post(srv, payload("pay_503"))
        assert response.status_code == 503


def test_health(server: ReceiverServer) -> None:
    assert httpx.get(server.url("/webhook/health")).json() == {"status": "ok", "inbox_events": 0}
    post(server, payload("pay_h"))
    response = httpx.get(server.url("/webhook/health"))
    assert response.status_code == 200 and response.json() == {"status": "ok", "inbox_events": 1}


def test_logs_never_show_secret_signature_or_body(server: ReceiverServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    body = json.dumps(payload("pay_log")).encode()
    headers = sign(body)
    assert post(server, body, headers=headers).status_code == 200
    post(server, body, headers={"X-Signature": "ab" * 32})
    text = caplog.text
    assert "pay_log" in text and "status=200" in text
    assert SECRET not in text and headers["X-Signature"] not in text and "ivan@example.com" not in text


# ---- property tests: malformed bodies, correctly signed -------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
field_values = json_values | st.sampled_from(["", "  ", "CONFIRMED", "2025-01-20 10:00:00", "-1", "1e400", "NaN"])


@st.composite
def mutated_payloads(draw: st.DrawFn) -> Any:
    data = payload(draw(st.text(min_size=0, max_size=12)))
    order = data["course_order"]
    if draw(st.booleans()):
        order["course_order_items"][0]["cost"] = draw(field_values)
    for key in draw(st.lists(st.sampled_from(list(order)), max_size=4)):
        if draw(st.booleans()):
            order.pop(key, None)
        else:
            order[key] = draw(field_values)
    return data


class _Shared:
    server: ReceiverServer | None = None
    client: httpx.Client | None = None
    stored = 0


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[type[_Shared]]:
    with ReceiverServer(make_settings(tmp_path_factory.mktemp("prop"))) as srv, httpx.Client(timeout=10) as client:
        _Shared.server, _Shared.client, _Shared.stored = srv, client, 0
        yield _Shared


def _check(shared: type[_Shared], body: bytes) -> None:
    assert shared.server is not None and shared.client is not None
    response = shared.client.post(shared.server.url(URL), content=body, headers=sign(body))
    assert response.status_code in {200, 202, 409, 413, 422}, response.text
    if response.status_code in {200, 202}:
        shared.stored += 1
        event = shared.server.inbox.read_after(response.json()["event_id"] - 1, 1)[0]
        assert event.payload.encode() == body
    assert shared.server.inbox.count() == shared.stored


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_random_bytes_and_json_never_500(shared: type[_Shared], body: bytes) -> None:
    _check(shared, body)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated_payloads())
def test_mutated_payloads_never_500_and_only_valid_stored(shared: type[_Shared], data: Any) -> None:
    body = json.dumps(data, ensure_ascii=bool(len(str(data)) % 2)).encode()
    _check(shared, body)


def test_settings_from_env(tmp_path: Path) -> None:
    defaults = ReceiverSettings.from_env({"PLATFORM_WEBHOOK_SECRET": "k", "INTEGRATION_SYNC_DATA_DIR": str(tmp_path)})
    assert defaults.inbox_path == tmp_path / "inbox.sqlite" and not defaults.legacy_secret_enabled
    assert defaults.timestamp_tolerance_s == 300 and defaults.max_body_bytes == 64 * 1024
    assert defaults.exclusion_reason("CONFIRMED", "x") is None and defaults.exclusion_reason("PENDING", None)
    custom = ReceiverSettings.from_env(
        {
            "PLATFORM_WEBHOOK_SECRET": "k",
            "WEBHOOK_LEGACY_SECRET_ENABLED": "true",
            "WEBHOOK_TIMESTAMP_TOLERANCE_S": "0",
            "WEBHOOK_MAX_BODY_BYTES": "1000",
            "WEBHOOK_EXCLUDED_STATUSES": "canceled, refunded",
            "WEBHOOK_EXCLUDED_DOMAINS": "Test.el-ed.ru",
            "WEBHOOK_INBOX_PATH": str(tmp_path / "x.sqlite"),
        }
    )
    assert custom.legacy_secret_enabled and custom.timestamp_tolerance_s == 0 and custom.max_body_bytes == 1000
    assert custom.exclusion_reason("PENDING", None) is None and custom.exclusion_reason("Refunded", None)
    assert custom.exclusion_reason("CONFIRMED", "test.el-ed.ru") and custom.inbox_path == tmp_path / "x.sqlite"
    assert "k" not in repr(custom.secret)
    with pytest.raises(ValueError):
        ReceiverSettings.from_env({})
    # an empty value, as in a copied .env.example, keeps the default; "none" skips no status
    empty = ReceiverSettings.from_env({"PLATFORM_WEBHOOK_SECRET": "k", "WEBHOOK_EXCLUDED_STATUSES": ""})
    assert empty.exclusion_reason("PENDING", None)
    none = ReceiverSettings.from_env({"PLATFORM_WEBHOOK_SECRET": "k", "WEBHOOK_EXCLUDED_STATUSES": "none"})
    assert none.exclusion_reason("PENDING", None) is None
