"""The Kaspi.kz Shop API v2 emulator, exercised over real HTTP with plain httpx."""

from __future__ import annotations

import base64
import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from integration_sync.sandbox.env import sandbox_env
from integration_sync.sandbox.server import SandboxConfig, SandboxServer

EPOCH = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC, pinned so the data is deterministic
DAY = 86_400_000
KZ = timezone(timedelta(hours=5))
JSONAPI = "application/vnd.api+json"
API = "/kaspi/shop/api/v2"
TOKEN = "sandbox-kaspi-token"
HEADERS = {"X-Auth-Token": TOKEN, "Content-Type": JSONAPI, "Accept": JSONAPI}
BASE_RESET: dict[str, Any] = {
    "seed": 5,
    "days": 30,
    "kaspi_orders": 300,
    "kaspi_days": None,
    "kaspi_max_window_days": 14,
    "kaspi_window_mode": "width",
    "kaspi_page_size_max": 100,
    "kaspi_page_size_over": "reject",
    "kaspi_require_paging": True,
    "kaspi_rate": 1000.0,
    "kaspi_burst": 1000,
    "kaspi_auth_error_status": 401,
    "kaspi_strict_media_types": True,
    "kaspi_no_user_agent_delay_s": 30.0,
    "kaspi_code_lookup_without_date": False,
    "kaspi_repeat_customers": 0.3,
    "kaspi_offer_missing_share": 0.1,
    "clock_epoch": EPOCH,
}
STATUSES = {
    "APPROVED_BY_BANK",
    "ACCEPTED_BY_MERCHANT",
    "COMPLETED",
    "CANCELLED",
    "CANCELLING",
    "KASPI_DELIVERY_RETURN_REQUESTED",
    "RETURN_ACCEPTED_BY_MERCHANT",
    "RETURNED",
}


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(**BASE_RESET)) as srv:
        yield srv


@pytest.fixture
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        assert reset(http).status_code == 200
        yield http


def reset(client: httpx.Client, **changes: Any) -> httpx.Response:
    return client.post("/_sandbox/reset", json={**BASE_RESET, **changes})


def now_ms(server: SandboxServer) -> int:
    return int(server.sandbox.clock.now() * 1000)


def get(
    client: httpx.Client, path: str, params: Mapping[str, Any] | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return client.get(API + path, params=dict(params or {}), headers=HEADERS if headers is None else headers)


def orders(
    client: httpx.Client, ge: int | None, le: int | None = None, extra: Mapping[str, Any] | None = None
) -> httpx.Response:
    query: dict[str, Any] = {"page[number]": 0, "page[size]": 100, **(extra or {})}
    if ge is not None:
        query["filter[orders][creationDate][$ge]"] = ge
    if le is not None:
        query["filter[orders][creationDate][$le]"] = le
    return get(client, "/orders", query)


def dump(client: httpx.Client) -> list[dict[str, Any]]:
    body: list[dict[str, Any]] = client.get("/_sandbox/kaspi/orders").json()
    return body


def all_pages(
    client: httpx.Client, ge: int, le: int, size: int = 100, extra: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    number = 0
    while True:
        body = orders(client, ge, le, {"page[number]": number, "page[size]": size, **(extra or {})}).json()
        rows += body["data"]
        number += 1
        if number >= body["meta"]["pageCount"]:
            return rows


def errors_title(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"errors"} and len(body["errors"]) == 1
    title: str = body["errors"][0]["title"]
    return title


# ------------------------------------------------------------------------------------ auth, headers
@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_missing_or_wrong_token_is_401_json_api(client: httpx.Client, server: SandboxServer, token: str | None) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "X-Auth-Token"}
    if token is not None:
        headers["X-Auth-Token"] = token
    response = get(
        client, "/orders", headers=headers, params={"filter[orders][creationDate][$ge]": now_ms(server) - DAY}
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(JSONAPI)
    assert errors_title(response)


def test_auth_status_is_configurable(client: httpx.Client, server: SandboxServer) -> None:
    reset(client, kaspi_auth_error_status=403)
    response = get(client, "/orders", headers={"X-Auth-Token": "nope", "Content-Type": JSONAPI})
    assert response.status_code == 403


def test_answers_are_json_api(client: httpx.Client, server: SandboxServer) -> None:
    response = orders(client, now_ms(server) - DAY)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == JSONAPI
    assert set(response.json()) == {"data", "included", "meta"}


def test_request_media_types_are_enforced_and_configurable(client: httpx.Client, server: SandboxServer) -> None:
    ge = {"page[number]": 0, "page[size]": 10, "filter[orders][creationDate][$ge]": now_ms(server) - DAY}
    no_ct = get(client, "/orders", headers={"X-Auth-Token": TOKEN}, params=ge)
    assert no_ct.status_code == 415 and errors_title(no_ct)
    plain_json = get(client, "/orders", headers={"X-Auth-Token": TOKEN, "Content-Type": "application/json"}, params=ge)
    assert plain_json.status_code == 415
    html_only = get(client, "/orders", headers={**HEADERS, "Accept": "text/html"}, params=ge)
    assert html_only.status_code == 406
    with_charset = {**HEADERS, "Content-Type": JSONAPI + ";charset=UTF-8", "Accept": "*/*"}
    assert get(client, "/orders", headers=with_charset, params=ge).status_code == 200
    reset(client, kaspi_strict_media_types=False)
    assert get(client, "/orders", headers={"X-Auth-Token": TOKEN}, params=ge).status_code == 200


def test_a_request_without_user_agent_hangs_then_loses_its_connection(
    client: httpx.Client, server: SandboxServer
) -> None:
    reset(client, kaspi_no_user_agent_delay_s=0.3)
    params = {"page[number]": 0, "page[size]": 10, "filter[orders][creationDate][$ge]": now_ms(server) - DAY}
    with httpx.Client(base_url=server.base_url, headers=HEADERS) as bare:
        del bare.headers["user-agent"]
        with pytest.raises(httpx.ReadTimeout):
            bare.get(API + "/orders", params=params, timeout=0.1)
        with pytest.raises(httpx.TransportError):
            bare.get(API + "/orders", params=params, timeout=5)
        assert bare.get(API + "/orders", params=params, headers={"User-Agent": "x/1"}, timeout=5).status_code == 200


# ----------------------------------------------------------------------------------- GET /orders rules
def test_creation_date_ge_is_required_with_the_vendor_text(client: httpx.Client, server: SandboxServer) -> None:
    response = orders(client, None, now_ms(server))
    assert response.status_code == 400
    assert response.json() == {"errors": [{"title": "Required filter [orders][creationDate][$ge] is empty."}]}
    code = dump(client)[-1]["attributes"]["code"]
    assert orders(client, None, extra={"filter[orders][code]": code}).status_code == 400
    reset(client, kaspi_code_lookup_without_date=True)
    by_code = orders(client, None, extra={"filter[orders][code]": code}).json()
    assert [o["attributes"]["code"] for o in by_code["data"]] == [code]


@pytest.mark.parametrize("bad", ["yesterday", "1.5e12", "-5"])
def test_malformed_dates_are_400(client: httpx.Client, bad: str) -> None:
    response = get(
        client, "/orders", params={"page[number]": 0, "page[size]": 10, "filter[orders][creationDate][$ge]": bad}
    )
    assert response.status_code == 400 and errors_title(response)


def test_paging_parameters_are_required_validated_and_capped(client: httpx.Client, server: SandboxServer) -> None:
    ge = now_ms(server) - 13 * DAY
    for missing in ("page[number]", "page[size]"):
        params = {"page[number]": 0, "page[size]": 10, "filter[orders][creationDate][$ge]": ge}
        del params[missing]
        response = get(client, "/orders", params=params)
        assert response.status_code == 400 and missing in errors_title(response)
    for bad in ({"page[size]": 101}, {"page[size]": 0}, {"page[size]": "ten"}, {"page[number]": -1}):
        assert orders(client, ge, extra=bad).status_code == 400, bad
    assert len(orders(client, ge, extra={"page[size]": 100}).json()["data"]) == 100

    reset(client, kaspi_page_size_over="clamp")
    clamped = orders(client, ge, extra={"page[size]": 500}).json()
    assert len(clamped["data"]) == 100
    assert clamped["meta"]["pageCount"] == -(-clamped["meta"]["totalCount"] // 100)

    reset(client, kaspi_require_paging=False)
    assert get(client, "/orders", params={"filter[orders][creationDate][$ge]": ge}).status_code == 200


def test_window_width_is_capped_at_14_days(client: httpx.Client, server: SandboxServer) -> None:
    le = now_ms(server) - 3 * DAY
    assert orders(client, le - 14 * DAY, le).status_code == 200
    too_wide = orders(client, le - 14 * DAY - 1, le)
    assert too_wide.status_code == 400 and "14" in errors_title(too_wide)
    # without $le the window runs to now
    assert orders(client, now_ms(server) - 15 * DAY).status_code == 400
    assert orders(client, now_ms(server) - 13 * DAY).status_code == 200
    # an old window of 10 days is fine in width mode ...
    old = now_ms(server) - 25 * DAY
    assert orders(client, old, old + 10 * DAY).status_code == 200


def test_lookback_mode_measures_from_now(client: httpx.Client, server: SandboxServer) -> None:
    reset(client, kaspi_window_mode="lookback")
    old = now_ms(server) - 25 * DAY
    assert orders(client, old, old + 10 * DAY).status_code == 400
    assert orders(client, now_ms(server) - 13 * DAY, now_ms(server) - 12 * DAY).status_code == 200
    reset(client, kaspi_max_window_days=3)
    assert orders(client, now_ms(server) - 4 * DAY).status_code == 400


def test_paging_covers_the_window_in_creation_order(client: httpx.Client, server: SandboxServer) -> None:
    le = now_ms(server)
    ge = le - 14 * DAY
    expected = [o for o in dump(client) if ge <= o["attributes"]["creationDate"] <= le]
    assert len(expected) > 100
    first = orders(client, ge, le, extra={"page[size]": 37}).json()
    assert first["meta"] == {"pageCount": -(-len(expected) // 37), "totalCount": len(expected)}
    rows = all_pages(client, ge, le, size=37)
    assert rows == expected
    dates = [o["attributes"]["creationDate"] for o in rows]
    assert dates == sorted(dates)
    beyond = orders(client, ge, le, extra={"page[number]": 99, "page[size]": 37}).json()
    assert beyond["data"] == [] and beyond["meta"]["totalCount"] == len(expected)


def test_same_instant_orders_keep_a_stable_order(client: httpx.Client, server: SandboxServer) -> None:
    at = now_ms(server) - 5 * DAY
    codes = client.post("/_sandbox/kaspi/orders", json={"count": 5, "created_at": at}).json()["codes"]
    for _ in range(2):
        got = [o["attributes"]["code"] for o in orders(client, at, at + 4).json()["data"]]
        assert got == codes


def test_filters_state_status_code_and_delivery_type(client: httpx.Client, server: SandboxServer) -> None:
    le = now_ms(server)
    ge = le - 14 * DAY
    everything = all_pages(client, ge, le)
    for state in ("NEW", "PICKUP", "ARCHIVE"):
        picked = all_pages(client, ge, le, extra={"filter[orders][state]": state})
        assert picked == [o for o in everything if o["attributes"]["state"] == state]
    completed = all_pages(client, ge, le, extra={"filter[orders][status]": "COMPLETED"})
    assert completed and completed == [o for o in everything if o["attributes"]["status"] == "COMPLETED"]
    code = everything[7]["attributes"]["code"]
    assert all_pages(client, ge, le, extra={"filter[orders][code]": code}) == [everything[7]]
    pickups = all_pages(client, ge, le, extra={"filter[orders][deliveryType]": "PICKUP"})
    assert pickups and {o["attributes"]["deliveryMode"] for o in pickups} <= {
        "DELIVERY_PICKUP",
        "DELIVERY_REGIONAL_PICKUP",
    }
    for bad in ({"filter[orders][state]": "NEW,PICKUP"}, {"filter[orders][status]": "DONE"}):
        assert orders(client, ge, le, extra=bad).status_code == 400


def test_include_user_adds_the_customers(client: httpx.Client, server: SandboxServer) -> None:
    le = now_ms(server)
    plain = orders(client, le - 14 * DAY, le).json()
    assert plain["included"] == []
    body = orders(client, le - 14 * DAY, le, extra={"include[orders]": "user"}).json()
    assert body["data"] == plain["data"]
    included = {c["id"]: c for c in body["included"]}
    assert len(included) == len(body["included"])
    for order in body["data"]:
        ref = order["relationships"]["user"]["data"]
        assert ref["type"] == "customers"
        customer = included[ref["id"]]
        assert customer["type"] == "customers" and customer["relationships"] == {}
        attributes = order["attributes"]["customer"]
        assert customer["attributes"] == {k: v for k, v in attributes.items() if k != "id"}
    assert orders(client, le - DAY, le, extra={"include[orders]": "entries"}).status_code == 400


# ----------------------------------------------------------------------------------------- documents
def test_orders_look_like_the_guide(client: httpx.Client, server: SandboxServer) -> None:
    everything = dump(client)
    assert len(everything) == 300
    anchor = now_ms(server)
    first_day = datetime.fromtimestamp(EPOCH, KZ).replace(hour=0, minute=0, second=0, microsecond=0)
    earliest = int((first_day - timedelta(days=29)).timestamp() * 1000)
    codes = [o["attributes"]["code"] for o in everything]
    assert len(set(codes)) == 300
    for order in everything:
        attributes = order["attributes"]
        assert order["type"] == "orders"
        assert order["id"] == base64.b64encode(attributes["code"].encode()).decode()
        assert re.fullmatch(r"\d{9}", attributes["code"])
        assert earliest <= attributes["creationDate"] <= anchor
        assert attributes["status"] in STATUSES
        assert attributes["approvedByBankDate"] > attributes["creationDate"]
        assert attributes["paymentMode"] in ("PAY_WITH_CREDIT", "PREPAID")
        assert isinstance(attributes["totalPrice"], float)
        customer = attributes["customer"]
        assert set(customer) in ({"id", "name", "cellPhone", "firstName", "lastName"}, {"id", "name", "cellPhone"})
        assert re.fullmatch(r"7[07]\d{8}", customer["cellPhone"])
        first = customer.get("firstName") or str(customer["name"]).split()[0]
        assert re.fullmatch(r"[А-ЯЁӘІҢҒҮҰҚӨҺ][а-яёәіңғүұқөһ]+", first)
        if attributes["deliveryMode"] in ("DELIVERY_PICKUP", "DELIVERY_REGIONAL_PICKUP"):
            assert "deliveryAddress" not in attributes
        else:
            address = attributes["deliveryAddress"]
            assert address["formattedAddress"].startswith(address["town"] + ", ")
        assert set(order["relationships"]) == {"user", "entries"}
        assert order["links"]["self"].endswith(f"{API}/orders/{order['id']}")
    # state follows status
    for order in everything:
        a = order["attributes"]
        if a["status"] in ("COMPLETED", "CANCELLED", "RETURNED", "RETURN_ACCEPTED_BY_MERCHANT"):
            assert a["state"] == "ARCHIVE"
        elif a["status"] == "APPROVED_BY_BANK":
            assert a["state"] == ("SIGN_REQUIRED" if a["signatureRequired"] else "NEW")
        elif a["status"] == "ACCEPTED_BY_MERCHANT":
            assert a["state"] in ("PICKUP", "DELIVERY", "KASPI_DELIVERY")
    statuses = Counter(o["attributes"]["status"] for o in everything)
    assert statuses["COMPLETED"] > 100 and statuses["CANCELLED"] > 5 and statuses["APPROVED_BY_BANK"] > 0
    # orders spread over the whole period, not bunched
    days = {(anchor - o["attributes"]["creationDate"]) // DAY for o in everything}
    assert len(days) >= 25


def test_seeded_orders_carry_every_shape_real_kaspi_sends(client: httpx.Client, server: SandboxServer) -> None:
    everything = [o["attributes"] for o in dump(client)]
    customers = Counter(
        "name only" if "firstName" not in c else ("split, name too" if c["name"] else "split, name null")
        for c in (a["customer"] for a in everything)
    )
    assert min(customers[k] for k in ("name only", "split, name too", "split, name null")) >= 20, customers
    assert all(str(a["customer"]["name"]).strip() for a in everything if "firstName" not in a["customer"])
    assert Counter("assembled" in a for a in everything)[False] > 0  # optional
    assert {a["assembled"] for a in everything if "assembled" in a} == {True, False}
    kaspi_pickup = [a for a in everything if a["isKaspiDelivery"] and a["deliveryMode"] == "DELIVERY_PICKUP"]
    assert kaspi_pickup and all(
        a["state"] in ("KASPI_DELIVERY", "NEW", "SIGN_REQUIRED", "ARCHIVE") for a in kaspi_pickup
    )
    delivered = [a["kaspiDelivery"] for a in everything if a["isKaspiDelivery"]]
    assert all("kaspiDelivery" not in a for a in everything if not a["isKaspiDelivery"])
    with_waybill = [d for d in delivered if d["waybill"]]
    assert with_waybill and any(d["waybill"] is None for d in delivered)
    assert all(d["courierTransmissionDate"] and d["waybillNumber"] for d in with_waybill)
    assert any(d["courierTransmissionPlanningDate"] for d in delivered)
    assert any(d["courierTransmissionPlanningDate"] is None for d in delivered)


def test_error_titles_end_with_a_period(client: httpx.Client, server: SandboxServer) -> None:
    for response in (
        orders(client, None),
        get(client, "/orders/nope"),
        orders(client, 0, extra={"page[size]": 1000}),
        orders(client, 0, extra={"filter[orders][state]": "BOGUS"}),
    ):
        assert response.status_code in (400, 404) and errors_title(response).endswith("."), response.text


def test_about_30_percent_of_orders_come_from_repeat_customers(client: httpx.Client) -> None:
    seen: dict[str, str] = {}
    repeat = 0
    for order in dump(client):
        customer = order["attributes"]["customer"]
        if customer["id"] in seen:
            repeat += 1
            assert seen[customer["id"]] == customer["cellPhone"]
        seen[customer["id"]] = customer["cellPhone"]
    assert 0.2 <= repeat / 300 <= 0.4
    phones = Counter(seen.values())
    assert max(phones.values()) == 1  # one phone, one customer id


def test_order_by_id_and_not_by_code(client: httpx.Client) -> None:
    order = dump(client)[10]
    one = get(client, f"/orders/{order['id']}")
    assert one.status_code == 200 and one.json() == {"data": order, "included": []}
    by_code = get(client, f"/orders/{order['attributes']['code']}")
    assert by_code.status_code == 404
    assert by_code.json() == {"errors": [{"title": "Resource not found."}]}


def test_entries_products_and_merchant_skus(client: httpx.Client, server: SandboxServer) -> None:
    everything = dump(client)
    lines: list[int] = []
    with_offer = without_offer = 0
    master_codes: Counter[str] = Counter()
    for order in everything[:120]:
        body = get(client, f"/orders/{order['id']}/entries").json()
        assert body["included"] == []
        entries = body["data"]
        lines.append(len(entries))
        assert 1 <= len(entries) <= 5
        assert sum(e["attributes"]["totalPrice"] for e in entries) == order["attributes"]["totalPrice"]
        assert sum(e["attributes"]["deliveryCost"] for e in entries) == order["attributes"]["deliveryCost"]
        assert [e["attributes"]["entryNumber"] for e in entries] == list(range(len(entries)))
        for entry in entries:
            a = entry["attributes"]
            assert entry["type"] == "orderentries"
            assert a["totalPrice"] == a["basePrice"] * a["quantity"]
            assert set(a["category"]) == {"code", "title"} and a["unitType"] in ("PIECES", "MEASURABLE_PIECES")
            assert entry["relationships"]["product"]["data"]["type"] == "masterproducts"
            if "offer" in a:
                with_offer += 1
                assert set(a["offer"]) == {"code", "name"}
            else:
                without_offer += 1
            master_codes[entry["relationships"]["product"]["data"]["id"]] += 1
    assert 2.6 <= sum(lines) / len(lines) <= 3.4
    assert 0.04 <= without_offer / (with_offer + without_offer) <= 0.18
    assert max(master_codes.values()) >= 5  # products repeat across orders

    # the fallback: entry -> master product -> merchant product gives the SKU the offer shows
    order = everything[3]
    for entry in get(client, f"/orders/{order['id']}/entries").json()["data"]:
        master = get(client, f"/orderentries/{entry['id']}/product").json()
        assert master["data"]["type"] == "masterproducts"
        assert master["data"]["id"] == entry["relationships"]["product"]["data"]["id"]
        assert re.fullmatch(r"\d{9}", master["data"]["attributes"]["code"]) and master["data"]["attributes"]["name"]
        assert master["data"]["relationships"]["merchantProduct"]["data"] is None
        merchant = get(client, f"/masterproducts/{master['data']['id']}/merchantProduct").json()
        assert merchant["data"]["type"] == "merchantproducts"
        if "offer" in entry["attributes"]:
            assert merchant["data"]["attributes"] == entry["attributes"]["offer"]
        single = get(client, f"/orderentries/{entry['id']}").json()
        assert single["data"] == entry
    assert get(client, "/orders/bm9wZQ==/entries").status_code == 404
    assert get(client, "/orderentries/bm9wZQ==/product").status_code == 404
    assert get(client, "/masterproducts/bm9wZQ==/merchantProduct").status_code == 404


def test_catalog_is_about_60_products_with_stable_codes_across_seeds(client: httpx.Client) -> None:
    def catalog() -> dict[str, tuple[str, float]]:
        found: dict[str, tuple[str, float]] = {}
        for order in dump(client):
            for entry in client.get(f"/_sandbox/kaspi/orders/{order['attributes']['code']}").json()["entries"]:
                key = entry["relationships"]["product"]["data"]["id"]
                found[key] = (entry["attributes"]["category"]["code"], entry["attributes"]["basePrice"])
        return found

    first = catalog()
    assert 45 <= len(first) <= 60
    reset(client, seed=99)
    second = catalog()
    assert all(first[k] == v for k, v in second.items() if k in first)


def test_same_seed_same_data_other_seed_other_data(client: httpx.Client) -> None:
    one = dump(client)
    reset(client)
    assert dump(client) == one
    reset(client, seed=6)
    assert dump(client) != one


def test_reset_takes_volume_and_period(client: httpx.Client, server: SandboxServer) -> None:
    body = reset(client, kaspi_orders=40, kaspi_days=3).json()
    assert body["config"]["kaspi_orders"] == 40
    assert body["stats"]["kaspi"]["entities"] == {"orders": 40}
    start = datetime.fromtimestamp(EPOCH, KZ).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    assert min(o["attributes"]["creationDate"] for o in dump(client)) >= start.timestamp() * 1000
    assert client.post("/_sandbox/reset", json={"kaspi_window_mode": "sideways"}).status_code == 400


def test_days_are_kazakh_calendar_days(client: httpx.Client) -> None:
    late = datetime(2025, 6, 15, 21, 0, tzinfo=UTC).timestamp()  # already 02:00 on the 16th in Almaty
    reset(client, kaspi_orders=20, kaspi_days=1, clock_epoch=late)
    kz_midnight = datetime(2025, 6, 16, tzinfo=KZ).timestamp() * 1000
    created = [o["attributes"]["creationDate"] for o in dump(client)]
    assert len(created) == 20 and all(kz_midnight <= c <= late * 1000 + 5000 for c in created)


# ------------------------------------------------------------------------------------------ controls
def test_control_creates_new_orders(client: httpx.Client, server: SandboxServer) -> None:
    before = {o["attributes"]["customer"]["id"] for o in dump(client)}
    at = now_ms(server)
    created = client.post("/_sandbox/kaspi/orders", json={"count": 4, "created_at": at, "repeat_customers": 1.0}).json()
    assert len(created["codes"]) == 4 and all(re.fullmatch(r"\d{9}", c) for c in created["codes"])
    fresh = orders(client, at, at + 10).json()["data"]
    assert [o["attributes"]["code"] for o in fresh] == created["codes"]
    assert [o["id"] for o in fresh] == created["ids"]
    for order in fresh:
        assert order["attributes"]["status"] == "APPROVED_BY_BANK"
        assert order["attributes"]["state"] in ("NEW", "SIGN_REQUIRED")
        assert order["attributes"]["customer"]["id"] in before
    time.sleep(0.005)
    after = now_ms(server)
    default = client.post("/_sandbox/kaspi/orders", json={"count": 2, "repeat_customers": 0}).json()["codes"]
    newest = orders(client, after).json()["data"]
    assert [o["attributes"]["code"] for o in newest] == default
    assert all(o["attributes"]["customer"]["id"] not in before for o in newest)
    assert client.get("/_sandbox/stats").json()["kaspi"]["entities"] == {"orders": 306}
    assert client.post("/_sandbox/kaspi/orders", json={"count": "many"}).status_code == 400


def test_control_moves_status_and_state_together(client: httpx.Client, server: SandboxServer) -> None:
    code = client.post("/_sandbox/kaspi/orders", json={"count": 1}).json()["codes"][0]
    accepted = client.post(f"/_sandbox/kaspi/orders/{code}/status", json={"status": "ACCEPTED_BY_MERCHANT"}).json()
    a = accepted["attributes"]
    expected = "KASPI_DELIVERY" if a["isKaspiDelivery"] else "PICKUP" if "PICKUP" in a["deliveryMode"] else "DELIVERY"
    assert a["state"] == expected
    done = client.post(f"/_sandbox/kaspi/orders/{code}/status", json={"status": "COMPLETED"}).json()
    assert (done["attributes"]["status"], done["attributes"]["state"]) == ("COMPLETED", "ARCHIVE")
    seen = orders(client, now_ms(server) - DAY, extra={"filter[orders][code]": code}).json()["data"][0]
    assert (seen["attributes"]["status"], seen["attributes"]["state"]) == ("COMPLETED", "ARCHIVE")
    assert client.post(f"/_sandbox/kaspi/orders/{code}/status", json={"status": "CANCELLED"}).status_code == 409
    returned = client.post(f"/_sandbox/kaspi/orders/{code}/status", json={"status": "RETURNED"}).json()
    assert returned["attributes"]["state"] == "ARCHIVE"
    assert client.post(f"/_sandbox/kaspi/orders/{code}/status", json={"status": "COMPLETED"}).status_code == 409
    forced = client.post(f"/_sandbox/kaspi/orders/{code}/status", json={"status": "COMPLETED", "force": True})
    assert forced.status_code == 200 and forced.json()["final"] is True
    assert client.post(f"/_sandbox/kaspi/orders/{code}/status", json={"status": "BOGUS"}).status_code == 400
    assert client.post("/_sandbox/kaspi/orders/000/status", json={"status": "COMPLETED"}).status_code == 404


def test_raw_orders_are_served_verbatim(client: httpx.Client, server: SandboxServer) -> None:
    at = now_ms(server) - 1000
    broken = [
        {"type": "orders", "id": "cmF3MQ==", "attributes": {"code": "raw1", "creationDate": at, "totalPrice": "n/a"}},
        {"type": "orders", "id": "cmF3Mg==", "attributes": {"code": "raw2", "customer": {"firstName": "Без телефона"}}},
    ]
    raw_entries = [{"type": "orderentries", "id": "x", "attributes": {}}]
    body = {"orders": broken, "entries": {"cmF3MQ==": raw_entries}}
    assert client.post("/_sandbox/kaspi/orders/raw", json=body).json() == {"raw_orders": 2}
    page = orders(client, at - 1, extra={"page[size]": 100}).json()["data"]
    assert broken[0] in page and broken[1] in page
    assert get(client, "/orders/cmF3MQ==/entries").json()["data"] == raw_entries
    assert get(client, "/orders/cmF3Mg==/entries").json()["data"] == []
    assert client.get("/_sandbox/stats").json()["kaspi"]["entities"] == {"orders": 302}
    assert client.post("/_sandbox/kaspi/orders/raw", json={"nope": 1}).status_code == 400


# --------------------------------------------------------------------------------- limits and faults
def test_leaky_bucket_answers_429(client: httpx.Client, server: SandboxServer) -> None:
    reset(client, kaspi_rate=1.0, kaspi_burst=3)
    ge = now_ms(server) - DAY
    statuses = [orders(client, ge).status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    limited = orders(client, ge)
    assert limited.status_code == 429 and errors_title(limited) and "retry-after" not in limited.headers
    assert client.get("/_sandbox/stats").json()["kaspi"]["throttled"] == 3


def test_faults_and_stats(client: httpx.Client, server: SandboxServer) -> None:
    ge = now_ms(server) - DAY
    spec = {"kaspi": {"error_burst": {"count": 1, "status": 503, "methods": ["orders"]}}}
    assert client.post("/_sandbox/faults", json=spec).status_code == 200
    order = dump(client)[0]
    assert get(client, f"/orders/{order['id']}/entries").status_code == 200  # other method: unaffected
    failed = orders(client, ge)
    assert failed.status_code == 503 and failed.headers["content-type"].startswith("text/html")
    assert orders(client, ge).status_code == 200
    client.post("/_sandbox/faults", json={"kaspi": {"commit_then_drop": {"count": 1}}})
    with pytest.raises(httpx.TransportError):
        orders(client, ge)
    client.post("/_sandbox/faults", json={"kaspi": {"error_burst": {"count": 1, "status": 400}}})
    assert errors_title(orders(client, ge)) == "Injected error."
    stats = client.get("/_sandbox/stats").json()["kaspi"]
    assert stats["requests"] == 5
    assert stats["by_method"] == {"orders/{id}/entries": 1, "orders": 4}


def test_env_points_at_the_emulator(server: SandboxServer, client: httpx.Client) -> None:
    env = sandbox_env(server.base_url)
    assert env["KASPI_BASE_URL"] == f"{server.base_url}{API}"
    assert env["KASPI_TOKEN"] == TOKEN and env["DEFAULT_COUNTRY"] == "KZ"
    headers = {"X-Auth-Token": env["KASPI_TOKEN"], "Content-Type": JSONAPI}
    params = {"page[number]": 0, "page[size]": 5, "filter[orders][creationDate][$ge]": now_ms(server) - DAY}
    assert httpx.get(env["KASPI_BASE_URL"] + "/orders", params=params, headers=headers).status_code == 200
