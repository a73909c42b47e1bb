"""Kaspi client: date windows, JSON:API models and errors (pure), then against the sandbox emulator:
window chunking and 0-based paging with `$ge` on every call, included users, lookup by code, the
offer → product-endpoint fallback, and a bad token."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from integration_sync.connectors.errors import ApiError, AuthError, ConfigError
from integration_sync.connectors.kaspi import (
    DAY_MS,
    KaspiClient,
    KaspiEntry,
    KaspiOrder,
    parse_kaspi_error,
    split_windows,
    to_epoch_ms,
)
from integration_sync.defs.kaspi_amocrm.mapping import kaspi_phone
from integration_sync_tests.connectors.sandbox_support import FAST_POLICY, Sandbox, running_sandbox

GE = "filter[orders][creationDate][$ge]"
LE = "filter[orders][creationDate][$le]"

# -- pure -----------------------------------------------------------------------------------------


def test_a_30_day_range_is_three_contiguous_windows_of_at_most_14_days() -> None:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    windows = split_windows(start, start + timedelta(days=30), 14)
    assert len(windows) == 3
    assert windows[0][0] == to_epoch_ms(start) and windows[-1][1] == to_epoch_ms(start + timedelta(days=30))
    for (_, end), (following, _) in itertools.pairwise(windows):
        assert following == end + 1  # no gap, no overlap (both bounds are inclusive)
    assert all(stop - begin < 14 * DAY_MS for begin, stop in windows)
    assert len(split_windows(start, start + timedelta(days=14) - timedelta(milliseconds=1), 14)) == 1
    assert len(split_windows(start, start, 14)) == 1
    with pytest.raises(ValueError):
        split_windows(datetime(2025, 3, 1), datetime(2025, 3, 2), 14)  # naive datetimes are refused
    with pytest.raises(ValueError):
        split_windows(start, start - timedelta(days=1), 14)


ORDER = {
    "type": "orders",
    "id": "orderID",
    "attributes": {
        "customer": {"firstName": "Иван Иваныч", "lastName": "Иванов", "cellPhone": "7750000000"},
        "code": "ordercode",
        "totalPrice": 96045,
        "deliveryMode": "DELIVERY_PICKUP",
        "state": "PICKUP",
        "creationDate": 1479470446241,
        "status": "ACCEPTED_BY_MERCHANT",
        "deliveryAddress": {"formattedAddress": "Алматы, улица Наурызбай батыра, 154А", "town": "Алматы"},
        "isImeiRequired": False,
    },
    "relationships": {"user": {"data": {"type": "customers", "id": "customerID"}}},
}


def test_orders_carry_typed_attributes_the_raw_ones_and_the_included_user() -> None:
    order = KaspiOrder.from_resource(ORDER, {"customerID": {"firstName": "Иван", "cellPhone": "7750000000"}})
    assert order.code == "ordercode" and order.id == "orderID" and order.total_price == 96045
    assert order.creation_date == datetime(2016, 11, 18, 12, 0, 46, 241000, tzinfo=UTC)
    assert order.customer is not None and order.customer.cell_phone == "7750000000"  # E.164: the mapping's rule
    assert order.delivery_address is not None and order.delivery_address.town == "Алматы"
    assert order.user is not None and order.user.id == "customerID" and order.user.first_name == "Иван"
    assert order.attributes_dict()["creationDate"] == 1479470446241
    assert kaspi_phone(order.customer.cell_phone) == "+77750000000"


def test_entries_read_the_offer_or_keep_the_product_id_for_the_fallback() -> None:
    base: dict[str, Any] = {
        "type": "orderentries",
        "id": "e1",
        "attributes": {"quantity": 2, "basePrice": 2000.0, "totalPrice": 4000.0, "entryNumber": 0},
        "relationships": {"product": {"data": {"type": "masterproducts", "id": "mp1"}}},
    }
    plain = KaspiEntry.from_resource(base)
    assert plain.product_id == "mp1" and plain.product_code is None and plain.quantity == 2
    with_offer = KaspiEntry.from_resource(
        {**base, "attributes": {**base["attributes"], "offer": {"code": "SKU-1", "name": "Фрукты"}}}
    )
    assert (with_offer.product_code, with_offer.product_name, with_offer.product_source) == ("SKU-1", "Фрукты", "offer")
    assert with_offer.as_row()["code"] == "SKU-1" and with_offer.as_row()["base_price"] == 2000.0


def test_json_api_errors_are_read_from_their_title() -> None:
    request = httpx.Request("GET", "https://kaspi.kz/shop/api/v2/orders")
    body = {"errors": [{"title": "Required filter [orders][creationDate][$ge] is empty"}]}
    info = parse_kaspi_error(httpx.Response(400, json=body, request=request))
    assert info.message == "Required filter [orders][creationDate][$ge] is empty" and not info.auth
    assert parse_kaspi_error(httpx.Response(401, text="Unauthorized", request=request)).auth


def test_configuration_is_checked() -> None:
    with pytest.raises(ConfigError):
        KaspiClient("https://kaspi.kz/shop/api/v2", "")
    with pytest.raises(ConfigError):
        KaspiClient("https://kaspi.kz/shop/api/v2", "t", page_size=101)


# -- against the sandbox --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(kaspi_orders=60, days=30, amocrm_contacts=0) as sb:
        yield sb


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    sandbox.reset()
    return sandbox


def make_client(sb: Sandbox, **options: Any) -> tuple[KaspiClient, list[httpx.URL]]:
    """A client, and the URLs it sends (recorded by an httpx event hook)."""
    client = KaspiClient(sb.env["KASPI_BASE_URL"], sb.env["KASPI_TOKEN"], policy=FAST_POLICY, **options)
    sent: list[httpx.URL] = []
    client._api._client.event_hooks["request"].append(lambda request: sent.append(request.url))
    return client, sent


def _query(url: httpx.URL) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(str(url)).query).items()}


def test_range_is_read_in_windows_and_pages_with_ge_on_every_call(sb: Sandbox) -> None:
    everything = sb.control("GET", "kaspi/orders")
    now = datetime.now(UTC)
    client, sent = make_client(sb, page_size=10)
    with client:
        result = client.list_orders(now - timedelta(days=31), now)
    assert sorted(o.code for o in result.orders) == sorted(o["attributes"]["code"] for o in everything)
    assert result.total_count == len(everything) and result.windows == 3
    queries = [_query(url) for url in sent]
    assert all(url.path.endswith("/orders") for url in sent)
    assert all(GE in q and LE in q for q in queries)  # `$ge` is never missing
    assert all(int(q[LE]) - int(q[GE]) < 14 * DAY_MS for q in queries)
    windows = sorted({(int(q[GE]), int(q[LE])) for q in queries})
    assert len(windows) == 3 and all(b[0] == a[1] + 1 for a, b in itertools.pairwise(windows))
    for window in windows:  # pages are 0-based and contiguous within each window
        pages = [int(q["page[number]"]) for q in queries if (int(q[GE]), int(q[LE])) == window]
        assert pages == list(range(len(pages)))
    assert result.pages == len(sent) > 3
    assert all(q["page[size]"] == "10" and q["include[orders]"] == "user" for q in queries)
    assert all(o.user is not None and o.user.id for o in result.orders)  # included users merged in
    assert all(o.creation_date.tzinfo is not None for o in result.orders)


def test_new_orders_are_found_and_filters_are_sent(sb: Sandbox) -> None:
    made = sb.control("POST", "kaspi/orders", {"count": 3})
    now = datetime.now(UTC)
    client, sent = make_client(sb)
    with client:
        recent = list(client.iter_orders(now - timedelta(minutes=10), now + timedelta(minutes=1)))
        assert set(made["codes"]) <= {o.code for o in recent}
        order = client.get_order_by_code(made["codes"][0])
        assert order is not None and order.code == made["codes"][0] and order.id == made["ids"][0]
        assert client.get_order_by_code("000000000") is None
        states = list(client.iter_orders(now - timedelta(days=13), now, state="ARCHIVE"))
    assert all(o.state == "ARCHIVE" for o in states)
    lookups = [_query(url) for url in sent if "filter[orders][code]" in _query(url)]
    assert lookups and all(GE in q and LE in q for q in lookups)


def test_entries_use_the_offer_when_present_without_extra_calls(sb: Sandbox) -> None:
    sb.control("POST", "reset", {"kaspi_offer_missing_share": 0.0})
    now = datetime.now(UTC)
    client, _ = make_client(sb)
    with client:
        orders = client.list_orders(now - timedelta(days=13), now).orders[:5]
        entries = [entry for order in orders for entry in client.get_entries(order.id)]
        assert entries and all(e.product_source == "offer" and e.product_code for e in entries)
        assert set(client.stats.by_endpoint) == {"orders", "orders/{id}/entries"}


def test_entries_without_offer_fall_back_to_the_product_endpoints(sb: Sandbox) -> None:
    sb.control("POST", "reset", {"kaspi_offer_missing_share": 1.0})
    now = datetime.now(UTC)
    client, _ = make_client(sb)
    with client:
        orders = client.list_orders(now - timedelta(days=13), now).orders[:4]
        entries = [entry for order in orders for entry in client.get_entries(order.id)]
        assert entries and all(e.offer is None and e.product_code and e.product_name for e in entries)
        assert {e.product_source for e in entries} <= {"merchantProduct", "masterproduct"}
        lookups = client.stats.by_endpoint["masterproducts/{id}/merchantProduct"]
        assert lookups <= len(entries)  # one call per line at most (cached per product)
        raw = client.get_entries(orders[0].id, resolve_products=False)[0]
        assert raw.product_code is None and raw.product_id
        master = client.get_entry_product(raw.id)  # the other official route
        assert master is not None and master.id == raw.product_id and master.code


def test_window_wider_than_kaspi_allows_is_an_api_error_with_the_title(sb: Sandbox) -> None:
    now = datetime.now(UTC)
    client, _ = make_client(sb, max_window_days=30)
    with client, pytest.raises(ApiError) as caught:
        client.list_orders(now - timedelta(days=29), now)
    assert caught.value.status == 400 and not isinstance(caught.value, AuthError)
    assert "14 days" in caught.value.message


@pytest.mark.parametrize("status", [401, 403])
def test_bad_token_is_an_auth_error_without_the_token(
    sb: Sandbox, status: int, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    sb.control("POST", "reset", {"kaspi_auth_error_status": status})
    token = "wrong-kaspi-token-7f3a9c"
    now = datetime.now(UTC)
    with KaspiClient(sb.env["KASPI_BASE_URL"], token, policy=FAST_POLICY) as client, pytest.raises(AuthError) as caught:
        client.list_orders(now - timedelta(days=1), now)
    assert caught.value.status == status and client.requests_used == 1
    assert token not in str(caught.value) and token not in caplog.text
    assert caught.value.__cause__ is None and caught.value.__context__ is None
