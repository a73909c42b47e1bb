"""The education platform emulator: its payloads, signatures and sender against a real receiver (and the
amoCRM sandbox for known customers), and the ``integration-sync sandbox send-payments`` command."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_sync.cli import main
from integration_sync.sandbox.amocrm_schema import AMO_CONTACT_FIELD_TG_ID, AMO_CONTACT_FIELD_TG_USERNAME, SUBJECTS
from integration_sync.sandbox.env import sandbox_env
from integration_sync.sandbox.platform import (
    PLATFORM_WEBHOOK_SECRET,
    PaymentGenerator,
    fetch_known_customers,
    run_sends,
    send_payments,
    sign,
)
from integration_sync.webhooks.answers import Refused
from integration_sync.webhooks.app import verify
from integration_sync.webhooks.models import MOSCOW, PaymentWebhook
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings

SECRET = PLATFORM_WEBHOOK_SECRET
PATH = "/webhook/payment"
ENV_KEYS = ("PLATFORM_WEBHOOK_SECRET", "WEBHOOK_URL", "WEBHOOK_HOST", "WEBHOOK_PORT", "SANDBOX_BASE_URL")
# the seed's pipeline rules, written out again so the emulator's own labels are checked, not trusted
PARTNERS = {"advcake", "flocktory", "tutortop", "sravni", "tbank", "reshuege", "ris.promo", "gdeslon", "admitad", "pfm"}
YANDEX = {"cpc", "el-ege", "cpm"}


def pipeline_of(utm: dict[str, Any] | None) -> str:
    utm = utm or {}
    if (utm.get("source") or "") in PARTNERS:
        return "partners"
    return "yandex" if (utm.get("medium") or "") in YANDEX else "site"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverServer]:
    with ReceiverServer(ReceiverSettings(secret=SECRET, inbox_path=tmp_path / "inbox.sqlite")) as server:
        yield server


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """None of the sender's variables set; ones `.env` loading adds are removed again after the test."""
    for key in ENV_KEYS:
        monkeypatch.setenv(key, "x")  # records the original state for undo
        monkeypatch.delenv(key)
    return monkeypatch


def contact_values(contact: dict[str, Any]) -> dict[str, set[str]]:
    values: dict[str, set[str]] = {"phone": set(), "email": set(), "telegram_id": set(), "telegram_tag": set()}
    keys = {"PHONE": "phone", "EMAIL": "email", AMO_CONTACT_FIELD_TG_ID: "telegram_id"}
    keys[AMO_CONTACT_FIELD_TG_USERNAME] = "telegram_tag"
    for cf in contact.get("custom_fields_values") or []:
        key = keys.get(cf.get("field_code")) or keys.get(cf["field_id"])
        if key:
            values[key] |= {str(v["value"]) for v in cf["values"]}
    return values


# ------------------------------------------------------------------------------------------- payloads
def test_generated_payloads_validate_and_cover_every_pipeline_and_exam() -> None:
    before = datetime.now(MOSCOW).replace(microsecond=0)
    payments = PaymentGenerator(seed=11).payments(300)
    after = datetime.now(MOSCOW)
    pipelines: Counter[str] = Counter()
    projects: Counter[str] = Counter()
    no_telegram = 0
    for payment in payments:
        webhook = PaymentWebhook.model_validate_json(payment.body())
        order = webhook.course_order
        raw = payment.payload["course_order"]
        assert order.status == "CONFIRMED" and order.currency == "RUB" and order.domain == "pl.el-ed.ru"
        assert re.fullmatch(r"pay_\d+", order.payment_id) and re.fullmatch(r"inv_\d+", order.invoice_id or "")
        assert before <= order.created_at <= after + timedelta(seconds=1)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", raw["created_at"])
        assert 1 <= len(order.course_order_items) <= 3
        subjects = [
            item.course.subject.name for item in order.course_order_items if item.course and item.course.subject
        ]
        assert len(subjects) == len(set(subjects)) == len(order.course_order_items) and set(subjects) <= set(SUBJECTS)
        assert all(Decimal(2990) <= item.cost <= Decimal(15000) for item in order.course_order_items)
        exams = {
            item.course.subject.project for item in order.course_order_items if item.course and item.course.subject
        }
        assert len(exams) == 1
        projects.update(str(exam) for exam in exams)
        assert payment.pipeline == pipeline_of(raw["utm"])
        pipelines[payment.pipeline] += 1
        if raw["utm"] is not None:
            assert set(raw["utm"]) == {"source", "medium", "compaign", "term", "content", "ym"}
        user = raw["user"]
        assert re.fullmatch(r"(8|\+7)9\d{9}", user["phone"])  # new customers: 8XXXXXXXXXX or +7XXXXXXXXXX
        no_telegram += user["telegram_id"] is None
        assert not payment.known_customer
    assert len({p.payment_id for p in payments}) == 300
    assert set(projects) == {"ЕГЭ", "ОГЭ"}
    assert set(pipelines) == {"partners", "yandex", "site"} and min(pipelines.values()) >= 50
    assert 0 < no_telegram < 300
    assert any(p.payload["course_order"]["code"] for p in payments)  # promo codes, sometimes
    assert any(p.payload["course_order"]["utm"] is None for p in payments)


def test_the_same_seed_gives_the_same_payments() -> None:
    def clock() -> datetime:
        return datetime(2025, 1, 20, 14, 49, 20, tzinfo=MOSCOW)

    first = [p.payload for p in PaymentGenerator(seed=4, clock=clock).payments(50)]
    assert first == [p.payload for p in PaymentGenerator(seed=4, clock=clock).payments(50)]
    assert first != [p.payload for p in PaymentGenerator(seed=5, clock=clock).payments(50)]
    assert first[0]["course_order"]["created_at"] == "2025-01-20 14:49:20"


# ----------------------------------------------------------------------------------------- signatures
@pytest.mark.parametrize("timestamp", [None, 1_737_373_760])
def test_signatures_verify_with_the_receiver(tmp_path: Path, timestamp: int | None) -> None:
    settings = ReceiverSettings(secret=SECRET, inbox_path=tmp_path / "inbox.sqlite")
    body = PaymentGenerator(seed=1).payment().body()
    headers = sign(body, SECRET, timestamp)
    assert ("X-Timestamp" in headers) == (timestamp is not None)
    verify(settings, httpx.Headers(headers), body, now=timestamp)  # no exception: authenticated
    for bad in (sign(body, "another-secret", timestamp), sign(body + b" ", SECRET, timestamp)):
        with pytest.raises(Refused) as refused:
            verify(settings, httpx.Headers(bad), body, now=timestamp)
        assert refused.value.status == 401


# -------------------------------------------------------------------------------------------- sending
def test_send_payments_gets_exactly_the_expected_answers(receiver: ReceiverServer) -> None:
    report = run_sends(receiver.url(PATH), SECRET, 100, duplicates=0.1, bad_signatures=0.1, concurrency=8, seed=21)
    summary = report.summary()
    assert summary["status_counts"] == {"200": 80, "401": 10, "409": 10}
    assert summary["expected_counts"] == summary["status_counts"] and summary["unexpected"] == 0
    assert summary["sent"] == 100 and summary["transport_errors"] == 0 and summary["errors"] == []
    assert summary["unique_payments"] == summary["unique_accepted"] == 80
    assert summary["duplicates_sent"] == 10 and summary["bad_signatures_sent"] == 10
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    json.dumps(summary)  # JSON-able
    events = receiver.inbox.read_after(0, 1000)
    keys = [e.event_key for e in events]
    assert len(keys) == len(set(keys)) == 80  # each unique payment once, nothing wrongly signed
    assert set(keys) == {f"payment:{pid}" for pid in report.accepted_ids}
    assert {f"payment:{p.payment_id}" for p in report.payments} == set(keys)
    stored = {e.event_key: e.payload for e in events}
    assert all(stored[f"payment:{p.payment_id}"].encode() == p.body() for p in report.payments)


def test_send_payments_paces_to_the_rate(receiver: ReceiverServer) -> None:
    summary = send_payments(receiver.url(PATH), SECRET, 30, rate=100.0, concurrency=4, seed=2)
    assert summary["status_counts"] == {"200": 30}
    assert summary["elapsed_s"] >= 0.28 and summary["requests_per_s"] <= 110
    assert "schedule_lag_ms_max" in summary


def test_send_payments_reports_transport_errors() -> None:
    summary = send_payments("http://127.0.0.1:9/webhook/payment", SECRET, 3, concurrency=1, seed=1, timeout=2)
    assert summary["transport_errors"] == 3 and summary["status_counts"] == {} and summary["errors"]


def test_known_customers_are_amocrm_sandbox_contacts(sandbox: Any, receiver: ReceiverServer) -> None:
    contacts = {c["id"]: c for c in httpx.get(sandbox.url("/_sandbox/amocrm/contacts")).json()}
    known = fetch_known_customers(sandbox.base_url)
    assert known and all(c.contact_id in contacts for c in known)
    payments = PaymentGenerator(seed=3, known_customers=known, known_share=1.0).payments(60)
    by_id = {c.contact_id: c for c in known}
    only_one = 0
    for payment in payments:
        assert payment.known_customer
        user = payment.payload["course_order"]["user"]
        identifiers = {k: user[k] for k in ("phone", "email", "telegram_id") if user[k]}
        assert identifiers
        # the one contact holding every identifier sent, exactly as amoCRM holds it
        matching = [
            cid for cid, c in contacts.items() if all(v in contact_values(c)[k] for k, v in identifiers.items())
        ]
        assert len(matching) == 1
        customer = by_id[matching[0]]
        assert (user["first_name"], user["last_name"]) == (customer.first_name, customer.last_name)
        only_one += len(identifiers) == 1
    assert only_one > 0
    summary = send_payments(receiver.url(PATH), SECRET, 40, seed=8, known_customers=known)
    assert summary["status_counts"] == {"200": 40} and 0 < summary["known_customer_payments"] < 40


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_sends_and_prints_the_json_summary(
    sandbox: Any, receiver: ReceiverServer, clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    clean_env.setenv("PLATFORM_WEBHOOK_SECRET", SECRET)
    clean_env.setenv("SANDBOX_BASE_URL", sandbox.base_url)
    argv = ["sandbox", "send-payments", "--count", "40", "--duplicates", "0.1", "--bad-signatures", "0.05"]
    code = main([*argv, "--url", receiver.url(PATH), "--seed", "9", "--project-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    summary = json.loads(out)
    assert summary["status_counts"] == {"200": 34, "401": 2, "409": 4} and summary["unexpected"] == 0
    assert summary["seed"] == 9 and summary["known_customer_payments"] > 0
    assert receiver.inbox.count() == 34
    assert SECRET not in out


def test_cli_reads_dotenv_and_defaults_the_url_from_host_and_port(
    receiver: ReceiverServer, clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    (tmp_path / ".env").write_text(
        f"PLATFORM_WEBHOOK_SECRET={SECRET}\nWEBHOOK_HOST=127.0.0.1\nWEBHOOK_PORT={receiver.port}\n"
    )
    code = main(["sandbox", "send-payments", "--count", "5", "--project-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0
    summary = json.loads(out)
    assert summary["url"] == receiver.url(PATH) and summary["status_counts"] == {"200": 5}
    assert err.count("\n") == 1 and err.startswith("warning:")  # no sandbox: new customers only
    assert SECRET not in out + err


def test_cli_warns_when_the_sandbox_is_unreachable(
    receiver: ReceiverServer, clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    clean_env.setenv("PLATFORM_WEBHOOK_SECRET", SECRET)
    clean_env.setenv("WEBHOOK_URL", receiver.url(PATH))
    code = main(
        [
            "sandbox",
            "send-payments",
            "--count",
            "3",
            "--sandbox-url",
            "http://127.0.0.1:9",
            "--project-dir",
            str(tmp_path),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["status_counts"] == {"200": 3}
    assert err.count("\n") == 1 and "http://127.0.0.1:9" in err and "new customers only" in err


def test_cli_without_the_secret_exits_2(clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: Any) -> None:
    code = main(["sandbox", "send-payments", "--count", "1", "--project-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "PLATFORM_WEBHOOK_SECRET is not set" in err


def test_sandbox_env_carries_the_platform_secret_and_the_receiver_url(capsys: Any) -> None:
    env = sandbox_env("http://127.0.0.1:8787")
    assert env["PLATFORM_WEBHOOK_SECRET"] == PLATFORM_WEBHOOK_SECRET
    assert env["WEBHOOK_URL"] == "http://127.0.0.1:8001/webhook/payment"
    assert sandbox_env("http://x", "http://hook:1")["WEBHOOK_URL"] == "http://hook:1/webhook/payment"
    assert main(["sandbox", "env", "--webhook-host", "localhost", "--webhook-port", "9001"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "export WEBHOOK_URL=http://localhost:9001/webhook/payment" in lines
    assert f"export PLATFORM_WEBHOOK_SECRET={PLATFORM_WEBHOOK_SECRET}" in lines
