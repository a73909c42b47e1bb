"""`POST /webhooks/bitrix/order` over real HTTP (httpx against a `ReceiverServer` on loopback)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings

TOKEN = "cms-order-hook-token-0123456789"
URL = "/webhooks/bitrix/order"
ORDER: dict[str, Any] = {
    "event": "order.saved",
    "is_new": True,
    "sent_at": "2026-11-30T14:05:03+05:00",
    "order": {
        "ID": 1234,
        "ACCOUNT_NUMBER": "1234",
        "STATUS_ID": "N",
        "OLD_STATUS_ID": None,
        "PRICE": "15000.00",
        "CURRENCY": "KZT",
        "USER_ID": 57,
        "PAYED": "N",
        "CANCELED": "N",
        "DATE_INSERT": "2026-11-30T14:05:00+05:00",
        "DATE_UPDATE": "2026-11-30T14:05:00+05:00",
        "DATE_STATUS": "2026-11-30T14:05:00+05:00",
        "PROPERTIES": {
            "NAME": "Айгерим",
            "PHONE": "+7 701 123 45 67",
            "EMAIL": "a@example.kz",
            "ADDRESS": "Алматы, ул. Абая 1",
            "DELIVERY": "Курьер",
            "DELIVERY_DATE": "2026-12-01",
        },
        "BASKET": [{"PRODUCT_ID": 101, "NAME": "Букет «Нежность»", "QUANTITY": 1, "PRICE": "15000.00"}],
    },
}


def order(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(ORDER)
    data["order"].update(changes)
    return data


def sign(body: bytes, token: str = TOKEN) -> dict[str, str]:
    return {"X-Signature": "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()}


def encode(data: Any) -> bytes:
    return data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()


def post(server: ReceiverServer, data: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    body = encode(data)
    return httpx.post(server.url(URL), content=body, headers=sign(body) if headers is None else headers, timeout=10)


def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token_in_body: bool = False) -> ReceiverServer:
    monkeypatch.setenv("WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("WEBHOOK_TOKEN_IN_BODY", "true" if token_in_body else "false")
    return ReceiverServer(ReceiverSettings(secret="", inbox_path=tmp_path / "inbox.sqlite", max_body_bytes=8192))


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ReceiverServer]:
    with start(tmp_path, monkeypatch) as srv:
        yield srv


def test_signed_order_is_accepted_and_stored(server: ReceiverServer, caplog: pytest.LogCaptureFixture) -> None:
    body = encode(ORDER)
    with caplog.at_level(logging.INFO, logger="integration_sync.webhooks"):
        response = post(server, body)
    assert response.status_code == 200 and response.json() == {"status": "accepted", "event_id": 1}
    [event] = server.inbox.read_after(0, 10)
    assert event.source == "bitrix_order" and event.payload.encode() == body and event.reason is None
    assert event.event_key.startswith("bitrix_order:1234:2026-11-30T09:05:00Z:")
    assert len(event.event_key.rsplit(":", 1)[1]) == 12
    assert event.event_date == "2026-11-30"
    assert "status=200 order_id=1234" in caplog.text and TOKEN not in caplog.text and "Айгерим" not in caplog.text


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Signature": "sha256=" + "00" * 32}, sign(b"other"), sign(encode(ORDER), token="wrong")],
    ids=["missing", "zeros", "other-body", "wrong-token"],
)
def test_bad_or_missing_signature_is_401_and_nothing_stored(server: ReceiverServer, headers: dict[str, str]) -> None:
    response = post(server, ORDER, headers=headers)
    assert response.status_code == 401 and TOKEN not in response.text
    assert server.inbox.count() == 0


def test_token_in_body_only_behind_the_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_token = encode({**ORDER, "token": TOKEN})
    with start(tmp_path / "off", monkeypatch) as off:
        assert post(off, with_token, headers={}).status_code == 401
        assert off.inbox.count() == 0
    with start(tmp_path / "on", monkeypatch, token_in_body=True) as on:
        wrong = post(on, encode({**ORDER, "token": TOKEN + "x"}), headers={})
        assert wrong.status_code == 401 and on.inbox.count() == 0
        assert post(on, ORDER, headers={}).status_code == 401  # neither signed nor with the token
        response = post(on, with_token, headers={})
        assert response.status_code == 200 and response.json()["status"] == "accepted"
        [event] = on.inbox.read_after(0, 10)
        assert TOKEN not in event.payload and json.loads(event.payload)["order"]["ID"] == 1234
        signed = post(on, encode({**ORDER, "token": TOKEN, "is_new": False}))  # signed and with the token
        assert signed.json()["status"] == "duplicate"  # the same order
    with start(tmp_path / "signed", monkeypatch) as srv:
        assert post(srv, with_token).json()["status"] == "accepted"
        assert TOKEN not in srv.inbox.read_after(0, 10)[0].payload


def test_ping_answers_ok_and_stores_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with start(tmp_path, monkeypatch, token_in_body=True) as srv:
        signed = post(srv, {"event": "test", "data": {}})
        seed_style = post(srv, {"event": "test", "token": TOKEN, "data": {}}, headers={})
        assert signed.status_code == 200 and signed.json() == {"status": "ok"}
        assert seed_style.status_code == 200 and seed_style.json() == {"status": "ok"}
        assert post(srv, {"event": "test", "token": "nope"}, headers={}).status_code == 401
        assert srv.inbox.count() == 0


def test_oversized_body_is_413(server: ReceiverServer) -> None:
    big = order(PROPERTIES={"ADDRESS": "x" * 9000})
    assert post(server, big).status_code == 413
    body = encode(big)
    chunked = httpx.post(server.url(URL), content=iter([body[:4000], body[4000:]]), headers=sign(body), timeout=10)
    assert chunked.status_code == 413 and "content-length" not in chunked.request.headers
    assert server.inbox.count() == 0


def test_declared_oversize_is_413_before_the_body_is_read(server: ReceiverServer) -> None:
    host, port = server.url("/").split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:  # the body never comes
        conn.sendall(f"POST {URL} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode())
        assert conn.recv(64).startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[" * 2000 + b"]" * 2000,
        json.dumps(order(USER_ID=10**30)).encode(),
        b'{"order": {"ID": 1' + b"0" * 5000 + b"}}",
        json.dumps(order(PROPERTIES={"NAME": "\ud800"})).encode(),
        b'{"order": {"ID": 1, "PRICE": NaN}}',
        json.dumps(order(PRICE="abc")).encode(),
        json.dumps(order(PRICE="-5")).encode(),
        json.dumps(order(ID=True)).encode(),
        json.dumps(order(ID="12a")).encode(),
        json.dumps(order(DATE_UPDATE="yesterday")).encode(),
        json.dumps({"event": "order.deleted", "order": ORDER["order"]}).encode(),
        encode(order(ACCOUNT_NUMBER="@@", CURRENCY="##")).replace(b"@@", b"\xc0").replace(b"##", b"\\udc85"),
        b"[]",
        b'"just a string"',
    ],
    ids=[
        "malformed",
        "deep",
        "int-over-int64",
        "huge-int",
        "lone-surrogate",
        "nan",
        "money-text",
        "negative-money",
        "bool-id",
        "letters-id",
        "bad-date",
        "unknown-event",
        "escaped-surrogate-beside-cp1251",
        "array",
        "string",
    ],
)
def test_hostile_and_malformed_bodies_are_422(server: ReceiverServer, body: bytes) -> None:
    response = post(server, body)
    assert response.status_code == 422, response.text
    assert "error" in response.json() and server.inbox.count() == 0


def test_validation_details_name_the_field(server: ReceiverServer) -> None:
    response = post(server, order(PRICE="abc"))
    assert response.status_code == 422
    assert {"loc": ["order", "PRICE"], "msg": response.json()["details"][0]["msg"]} in response.json()["details"]


def test_tolerant_shapes_are_accepted(server: ReceiverServer) -> None:
    shaped = order(
        ID="1234", USER_ID="57", PRICE=15000, DATE_INSERT="30.11.2026 02:05:00", DATE_UPDATE="30.11.2026 02:05:00"
    )
    del shaped["order"]["PROPERTIES"]["PHONE"]
    shaped["order"]["BASKET"] = []
    response = post(server, shaped)
    assert response.status_code == 200, response.text
    [event] = server.inbox.read_after(0, 10)
    # digit strings are ints, no offset means UTC+5 (02:05 in Almaty is 21:05 UTC the day before)
    assert event.event_key.startswith("bitrix_order:1234:2026-11-29T21:05:00Z:")
    assert event.event_date == "2026-11-30"  # the order's day in Kazakhstan, not in UTC
    same_numbers = order(ID=1234, USER_ID=57, PRICE="15000.00", DATE_INSERT="2026-11-30T02:05:00+05:00")
    same_numbers["order"].update(DATE_UPDATE="2026-11-30T02:05:00+05:00", BASKET=[])
    del same_numbers["order"]["PROPERTIES"]["PHONE"]
    assert post(server, same_numbers).json() == {"status": "duplicate"}  # the same order, formatted otherwise


def test_new_version_redelivery_and_same_second_saves(server: ReceiverServer) -> None:
    first = post(server, ORDER)
    assert first.json() == {"status": "accepted", "event_id": 1}
    again = post(server, ORDER)
    assert again.status_code == 200 and again.json() == {"status": "duplicate"}
    assert server.inbox.count() == 1
    paid = post(server, order(STATUS_ID="P", OLD_STATUS_ID="N"))  # saved again within the same second
    assert paid.status_code == 200 and paid.json()["status"] == "accepted"
    later = post(server, order(DATE_UPDATE="2026-11-30T15:00:00+05:00"))
    assert later.json()["status"] == "accepted"
    keys = [e.event_key for e in server.inbox.read_after(0, 10)]
    assert len(keys) == 3 and len(set(keys)) == 3
    assert keys[0].rsplit(":", 1)[0] == keys[1].rsplit(":", 1)[0]  # same DATE_UPDATE, another content hash


def test_non_utf8_text_is_read_as_cp1251_and_marked(server: ReceiverServer) -> None:
    body = encode(order(PROPERTIES={"NAME": "@@"})).replace(b"@@", "Айгерим".encode("cp1251"))
    response = post(server, body)
    assert response.status_code == 200, response.text
    [event] = server.inbox.read_after(0, 10)
    assert json.loads(event.payload)["order"]["PROPERTIES"]["NAME"] == "Айгерим"
    assert event.reason is not None and "order.PROPERTIES.NAME" in event.reason


def test_unwritable_inbox_is_503(server: ReceiverServer) -> None:
    server.app.state.writer.close()
    server.inbox.path.unlink()
    server.inbox.path.mkdir()  # a directory where the file was: SQLite cannot open it
    response = post(server, ORDER)
    assert response.status_code == 503 and response.json()["error"].startswith("inbox unavailable")
