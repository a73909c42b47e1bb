"""Bodies the pipeline cannot store: the receiver refuses them (422 with the reason) and the load of
`platform/payment_events` quarantines one already in the inbox instead of failing its whole day."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

from integration_sync.defs.migrations import MIGRATIONS
from integration_sync.defs.payments_amocrm.tables import ingest_events, payment_of
from integration_sync.sandbox.platform import sign
from integration_sync.sync.warehouse import Warehouse
from integration_sync.webhooks.inbox import Inbox
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings
from integration_sync_tests.payments_amocrm.flow import ASSETS, BASE, events_metadata, flow_env, run_flow

SECRET = "bounds-secret"
DAY = "2025-01-20"
URL = "/webhook/payment"


def body(payment_id: str, change: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    order = data["course_order"]
    order["payment_id"] = payment_id
    order["created_at"] = order["updated_at"] = f"{DAY} 12:00:00"
    if change is not None:
        change(order)
    return data


def item(order: dict[str, Any], key: str, value: Any) -> None:
    order["course_order_items"][0][key] = value


def nested(depth: int) -> Any:
    return json.loads("[" * depth + "]" * depth)


# name → (change to the seed's payment, raw text to append inside course_order, words of the reason)
CASES: dict[str, tuple[Callable[[dict[str, Any]], Any] | None, str, str]] = {
    "cost-over-2^64": (lambda o: item(o, "cost", 2**64), "", "64-bit"),
    "lessons-over-2^63": (lambda o: item(o, "number_lessons", 2**63), "", "64-bit"),
    "id-over-2^64": (lambda o: o["user"].update(telegram_id=2**64), "", "64-bit"),
    "ignored-int-under-int64": (lambda o: o.update(extra=-(2**63) - 1), "", "64-bit"),
    "cost-10^16": (lambda o: item(o, "cost", 10**16), "", "less than or equal"),
    "cost-over-10^9": (lambda o: item(o, "cost", 10**9 + 0.01), "", "less than or equal"),
    "amount-10^16": (lambda o: o.update(amount=10**16), "", "amount"),
    "1001-items": (lambda o: o.update(course_order_items=o["course_order_items"][:1] * 1001), "", "at most 1000"),
    "nested-300": (lambda o: o.update(extra=nested(300)), "", "nested"),
    "nested-33": (lambda o: o.update(extra=nested(31)), "", "nested"),
    "surrogate-in-ignored": (None, ', "ignored": "a\\ud800b"', "surrogate"),
    "surrogate-in-key": (None, ', "\\udfff": 1', "surrogate"),
    "string-10001": (lambda o: o.update(code="x" * 10_001), "", "longer than"),
    "nan": (None, ', "ratio": NaN', "NaN"),
}


def raw(payment_id: str, name: str) -> bytes:
    change, extra, _ = CASES[name]
    text = json.dumps(body(payment_id, change))
    return (text[:-2] + extra + "}}").encode() if extra else text.encode()


def receiver_settings(tmp_path: Path) -> ReceiverSettings:
    return ReceiverSettings(secret=SECRET, inbox_path=tmp_path / "inbox.sqlite", max_body_bytes=1_000_000)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReceiverServer]:
    with ReceiverServer(receiver_settings(tmp_path_factory.mktemp("bounds"))) as server:
        yield server


def test_edge_of_each_bound_is_accepted(receiver: ReceiverServer) -> None:
    order_items = [{"cost": 10**9, "number_lessons": 2**63 - 1}] * 1000
    edge = body("edge", lambda o: o.update(amount=10**9, course_order_items=order_items, code="x" * 10_000))
    edge["course_order"]["extra"] = nested(30)  # its innermost list is at depth 32
    payload = json.dumps(edge).encode()
    assert httpx.post(receiver.url(URL), content=payload, headers=sign(payload, SECRET)).status_code == 200


@pytest.mark.parametrize("name", list(CASES))
def test_receiver_refuses_what_cannot_be_stored(receiver: ReceiverServer, name: str) -> None:
    payload = raw(f"refused-{name}", name)
    before = receiver.inbox.count()
    response = httpx.post(receiver.url(URL), content=payload, headers=sign(payload, SECRET))
    assert response.status_code == 422, response.text
    answer = response.json()
    assert CASES[name][2] in json.dumps(answer, ensure_ascii=False), answer
    assert receiver.inbox.count() == before


def test_load_quarantines_each_bad_event_and_stores_the_rest_of_the_day(
    sandbox_env: dict[str, str], data_dir: Path
) -> None:
    """Events received before the bounds existed: the day loads; each bad one is in `ingest_rejects`."""
    env = flow_env(sandbox_env, data_dir)
    inbox = Inbox(data_dir / "inbox.sqlite")
    inbox.insert("platform_payment", "payment:good-1", DAY, json.dumps(body("good-1")))
    for name in CASES:
        inbox.insert("platform_payment", f"payment:bad-{name}", DAY, raw(f"bad-{name}", name).decode())
    inbox.insert("platform_payment", "payment:good-2", DAY, json.dumps(body("good-2")))
    first = date.fromisoformat(DAY)
    for _ in range(2):  # a reload of the day quarantines nothing twice
        result = run_flow(env, first_day=first, last_day=first, selection=ASSETS[:1])
        assert result.success
    assert events_metadata(result)["unreadable"] == len(CASES)
    store = Warehouse(data_dir / "warehouse.duckdb", MIGRATIONS)
    with store.connect() as conn:
        stored = {r[0]: r[1] for r in conn.execute("SELECT payment_id, amount FROM payment_events").fetchall()}
        rejects = conn.execute("SELECT record_key, reason, partition_key FROM ingest_rejects").fetchall()
    assert set(stored) == {"good-1", "good-2"} and stored["good-1"] == 10000
    assert len(rejects) == len(CASES)
    reasons = {key: reason for key, reason, _ in rejects}
    for name, (_, _, words) in CASES.items():
        assert words in reasons[f"payment:bad-{name}"], (name, reasons[f"payment:bad-{name}"])
    assert {partition for _, _, partition in rejects} == {DAY}


# ---- property: whatever the receiver accepts, the load stores ------------------------------------

big_ints = st.integers() | st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**16, 10**9])
texts = st.text(max_size=12) | st.sampled_from(["\ud800", "a\udfffb", "x" * 10_001, "x" * 10_000])
leaves = st.none() | st.booleans() | big_ints | st.floats() | texts
trees = st.recursive(leaves, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(texts, kids, max_size=3))
costs = big_ints | st.floats() | st.decimals(allow_nan=False).map(str) | st.sampled_from(["1E-999999999", "0E+999"])


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(0, 10**9))
    data = body(f"prop-{n}")
    order = data["course_order"]
    item(order, "cost", draw(costs))
    if draw(st.booleans()):
        order["course_order_items"] = order["course_order_items"][:1]
    if draw(st.booleans()):
        item(order, "number_lessons", draw(big_ints))
    if draw(st.booleans()):
        order["amount"] = draw(big_ints | st.floats() | texts)
    if draw(st.booleans()):
        order["course_order_items"] = order["course_order_items"] * draw(st.sampled_from([2, 999, 1000, 1001]))
    for key in draw(st.lists(st.sampled_from(["extra", "code", "user", "utm", "currency", "invoice_id"]), max_size=3)):
        order[key] = draw(trees)
    if draw(st.booleans()):
        order["deep"] = nested(draw(st.sampled_from([29, 30, 31, 40, 254, 256, 300])))
    return json.dumps(data, ensure_ascii=draw(st.booleans()), allow_nan=True).encode("utf-8", "surrogatepass")


class _State:
    warehouse: Warehouse | None = None
    client: httpx.Client | None = None


@pytest.fixture(scope="module")
def state(receiver: ReceiverServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[type[_State]]:
    store = Warehouse(tmp_path_factory.mktemp("prop-wh") / "w.duckdb", MIGRATIONS)
    store.migrate()
    with httpx.Client(timeout=10) as client:
        _State.warehouse, _State.client = store, client
        yield _State


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=hostile_bodies())
def test_signed_bodies_through_receiver_and_load(receiver: ReceiverServer, state: type[_State], payload: bytes) -> None:
    assert state.warehouse is not None and state.client is not None
    response = state.client.post(receiver.url(URL), content=payload, headers=sign(payload, SECRET))
    assert response.status_code in {200, 202, 409, 422}, response.text
    hypothesis_event(f"status {response.status_code}")
    if response.status_code not in {200, 202}:
        return
    [event] = receiver.inbox.read_after(response.json()["event_id"] - 1, 1)
    report = ingest_events(state.warehouse, [event], {event.id: date.fromisoformat(DAY)}, "prop")
    assert report.unreadable == 0, report.unreadable_samples  # the receiver let through only storable bodies
    with state.warehouse.connect() as conn:
        row = conn.execute(
            "SELECT event_id FROM payment_events WHERE payment_id = ?", [payment_of(event.event_key)]
        ).fetchone()
    assert row is not None, "an accepted payment was dropped by the load"
