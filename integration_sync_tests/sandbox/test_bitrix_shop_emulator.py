"""The Bitrix CMS shop emulator over real HTTP: its key-protected endpoint, the export, the seeded variants
and the signed order webhooks its agent sends and re-sends."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from integration_sync.sandbox.bitrix_shop import shop_env
from integration_sync.sandbox.server import SandboxConfig, SandboxServer

KZ = timezone(timedelta(hours=5))
EPOCH = 1_796_000_000.0  # 2026-11-30, pinned so the data is byte-for-byte repeatable
CONFIG: dict[str, Any] = {
    "seed": 5,
    "abcp_users": 5,
    "days": 10,
    "kaspi_orders": 0,
    "amocrm_contacts": 0,
    "amocrm_seller_leads": 0,
    "shop_orders": 240,
    "shop_hook_time_scale": 1 / 3000,  # 1 min -> 20 ms, 5 min -> 0.1 s, 30 min -> 0.6 s
    "shop_legacy_token": False,
    "clock_epoch": None,
}
KAZAKH_LETTERS = set("әғқңөұүһі")


class Receiver:
    """Records every POST's headers and raw body; answers the given statuses in turn (the last repeats)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/bitrix/order"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, count: int, timeout: float = 10.0) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.posts) >= count:
                    return list(self.posts)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.posts)} posts, wanted {count}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(**CONFIG)) as s:
        yield s


@pytest.fixture
def env(server: SandboxServer) -> Iterator[dict[str, str]]:
    reset(server)
    yield shop_env(server.base_url)
    reset(server)  # stops the agent's queue before the next test


@pytest.fixture
def control(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.base_url}/_sandbox/bitrix-shop", timeout=10) as c:
        yield c


@pytest.fixture
def shop(env: dict[str, str]) -> Iterator[httpx.Client]:
    headers = {"X-Api-Key": env["BITRIX_WEBHOOK_KEY"]}
    with httpx.Client(base_url=env["BITRIX_WEBHOOK_URL"], headers=headers, timeout=10) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([200])
    yield r
    r.close()


def reset(server: SandboxServer, **changes: Any) -> None:
    response = httpx.post(f"{server.base_url}/_sandbox/reset", json={**CONFIG, **changes}, timeout=30)
    assert response.status_code == 200, response.text


def parse(raw: bytes) -> Any:
    """JSON that may hold non-UTF-8 bytes (kept as surrogates, as a tolerant receiver would)."""
    return json.loads(raw.decode("utf-8", "surrogateescape"))


def export(shop: httpx.Client, entity: str, page_size: int = 500, **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        response = shop.get("export", params={"entity": entity, "page": page, "page_size": page_size, **params})
        assert response.status_code == 200, response.text
        body = parse(response.content)
        items += body["items"]
        if page >= body["pages"]:
            return items
        page += 1


def signed(headers: dict[str, str], body: bytes, token: str) -> bool:
    expected = "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("x-signature", ""), expected)


def when(value: str) -> datetime:
    if "T" in value:
        return datetime.fromisoformat(value)
    return datetime.strptime(value, "%d.%m.%Y %H:%M:%S").replace(tzinfo=KZ)


# ------------------------------------------------------------------------------------------ endpoint
def test_the_key_is_required(env: dict[str, str], server: SandboxServer) -> None:
    assert env["BITRIX_WEBHOOK_URL"] == f"{server.base_url}/bitrix-shop/bitrix/tools/webhook/"
    assert env["CMS_SHOP_URL"] == f"{server.base_url}/bitrix-shop" and env["WEBHOOK_TOKEN"]
    url = env["BITRIX_WEBHOOK_URL"]
    for headers in ({}, {"X-Api-Key": env["BITRIX_WEBHOOK_KEY"] + "x"}, {"X-Api-Key": ""}):
        status = httpx.post(f"{url}status", json={"order_id": 1001, "status_id": "P"}, headers=headers)
        assert (status.status_code, status.json()["ok"]) == (401, False)
        assert httpx.get(f"{url}export", params={"entity": "orders"}, headers=headers).status_code == 401


def test_status_updates_answer_as_the_contract_says(shop: httpx.Client, control: httpx.Client) -> None:
    order = parse(control.get("/orders/1001").content)
    target = "F" if order["STATUS_ID"] != "F" else "S"
    first = shop.post("status", json={"order_id": 1001, "status_id": target})
    assert (first.status_code, first.json()) == (
        200,
        {"ok": True, "order_id": 1001, "status_id": target, "changed": True},
    )
    after = parse(control.get("/orders/1001").content)
    assert (after["STATUS_ID"], after["OLD_STATUS_ID"]) == (target, order["STATUS_ID"])
    assert when(after["DATE_UPDATE"]) >= when(order["DATE_UPDATE"])
    again = shop.post("status", json={"order_id": 1001, "status_id": target})
    assert (again.status_code, again.json()["changed"]) == (200, False)
    missing = shop.post("status", json={"order_id": 999_999, "status_id": "P"})
    assert (missing.status_code, missing.json()) == (404, {"ok": False, "error": "order not found"})
    unknown = shop.post("status", json={"order_id": 1001, "status_id": "X"})
    assert (unknown.status_code, unknown.json()) == (422, {"ok": False, "error": "unknown status X"})
    assert shop.post("status", json={"order_id": 1001, "status_id": "C"}).status_code == 200  # the shop's own
    assert shop.post("status", content=b"{not json").status_code == 400
    assert shop.post("status", json={"order_id": "1001", "status_id": "P"}).status_code == 400


def test_export_pages_are_stable_and_ordered_by_id(shop: httpx.Client) -> None:
    everything = export(shop, "orders")
    assert len(everything) == 240
    first = shop.get("export", params={"entity": "orders", "page": 1, "page_size": 7})
    body = parse(first.content)
    assert (body["page"], body["pages"], body["total"], len(body["items"])) == (1, math.ceil(240 / 7), 240, 7)
    paged = export(shop, "orders", page_size=7)
    assert [int(o["ID"]) for o in paged] == sorted(int(o["ID"]) for o in everything)
    assert paged == everything
    past = parse(shop.get("export", params={"entity": "orders", "page": 99, "page_size": 7}).content)
    assert past["items"] == [] and past["total"] == 240
    bads: list[dict[str, str | int]] = [
        {"entity": "orders", "page_size": 501},
        {"entity": "orders", "page_size": 0},
        {"entity": "orders", "page": 0},
        {"entity": "deals"},
        {"entity": "orders", "date_from": "30.11.2026"},
    ]
    for bad in bads:
        response = shop.get("export", params=bad)
        assert (response.status_code, response.json()["ok"]) == (400, False), bad
    assert shop.get("export", params={"entity": "orders", "page_size": 500}).status_code == 200


def test_export_filters_on_the_kazakhstan_day(shop: httpx.Client) -> None:
    everything = export(shop, "orders")
    days = sorted({when(o["DATE_INSERT"]).astimezone(KZ).date() for o in everything})
    lo, hi = days[2], days[4]
    window = export(shop, "orders", date_from=lo.isoformat(), date_to=hi.isoformat())
    expected = [o for o in everything if lo <= when(o["DATE_INSERT"]).astimezone(KZ).date() <= hi]
    assert window == expected and 0 < len(window) < len(everything)
    users = export(shop, "users")
    assert users and {"ID", "NAME", "LAST_NAME", "EMAIL", "PERSONAL_PHONE", "DATE_REGISTER"} == set(users[0])
    year = export(shop, "users", date_from=days[0].replace(year=days[0].year - 1).isoformat())
    assert 0 < len(year) < len(users)
    assert all(when(u["DATE_REGISTER"]).year >= days[0].year - 1 for u in year)
    products = export(shop, "products")
    assert {p["ACTIVE"] for p in products} == {"Y", "N"} and all(isinstance(p["PRICE"], str) for p in products)


# ------------------------------------------------------------------------------------------ the seed
def test_the_seed_carries_every_variant_the_shop_sends(shop: httpx.Client) -> None:
    response = shop.get("export", params={"entity": "orders", "page_size": 500})
    with pytest.raises(UnicodeDecodeError):
        response.content.decode("utf-8")  # names from the latin1 days, as raw bytes
    orders = parse(response.content)["items"]
    products = {p["ID"] for p in export(shop, "products")}
    props = [o["PROPERTIES"] for o in orders]
    assert any("PHONE" not in p for p in props) and any("EMAIL" not in p for p in props)
    assert any(p.get("PHONE", "").startswith("8") for p in props)
    assert any(str(o["PRICE"]) in ("0", "0.00") and o["BASKET"] for o in orders)
    unknown = [o for o in orders if any(int(b["PRODUCT_ID"]) not in products for b in o["BASKET"])]
    numbers = [o["ACCOUNT_NUMBER"] for o in orders]
    assert unknown and len(set(numbers)) < len(numbers)
    assert any(not o["BASKET"] for o in orders)
    names = "".join(p["NAME"] for p in props) + "".join(u["NAME"] + u["LAST_NAME"] for u in export(shop, "users"))
    assert set(names.lower()) >= KAZAKH_LETTERS
    raw = [p["NAME"] for p in props if any("\udc80" <= ch <= "\udcff" for ch in p["NAME"])]
    assert raw
    assert any("T" not in o["DATE_INSERT"] for o in orders) and any(isinstance(o["ID"], str) for o in orders)
    assert any(isinstance(o["PRICE"], int | float) for o in orders) and any(o["STATUS_ID"] == "C" for o in orders)
    assert all(o["CURRENCY"] == "KZT" for o in orders)
    broken = [
        o
        for o in orders
        if not o["BASKET"]
        or str(o["PRICE"]) in ("0", "0.00")
        or numbers.count(o["ACCOUNT_NUMBER"]) > 1
        or o in unknown
        or o["PROPERTIES"]["NAME"] in raw
    ]
    assert 0.02 <= len(broken) / len(orders) <= 0.12


def test_the_data_is_deterministic_by_seed(server: SandboxServer, env: dict[str, str]) -> None:
    def snapshot(seed: int) -> bytes:
        reset(server, seed=seed, clock_epoch=EPOCH)
        parts = []
        for entity in ("orders", "users", "products"):
            params = {"entity": entity, "page_size": 500}
            parts.append(httpx.get(f"{env['BITRIX_WEBHOOK_URL']}export", params=params, headers=key(env)).content)
        return b"\n".join(parts)

    assert snapshot(5) == snapshot(5)
    assert snapshot(6) != snapshot(5)


def key(env: dict[str, str]) -> dict[str, str]:
    return {"X-Api-Key": env["BITRIX_WEBHOOK_KEY"]}


# ------------------------------------------------------------------------------------------ webhooks
def test_a_new_order_is_signed_and_resent_until_2xx(
    env: dict[str, str], control: httpx.Client, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503, 404, 200]
    assert control.post("/subscribe", json={"url": receiver.url}).status_code == 200
    placed = control.post("/orders", json={"count": 1}).json()["placed"]
    posts = receiver.wait(4)
    time.sleep(1.0)  # 4 x the longest delay used: nothing more comes after the 2xx
    assert len(receiver.posts) == 4
    bodies = {body for _, body in posts}
    assert len(bodies) == 1  # the same queued event each time
    for headers, body in posts:
        assert headers["content-type"] == "application/json"
        assert signed(headers, body, env["WEBHOOK_TOKEN"])
        assert not signed(headers, body, env["WEBHOOK_TOKEN"] + "x")
    event = parse(posts[0][1])
    assert (event["event"], event["is_new"]) == ("order.saved", True)
    assert int(event["order"]["ID"]) == placed[0] and event["order"]["OLD_STATUS_ID"] is None
    log = control.get("/deliveries").json()
    assert [(a["attempt"], a["status"], a["ok"]) for a in log] == [
        (1, 500, False),
        (2, 503, False),
        (3, 404, False),
        (4, 200, True),
    ]
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(log)]
    assert gaps[0] < gaps[1] < gaps[2]  # 1, 5, 30 min, scaled


def test_every_save_sends_a_new_version(env: dict[str, str], shop: httpx.Client, control: httpx.Client) -> None:
    receiver = Receiver([200])
    try:
        control.post("/subscribe", json={"url": receiver.url})
        order_id = control.post("/orders", json={"count": 1}).json()["placed"][0]
        assert control.post(f"/orders/{order_id}/status", json={"payed": "Y"}).status_code == 200
        assert control.post(f"/orders/{order_id}/status", json={"status_id": "P"}).status_code == 200
        assert shop.post("status", json={"order_id": order_id, "status_id": "S"}).json()["changed"] is True
        assert shop.post("status", json={"order_id": order_id, "status_id": "S"}).json()["changed"] is False
        assert control.post(f"/orders/{order_id}/status", json={"status_id": "Z"}).status_code == 422
        events = [parse(body) for _, body in receiver.wait(4)]
        time.sleep(0.3)
        assert len(receiver.posts) == 4  # no save, no webhook
        orders = [e["order"] for e in events]
        assert [(o["STATUS_ID"], o["OLD_STATUS_ID"], o["PAYED"]) for o in orders] == [
            ("N", None, "N"),
            ("N", None, "Y"),
            ("P", "N", "Y"),
            ("S", "P", "Y"),
        ]
        assert [e["is_new"] for e in events] == [True, False, False, False]
        updates = [when(o["DATE_UPDATE"]) for o in orders]
        assert updates == sorted(updates)
        assert all(signed(h, b, env["WEBHOOK_TOKEN"]) for h, b in receiver.posts)
        assert control.delete("/subscribe").status_code == 200
        control.post(f"/orders/{order_id}/status", json={"status_id": "F"})
        time.sleep(0.3)
        assert len(receiver.posts) == 4  # unsubscribed
    finally:
        receiver.close()


def test_a_latin1_name_goes_out_as_raw_bytes_and_is_signed(
    env: dict[str, str], shop: httpx.Client, control: httpx.Client, receiver: Receiver
) -> None:
    raw_export = shop.get("export", params={"entity": "orders", "page_size": 500}).content
    bad = [o for o in parse(raw_export)["items"] if any("\udc80" <= ch <= "\udcff" for ch in o["PROPERTIES"]["NAME"])]
    order_id = int(bad[0]["ID"])
    target = "F" if bad[0]["STATUS_ID"] != "F" else "S"
    control.post("/subscribe", json={"url": receiver.url})
    assert shop.post("status", json={"order_id": order_id, "status_id": target}).status_code == 200
    headers, body = receiver.wait(1)[0]
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    assert signed(headers, body, env["WEBHOOK_TOKEN"])
    assert parse(body)["order"]["PROPERTIES"]["NAME"] == bad[0]["PROPERTIES"]["NAME"]


def test_legacy_mode_puts_the_token_in_the_body(
    server: SandboxServer, env: dict[str, str], control: httpx.Client, receiver: Receiver
) -> None:
    reset(server, shop_legacy_token=True)
    control.post("/subscribe", json={"url": receiver.url})
    assert control.post("/ping").status_code == 200
    control.post("/orders", json={"count": 1})
    posts = receiver.wait(2)
    assert all("x-signature" not in h for h, _ in posts)
    events = [parse(b) for _, b in posts]
    assert [e["event"] for e in events] == ["test", "order.saved"]
    assert all(e["token"] == env["WEBHOOK_TOKEN"] for e in events)
    reset(server)
    control.post("/subscribe", json={"url": receiver.url})
    control.post("/ping")
    headers, body = receiver.wait(3)[2]
    assert signed(headers, body, env["WEBHOOK_TOKEN"]) and "token" not in parse(body)
