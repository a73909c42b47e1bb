"""The payments_amocrm flow through Dagster: payments posted to the real receiver, pushed to the amoCRM
emulator over loopback HTTP."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from integration_sync.defs.payments_amocrm.destination import PaymentsDestination
from integration_sync.defs.payments_amocrm.tables import PaymentLedger
from integration_sync.sandbox import amocrm_schema as ids
from integration_sync.sync.engine import Change, Outcome
from integration_sync.targets.amocrm_contacts import AmoContactIndex
from integration_sync.webhooks.models import MOSCOW
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings
from integration_sync_tests.dagster_support import environment
from integration_sync_tests.payments_amocrm.flow import (
    AmoApi,
    amo,
    amo_requests,
    deliver,
    enum_ids,
    event_log,
    events_metadata,
    field,
    flow_env,
    payment,
    push,
    push_metadata,
    resources,
    run_flow,
)


@pytest.fixture()
def env(sandbox_env: dict[str, str], data_dir: Path) -> dict[str, str]:
    return flow_env(sandbox_env, data_dir, AMO_HTTP_BACKOFF_S="0.05")


@pytest.fixture()
def receiver(env: dict[str, str]) -> Iterator[str]:
    with ReceiverServer(ReceiverSettings.from_env(env)) as server:
        yield server.base_url


@pytest.fixture()
def api(sandbox: Any) -> Iterator[AmoApi]:
    client = AmoApi(sandbox.base_url)
    yield client
    client.close()


def customer(tg: str | None = None, phone: str | None = None, email: str | None = None, **names: str) -> dict[str, Any]:
    return {
        "first_name": names.get("first_name", "Мария"),
        "last_name": names.get("last_name", "Соколова"),
        "telegram_id": tg,
        "telegram_tag": names.get("tag", "maria_s"),
        "phone": phone,
        "email": email,
    }


def notes_of(control: httpx.Client, lead_id: int) -> list[str]:
    return [n["params"]["text"] for n in amo(control, "notes") if n["entity_id"] == lead_id]


def test_a_new_customer_gets_a_contact_and_a_lead_in_the_utm_pipeline(
    env: dict[str, str], receiver: str, control: httpx.Client
) -> None:
    site = payment("pay-site", user=customer(tg="9000001", phone="89990000001", email="m1@example.com"))
    partner = payment(
        "pay-partner",
        user=customer(tg="9000002", phone="+79990000002"),
        utm={"source": "advcake", "medium": "cpa", "compaign": "x"},
    )
    yandex = payment("pay-yandex", user=customer(email="m3@example.com"), utm={"source": "yandex", "medium": "cpc"})
    assert deliver(receiver, site, partner, yandex) == [200, 200, 200]
    result = run_flow(env)
    assert result.success
    meta = push_metadata(result)
    assert (meta["created"], meta["rejected"], meta["contacts_created"], meta["leads_created"]) == (3, 0, 3, 3)
    log = event_log(env)
    assert {k: v["status"] for k, v in log.items()} == dict.fromkeys(
        ("pay-site", "pay-partner", "pay-yandex"), "success"
    )
    assert all(v["lead_created"] for v in log.values())
    leads = {lead["id"]: lead for lead in amo(control, "leads")}
    stage = {
        key: (leads[row["lead_id"]]["pipeline_id"], leads[row["lead_id"]]["status_id"]) for key, row in log.items()
    }
    assert stage == {
        "pay-site": (ids.AMO_PIPELINE_SITE, ids.AMO_STATUS_AUTOPAY_SITE),
        "pay-partner": (ids.AMO_PIPELINE_PARTNERS, ids.AMO_STATUS_AUTOPAY_PARTNERS),
        "pay-yandex": (ids.AMO_PIPELINE_YANDEX, ids.AMO_STATUS_AUTOPAY_YANDEX),
    }
    lead = leads[log["pay-site"]["lead_id"]]
    assert lead["name"] == "Оплата Русский, Обществознание - Мария Соколова" and lead["price"] == 10000
    assert field(lead, ids.AMO_LEAD_FIELD_TOTAL_PAID) == "10000"
    assert field(lead, ids.AMO_LEAD_FIELD_PURCHASE_COUNT) == "1"
    assert field(lead, ids.AMO_LEAD_FIELD_PAYMENT_ID) == "pay-site"
    assert field(lead, ids.AMO_LEAD_FIELD_INVOICE_ID) == "inv_pay-site"
    assert field(lead, "UTM_SOURCE") == "platform" and field(lead, "UTM_CAMPAIGN") == "summer2025"
    assert enum_ids(lead, ids.AMO_LEAD_FIELD_SUBJECTS) == [
        ids.AMO_SUBJECT_ENUMS["Русский"],
        ids.AMO_SUBJECT_ENUMS["Обществознание"],
    ]
    assert enum_ids(lead, ids.AMO_LEAD_FIELD_DIRECTION) == [ids.AMO_DIRECTION_EGE]
    contact = next(c for c in amo(control, "contacts") if c["id"] == log["pay-site"]["contact_id"])
    assert field(contact, "PHONE") == "+79990000001" and field(contact, "EMAIL") == "m1@example.com"
    assert field(contact, ids.AMO_CONTACT_FIELD_TG_ID) == "9000001"
    assert field(contact, ids.AMO_CONTACT_FIELD_TG_USERNAME) == "maria_s"
    (note,) = notes_of(control, lead["id"])
    assert note.startswith("Оплата проведена\n\nИмя клиента: Мария Соколова\n") and note.endswith(
        "Payment ID: pay-site"
    )
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "inbox_fully_loaded": True,
        "payments_applied_once": True,
        "payments_landed": True,
        "target_ids_present": True,
        "one_target_per_record": True,
        "rejected_share_below_threshold": True,
        "turned_away_below_threshold": True,
    }
    assert events_metadata(result)["status_pending"] == 3  # loaded before the push in the same run

    before = amo_requests(control)
    again = run_flow(env)
    assert push_metadata(again)["api_requests"] == 0 and amo_requests(control) == before


def test_a_known_customer_is_found_by_telegram_and_their_active_lead_in_any_pipeline_is_updated(
    env: dict[str, str], receiver: str, control: httpx.Client, api: AmoApi
) -> None:
    contact = api.contact("Мария Соколова", tg="7007007", phone="+79991110001")
    now = int(datetime.now(MOSCOW).timestamp())
    active = api.lead(
        contact, ids.AMO_PIPELINE_YANDEX, 80579120, total=5000, count=1, subjects=["Математика"], updated_at=now - 3600
    )
    api.lead(contact, ids.AMO_PIPELINE_ID, ids.WON, updated_at=now)  # closed: skipped
    api.lead(contact, ids.AMO_PIPELINE_SITE, ids.AMO_STATUS_AUTOPAY_SITE, updated_at=now)  # autopay: skipped
    api.lead(contact, ids.AMO_PIPELINE_PARTNERS, 80517720, updated_at=now - 7200)  # open, but older
    leads_before = len(amo(control, "leads"))

    deliver(receiver, payment("pay-k1", user=customer(tg="7007007", phone="+79990009999")))
    time.sleep(1.2)  # the set-up's requests leave amoCRM's 7/s window: a 429 retry is not the flow's cost
    before = amo_requests(control)
    meta = push_metadata(run_flow(env))
    assert amo_requests(control) - before - meta["preflight_requests"] == meta["api_requests"] <= 5
    assert (meta["contacts_found"], meta["leads_found"], meta["leads_created"], meta["contacts_filled"]) == (1, 1, 0, 1)
    lead = api.get("leads", active)
    assert field(lead, ids.AMO_LEAD_FIELD_TOTAL_PAID) == "15000"  # 5000 before + 10000
    assert field(lead, ids.AMO_LEAD_FIELD_PURCHASE_COUNT) == "2"
    assert field(lead, ids.AMO_LEAD_FIELD_LAST_PAYMENT_AMOUNT) == "10000"
    assert enum_ids(lead, ids.AMO_LEAD_FIELD_SUBJECTS) == [
        ids.AMO_SUBJECT_ENUMS[s] for s in ("Математика", "Русский", "Обществознание")
    ]
    assert len(amo(control, "leads")) == leads_before
    person = api.get("contacts", contact)
    assert field(person, ids.AMO_CONTACT_FIELD_TG_USERNAME) == "maria_s"  # was empty: filled
    assert field(person, "PHONE") == "+79991110001"  # never overwritten
    log = event_log(env)["pay-k1"]
    assert (log["contact_id"], log["lead_id"], log["lead_created"], log["pipeline_id"]) == (
        contact,
        active,
        False,
        ids.AMO_PIPELINE_YANDEX,
    )

    # a second payment, an hour older than the first: totals add up, the "last payment" stays the newer one
    older = datetime.now(MOSCOW) - timedelta(hours=1)
    assert deliver(receiver, payment("pay-k2", user=customer(tg="7007007"), paid_at=older)) == [200]
    assert deliver(receiver, payment("pay-k1", user=customer(tg="7007007"))) == [409]  # re-delivered
    time.sleep(1.2)
    before = amo_requests(control)
    meta = push_metadata(run_flow(env))
    assert meta["created"] == 1 and amo_requests(control) - before <= 4  # the contact is known by now
    lead = api.get("leads", active)
    assert field(lead, ids.AMO_LEAD_FIELD_TOTAL_PAID) == "25000"
    assert field(lead, ids.AMO_LEAD_FIELD_PURCHASE_COUNT) == "3"
    assert field(lead, ids.AMO_LEAD_FIELD_PAYMENT_ID) == "pay-k1"
    assert len(notes_of(control, active)) == 2
    assert event_log(env)["pay-k1"]["redeliveries"] == 1


def test_contact_matching_priority_and_verified_hits(
    env: dict[str, str], receiver: str, control: httpx.Client, api: AmoApi
) -> None:
    by_tg = api.contact("По телеграму", tg="5551234")
    lookalike = api.contact("Похожий", tg="55512345")  # `query` finds it for 5551234 too
    by_phone = api.contact("По телефону", phone="+79995550011")
    by_email = api.contact("По почте", email="mail.only@example.com")
    deliver(
        receiver,
        payment("m-tg", user=customer(tg="5551234", phone="+79995550011", email="mail.only@example.com")),
        payment("m-phone", user=customer(tg="404", phone="89995550011", email="mail.only@example.com")),
        payment("m-email", user=customer(phone="not a phone", email="Mail.Only@Example.com")),
        payment("m-look", user=customer(tg="55512345")),
    )
    run_flow(env)
    contacts = {key: row["contact_id"] for key, row in event_log(env).items()}
    assert contacts == {"m-tg": by_tg, "m-phone": by_phone, "m-email": by_email, "m-look": lookalike}
    # amoCRM holds this phone with spaces and brackets, which its `query` never finds: the contact
    # index (read before creating anyone) still matches it, so no second contact is made
    formatted = api.contact("Со скобками", phone="+7 (999) 555-44-33")
    contacts_before = len(amo(control, "contacts"))
    deliver(receiver, payment("m-formatted", user=customer(phone="89995554433")))
    meta = push_metadata(run_flow(env))
    assert (meta["contacts_found"], meta["contacts_created"]) == (1, 0)
    assert event_log(env)["m-formatted"]["contact_id"] == formatted and len(amo(control, "contacts")) == contacts_before
    # a phone matched once is remembered, yet a Telegram id match still comes first
    phone_only = api.contact("Только телефон", phone="+79995550022")
    deliver(receiver, payment("m-first", user=customer(phone="+79995550022")))
    run_flow(env)
    newcomer = api.contact("Новый в Telegram", tg="9119")
    deliver(receiver, payment("m-later", user=customer(tg="9119", phone="+79995550022")))
    run_flow(env)
    assert (event_log(env)["m-first"]["contact_id"], event_log(env)["m-later"]["contact_id"]) == (phone_only, newcomer)


def test_payments_for_one_lead_in_one_run_are_both_counted(
    env: dict[str, str], receiver: str, control: httpx.Client, api: AmoApi
) -> None:
    contact = api.contact("Один", tg="123321")
    lead = api.lead(contact, ids.AMO_PIPELINE_SITE, 63242010, total="1000.50", count=3)
    first = payment("one-1", user=customer(tg="123321"))
    second = payment("one-2", user=customer(tg="123321"))
    second["course_order"]["course_order_items"] = [{"cost": 2500.25, "course": {"name": "Курс", "subject": None}}]
    deliver(receiver, first, second)
    run_flow(env)
    body = api.get("leads", lead)
    assert Decimal(field(body, ids.AMO_LEAD_FIELD_TOTAL_PAID)) == Decimal("13500.75")
    assert field(body, ids.AMO_LEAD_FIELD_PURCHASE_COUNT) == "5"


def test_skipped_payments_are_logged_and_never_pushed(
    env: dict[str, str], receiver: str, control: httpx.Client
) -> None:
    pending = payment("skip-1", status="PENDING")
    assert deliver(receiver, pending) == [202]
    result = run_flow(env)
    assert push_metadata(result)["fetched"] == 0 and events_metadata(result)["status_skipped"] == 1
    row = event_log(env)["skip-1"]
    assert row["status"] == "skipped" and "PENDING" in row["error_message"]
    # the platform confirms the same payment later: it is applied, once
    assert deliver(receiver, payment("skip-1"), payment("skip-1")) == [200, 409]
    result = run_flow(env)
    assert push_metadata(result)["created"] == 1
    row = event_log(env)["skip-1"]
    assert row["status"] == "success" and row["lead_id"] and row["redeliveries"] == 1
    assert {c.check_name: c.passed for c in result.get_asset_check_evaluations()}["inbox_fully_loaded"]


def test_not_found_with_create_off_fails_with_the_reason_then_is_re_driven(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client, api: AmoApi
) -> None:
    env = flow_env(sandbox_env, data_dir, CREATE_IF_NOT_FOUND="false", PAYMENTS_MAX_ATTEMPTS="2")
    with ReceiverServer(ReceiverSettings.from_env(env)) as server:
        lonely = api.contact("Без сделки", tg="8080")
        deliver(
            server.base_url,
            payment("nf-contact", user=customer(tg="1", phone="+79990001111")),
            payment("nf-lead", user=customer(tg="8080")),
        )
    leads_before = len(amo(control, "leads"))
    meta = push_metadata(run_flow(env))
    assert (meta["rejected"], meta["created"], meta["outstanding"]) == (2, 0, 2)
    log = event_log(env)
    assert log["nf-contact"]["status"] == "failed" and log["nf-contact"]["error_message"].startswith(
        "contact_not_found"
    )
    assert log["nf-lead"]["status"] == "failed" and log["nf-lead"]["error_message"].startswith("lead_not_found")
    assert log["nf-lead"]["contact_id"] is None and log["nf-lead"]["retry_count"] == 1
    push(env)  # the second and last attempt
    assert push_metadata(push(env))["parked"] == 2  # out of attempts: parked, no request
    assert len(amo(control, "leads")) == leads_before

    lead = api.lead(lonely, ids.AMO_PIPELINE_SITE, 63242010)  # a manager opens a lead
    meta = push_metadata(push(env, redrive_payment_ids=["nf-lead"]))
    assert (meta["redriven"], meta["created"], meta["parked"]) == (1, 1, 1)
    assert event_log(env)["nf-lead"]["lead_id"] == lead


def test_amocrm_down_then_back_every_payment_lands_once(
    env: dict[str, str], receiver: str, control: httpx.Client
) -> None:
    bodies = [payment(f"down-{n}", user=customer(tg=f"77{n}", phone=f"+7999777000{n}")) for n in range(4)]
    deliver(receiver, *bodies)
    control.post("/_sandbox/faults", json={"amocrm": {"error_rate": {"rate": 1.0, "status": 503}}}).raise_for_status()
    down = run_flow(env, raise_on_error=False)
    assert not down.success
    log = event_log(env)
    assert {row["status"] for row in log.values()} == {"pending"}  # an outage costs no attempt
    control.post("/_sandbox/faults", json={"amocrm": None}).raise_for_status()
    assert push_metadata(push(env))["created"] == 4
    per_payment = Counter(
        line.removeprefix("Payment ID: ")
        for note in amo(control, "notes")
        for line in note["params"]["text"].splitlines()
        if line.startswith("Payment ID: down-")
    )
    assert per_payment == Counter({f"down-{n}": 1 for n in range(4)})


@pytest.mark.parametrize(
    ("fault", "method"),
    [
        ("commit_then_drop", "POST leads/complex"),
        ("commit_then_drop", "POST leads"),
        ("commit_then_drop", "POST leads/notes"),
        ("error_burst", "POST leads/notes"),  # a 503 on a write: the lead was PATCHed, the note not added
    ],
)
def test_a_lost_answer_never_doubles_a_lead_a_note_or_a_total(
    env: dict[str, str], receiver: str, control: httpx.Client, api: AmoApi, fault: str, method: str
) -> None:
    known = api.contact("Известный", tg="3030")
    api.contact("Без сделки", tg="4040")
    known_lead = api.lead(known, ids.AMO_PIPELINE_SITE, 63242010, total=500, count=1)
    deliver(
        receiver,
        payment("lost-new", user=customer(tg="2020", phone="+79992020202")),
        payment("lost-known", user=customer(tg="3030")),
        payment("lost-nolead", user=customer(tg="4040")),
    )
    spec = {"count": 1, "methods": [method]} | ({"status": 503} if fault == "error_burst" else {})
    control.post("/_sandbox/faults", json={"amocrm": {fault: spec}}).raise_for_status()
    result = run_flow(env, raise_on_error=False)
    faults = control.post("/_sandbox/faults", json={"abcp": None}).json()["amocrm"]  # amoCRM's, untouched
    assert faults.get(fault, {"count": 0})["count"] == 0, "the fault really fired"
    control.post("/_sandbox/faults", json={"amocrm": None}).raise_for_status()
    if not result.success:
        push(env)
    log = event_log(env)
    assert {k: v["status"] for k, v in log.items()} == dict.fromkeys(
        ("lost-new", "lost-known", "lost-nolead"), "success"
    )
    made = Counter(
        field(lead, ids.AMO_LEAD_FIELD_PAYMENT_ID)
        for lead in amo(control, "leads")
        if lead["name"].startswith("Оплата")
    )
    assert made["lost-new"] == 1 and made["lost-nolead"] == 1
    notes = Counter(
        line
        for note in amo(control, "notes")
        for line in note["params"]["text"].splitlines()
        if line.startswith("Payment ID: lost-")
    )
    assert set(notes.values()) == {1} and len(notes) == 3
    assert Counter(field(c, ids.AMO_CONTACT_FIELD_TG_ID) for c in amo(control, "contacts"))["2020"] == 1
    lead = api.get("leads", known_lead)
    assert (
        field(lead, ids.AMO_LEAD_FIELD_TOTAL_PAID) == "10500" and field(lead, ids.AMO_LEAD_FIELD_PURCHASE_COUNT) == "2"
    )


def test_a_payment_whose_note_was_found_is_settled_without_a_request(env: dict[str, str]) -> None:
    # after a crash the engine may hand back a payment it found applied but whose payload has changed
    # since (new settings): its note is there, so nothing is sent again
    with environment(env), dg.build_resources(resources()) as built:
        store = built.warehouse.warehouse()
        with built.amocrm_payments.client() as client:
            settings = built.payments.settings()
            contacts = AmoContactIndex.load(store, client.root, settings.contact_rule)
            destination = PaymentsDestination(client, settings, PaymentLedger(store), contacts)
            ids = {"contact": "1", "lead": "2", "note": "3"}
            change = Change("p-1", "update", {}, None, ids, attempts=0, hash="new", in_flight=True, attempt_hash="old")
            assert destination.push([change]) == [Outcome("p-1", "succeeded", "settle", ids)]
            assert destination.requests_used() == 0
