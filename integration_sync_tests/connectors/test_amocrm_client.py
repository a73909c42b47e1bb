"""amoCRM client: wire helpers and models (pure), then against the sandbox emulator: 429 retries,
the 403 block shared by every process, 204 → empty, verified phone/email/field searches, 400
validation errors per request id, HAL paging, leads/notes/links/catalogs, and the 7 req/s budget
shared by two processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_sync.connectors.amocrm import (
    AmoCrmClient,
    ComplexLeadResult,
    Contact,
    Lead,
    Pipeline,
    clear_field,
    enum_field_value,
    field_value,
    phone_query_forms,
    read_field_values,
    sanitize_for_write,
    to_write_form,
)
from integration_sync.connectors.amocrm_auth import AmoAuth, classify_amocrm, parse_amocrm_error
from integration_sync.connectors.errors import AuthError, BatchItemsError, BlockedError
from integration_sync.connectors.http import ResponseKind
from integration_sync.connectors.ratelimit import BlockFlag
from integration_sync.sync.normalize import normalize_phone
from integration_sync_tests.connectors.sandbox_support import FAST_POLICY, Sandbox, running_sandbox

CONTACT_ID = 20000001
CATALOG_ID = 7101
TG_ID_FIELD = 800005

# -- pure: custom fields, phones, errors, models --------------------------------------------------


def test_custom_field_write_forms() -> None:
    assert field_value(900101, "K-1") == {"field_id": 900101, "values": [{"value": "K-1"}]}
    assert field_value("900101", "K-1") == {"field_id": 900101, "values": [{"value": "K-1"}]}
    assert field_value("PHONE", "+77011234567", enum_code="MOB") == {
        "field_code": "PHONE",
        "values": [{"value": "+77011234567", "enum_code": "MOB"}],
    }
    assert enum_field_value(900110, 910001, 910003) == {
        "field_id": 900110,
        "values": [{"enum_id": 910001}, {"enum_id": 910003}],
    }
    assert clear_field(900112) == {"field_id": 900112, "values": None}


READ_FORM = [
    {
        "field_id": 3,
        "field_name": "Телефон",
        "field_code": "PHONE",
        "field_type": "multitext",
        "values": [{"value": "+79123", "enum_id": 1, "enum": "WORK"}, {"value": "8916", "enum_code": "MOB"}],
    },
    {
        "field_id": 900110,
        "field_name": "Предметы",
        "field_type": "multiselect",
        "values": [{"value": "Русский", "enum_id": 910001}],
    },
    {"field_id": 900112, "values": None},
]


def test_read_form_becomes_write_form_without_enum() -> None:
    assert to_write_form(READ_FORM) == [
        {"field_id": 3, "values": [{"value": "+79123", "enum_id": 1}, {"value": "8916", "enum_code": "MOB"}]},
        {"field_id": 900110, "values": [{"value": "Русский", "enum_id": 910001}]},
        {"field_id": 900112, "values": None},
    ]
    body = {
        "name": "L",
        "custom_fields_values": READ_FORM,
        "_embedded": {"contacts": [{"custom_fields_values": READ_FORM}]},
    }
    cleaned = sanitize_for_write(body)
    assert "enum" not in json.dumps(cleaned).replace("enum_id", "").replace("enum_code", "")
    assert "field_name" not in json.dumps(cleaned)
    assert read_field_values(READ_FORM, "PHONE") == ["+79123", "8916"]
    assert read_field_values(READ_FORM, 900110) == ["Русский"]
    assert read_field_values(None, 1) == []


def test_select_field_is_written_with_enum_id_only() -> None:
    select = {"field_id": 7, "field_type": "select", "values": [{"value": "ЕГЭ", "enum_id": 11, "enum_code": "EGE"}]}
    assert to_write_form([select]) == [{"field_id": 7, "values": [{"enum_id": 11}]}]


def test_phone_query_forms() -> None:
    assert phone_query_forms("+77011234567") == ["+77011234567", "87011234567", "77011234567"]
    assert phone_query_forms("+49301234567") == ["+49301234567", "49301234567"]
    assert phone_query_forms("") == []


def _response(status: int, *, json_body: Any = None, html: str | None = None) -> httpx.Response:
    request = httpx.Request("GET", "https://acc.amocrm.ru/api/v4/leads")
    if html is not None:
        return httpx.Response(status, html=html, request=request)
    return httpx.Response(status, json=json_body, request=request)


def test_classification_of_amocrm_answers() -> None:
    page = "<html><head><title>403 Forbidden</title></head><body><center>nginx</center></body></html>"
    assert classify_amocrm(_response(403, html=page)) is ResponseKind.BLOCKED
    assert classify_amocrm(_response(403, json_body={"title": "Forbidden", "status": 403})) is ResponseKind.AUTH
    assert classify_amocrm(_response(429, html="<html>429 Too Many Requests</html>")) is ResponseKind.THROTTLED
    assert classify_amocrm(_response(401, json_body={"title": "Unauthorized"})) is ResponseKind.AUTH
    assert classify_amocrm(_response(402, json_body={"title": "Payment Required"})) is ResponseKind.CLIENT_ERROR


def test_validation_errors_are_parsed_per_request_id() -> None:
    body = {
        "validation-errors": [
            {
                "request_id": "0",
                "errors": [
                    {
                        "code": "NotSupportedChoice",
                        "path": "custom_fields_values.0.field_id",
                        "detail": "The value you selected is not a valid choice.",
                    }
                ],
            }
        ],
        "title": "Bad Request",
        "type": "https://httpstatus.es/400",
        "status": 400,
        "detail": "Request validation failed",
    }
    info = parse_amocrm_error(_response(400, json_body=body))
    assert info.item_errors == {
        "0": ["custom_fields_values.0.field_id: The value you selected is not a valid choice. (NotSupportedChoice)"]
    }
    assert "Request validation failed" in info.message
    revoked = {"hint": "Token has been revoked", "title": "Некорректный запрос", "status": 401, "detail": "..."}
    assert parse_amocrm_error(_response(401, json_body=revoked)).message == "Token has been revoked"


def test_models_tolerate_nulls_and_extras() -> None:
    lead = Lead.model_validate(
        {
            "id": 3912171,
            "name": "Example",
            "price": 12,
            "status_id": 143,
            "pipeline_id": 3104455,
            "custom_fields_values": None,
            "score": None,
            "_embedded": {
                "tags": None,
                "contacts": [{"id": 10971465, "is_main": True, "_links": {"self": {"href": "x"}}}],
                "catalog_elements": [{"id": 525439, "metadata": {"quantity": 1, "catalog_id": 4521}}],
            },
        }
    )
    assert lead.is_closed and lead.contact_ids == [10971465] and lead.main_contact_id == 10971465
    assert lead.field_values(1) == [] and lead.model_extra == {"score": None}
    assert lead.embedded.contacts[0].id == 10971465
    item = lead.embedded.catalog_elements[0].metadata
    assert item is not None and (item.quantity, item.catalog_id) == (1, 4521)
    contact = Contact.model_validate({"id": 3, "custom_fields_values": READ_FORM, "_embedded": {"leads": [{"id": 1}]}})
    assert contact.phones() == ["+79123", "8916"] and contact.lead_ids == [1]
    pipeline = Pipeline.model_validate(
        {"id": 1, "name": "P", "_embedded": {"statuses": [{"id": 142, "name": "Успешно реализовано", "type": 0}]}}
    )
    assert pipeline.status_by_name("успешно реализовано") is not None
    merged = ComplexLeadResult.model_validate(
        {"id": 9, "contact_id": 12, "company_id": 13, "request_id": ["2"], "merged": True}
    )
    assert merged.request_id == ["2"] and merged.merged


def test_block_flag_lapses_after_its_cool_down_and_can_be_cleared(tmp_path: Path) -> None:
    now = [1000.0]
    flag = BlockFlag(name="amocrm", state_path=tmp_path / "b.json", cooldown_s=60, clock=lambda: now[0])
    assert flag.active() is None
    flag.trip("HTTP 403 nginx", status=403)
    info = flag.active()
    assert info is not None and info.since == 1000.0 and info.status == 403
    other = BlockFlag(name="amocrm", state_path=tmp_path / "b.json", cooldown_s=60, clock=lambda: now[0])
    assert other.active() == info  # another process sees it through the file
    now[0] += 61
    assert flag.active() is None and other.active() is None
    flag.trip("again")
    assert other.clear() and flag.active() is None and not other.clear()


# -- against the sandbox --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(amocrm_contacts=5, kaspi_orders=0) as sb:
        yield sb


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    sandbox.reset()
    return sandbox


def long_lived(sb: Sandbox) -> str:
    return str(next(t for t in sb.control("GET", "amocrm/tokens")["access_valid"] if "long" in t))


@pytest.fixture
def client(sb: Sandbox, tmp_path: Path) -> Iterator[AmoCrmClient]:
    auth = AmoAuth(sb.env["AMO_BASE_URL"], long_lived_token=long_lived(sb))
    with AmoCrmClient(
        sb.env["AMO_BASE_URL"], auth=auth, rate_state_path=tmp_path / "amocrm-rate.json", policy=FAST_POLICY
    ) as amo:
        yield amo


def amo_requests(sb: Sandbox) -> int:
    return int(sb.stats("amocrm")["requests"])


def test_429_html_without_retry_after_is_retried_and_penalizes_the_shared_limiter(
    sb: Sandbox, client: AmoCrmClient
) -> None:
    sb.faults({"amocrm": {"error_burst": {"count": 3, "status": 429}}})
    contact = client.get_contact(CONTACT_ID)
    assert contact is not None and contact.id == CONTACT_ID
    stats = client.stats.snapshot()
    assert stats["throttled"] == 3 and stats["retries"] == 3 and stats["requests"] == 4


def _hammer_until_blocked(sb: Sandbox, token: str) -> None:
    """Another, over-eager integration on the account: 429s pile up until amoCRM blocks it."""
    sb.faults({"amocrm": {"block_mode": True}})
    url = f"{sb.env['AMO_BASE_URL']}/api/v4/contacts/{CONTACT_ID}"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as raw:
        for _ in range(60):
            if raw.get(url).status_code == 403:
                return
    raise AssertionError("the sandbox never blocked the account")


BLOCKED_WORKER = r"""
import json, sys
from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.connectors.amocrm_auth import AmoAuth
from integration_sync.connectors.errors import BlockedError

base, token, rate_path = sys.argv[1:4]
with AmoCrmClient(base, auth=AmoAuth(base, long_lived_token=token), rate_state_path=rate_path) as client:
    try:
        client.get_contact(20000001)
        outcome = "called"
    except BlockedError as exc:
        outcome = "blocked: " + str(exc)
    print(json.dumps({"outcome": outcome, "sent": client.stats.requests}))
"""


def test_403_block_page_stops_every_process_until_cleared(sb: Sandbox, client: AmoCrmClient, tmp_path: Path) -> None:
    token = long_lived(sb)
    _hammer_until_blocked(sb, token)
    with pytest.raises(BlockedError):
        client.get_contact(CONTACT_ID)
    assert client.stats.requests == 1  # never retried
    record = json.loads((tmp_path / "amocrm-rate.blocked.json").read_text())
    assert record["status"] == 403 and record["since"] <= time.time() < record["until"]

    before = amo_requests(sb)
    with pytest.raises(BlockedError, match="suspended"):
        client.find_contacts("anything")  # this process: refused without sending
    worker = subprocess.run(
        [sys.executable, "-c", BLOCKED_WORKER, sb.env["AMO_BASE_URL"], token, str(tmp_path / "amocrm-rate.json")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    result = json.loads(worker.stdout)
    assert result["outcome"].startswith("blocked:") and result["sent"] == 0  # another process: refused too
    assert token not in worker.stdout + worker.stderr
    assert amo_requests(sb) == before  # nothing reached amoCRM while blocked

    sb.control("POST", "amocrm/unblock", {})
    sb.faults({"amocrm": None})
    assert client.clear_block() and client.blocked() is None
    time.sleep(1.0)  # let the account's own rate window drain after the hammering
    assert client.get_contact(CONTACT_ID) is not None


def test_select_read_then_written_back_is_accepted(client: AmoCrmClient, sb: Sandbox) -> None:
    """A lead's read form written back: its select value carries enum_code (as real amoCRM may read
    it), which amoCRM refuses on a select field; the client sends enum_id only."""
    direction = int(sb.env["AMO_LEAD_FIELD_DIRECTION"])
    ege = int(sb.env["AMO_DIRECTION_EGE"])
    [made] = client.create_leads([{"name": "select", "custom_fields_values": [enum_field_value(direction, ege)]}])
    lead = client.get_lead(made.id)
    assert lead is not None
    read_form = [item.model_dump(exclude_none=True) for item in lead.custom_fields_values or []]
    for item in read_form:
        if item["field_id"] == direction:
            item["values"][0]["enum_code"] = "EGE"
    client.update_leads([{"id": made.id, "custom_fields_values": read_form}])
    again = client.get_lead(made.id)
    assert again is not None and again.enum_ids(direction) == [ege]


def phone_key(raw: str) -> str | None:
    return normalize_phone(raw, "KZ")


def test_204_answers_are_empty_results(client: AmoCrmClient) -> None:
    assert client.find_contacts("no-such-contact-anywhere-42") == []
    assert client.find_contacts_by_phone("+70000000001", phone_key) == []
    assert client.get_contact(999_999_999) is None
    assert client.get_lead(999_999_999) is None
    assert client.find_leads("no-such-lead-anywhere-42") == []


def test_phone_email_and_field_searches_return_only_verified_hits(client: AmoCrmClient) -> None:
    made = client.create_contacts(
        [
            {"name": "A", "custom_fields_values": [field_value("PHONE", "+77011234567", enum_code="MOB")]},
            # a fuzzy hit: the number is in its name, but its PHONE is another one
            {"name": "Перезвонить +77011234567", "custom_fields_values": [field_value("PHONE", "+77019999999")]},
            {"name": "C", "custom_fields_values": [field_value("PHONE", "87011234567")]},
            {"name": "D", "custom_fields_values": [field_value(TG_ID_FIELD, "555777")]},
            {
                "name": "E 555777",
                "custom_fields_values": [field_value("EMAIL", "E.Mail@Example.com", enum_code="WORK")],
            },
        ]
    )
    a, b, c, d, e = (m.id for m in made)
    assert b in {x.id for x in client.find_contacts("+77011234567")}  # the raw query does hit B
    assert {x.id for x in client.find_contacts_by_phone("+77011234567", phone_key)} == {a, c}
    assert {x.id for x in client.find_contacts_by_phone("87011234567", phone_key)} == {a, c}
    assert [x.id for x in client.find_contacts_by_field(TG_ID_FIELD, "555777")] == [d]
    assert [x.id for x in client.find_contacts_by_email("e.mail@example.com")] == [e]


def test_400_validation_errors_name_the_failing_items(sb: Sandbox, client: AmoCrmClient) -> None:
    before = len(sb.control("GET", "amocrm/contacts"))
    items: list[dict[str, Any]] = [
        {"name": "ok", "request_id": "r0"},
        {"name": "bad", "request_id": "r1", "custom_fields_values": [field_value(123, "x")]},
        {"name": "ok too"},
    ]
    with pytest.raises(BatchItemsError) as caught:
        client.create_contacts(items)
    error = caught.value
    assert error.status == 400 and set(error.item_errors) == {"r1"}
    assert "custom_fields_values.0.field_id" in error.item_errors["r1"][0]
    assert error.failed_positions == [1] and error.done == []
    assert len(sb.control("GET", "amocrm/contacts")) == before  # the refused request applied nothing

    # a long list goes 50 per request: the first request was applied, the second refused
    many: list[dict[str, Any]] = [{"name": f"bulk {n}"} for n in range(55)]
    many[52]["custom_fields_values"] = [field_value(123, "x")]
    with pytest.raises(BatchItemsError) as caught:
        client.create_contacts(many)
    assert caught.value.failed_positions == [52] and len(caught.value.done) == 50
    assert len(sb.control("GET", "amocrm/contacts")) == before + 50


def test_read_form_values_can_be_written_back(sb: Sandbox, client: AmoCrmClient) -> None:
    sb.control("POST", "reset", {"amocrm_enum_read_key": "enum"})  # amoCRM's documented read key
    contact = client.get_contact(CONTACT_ID)
    assert contact is not None and contact.custom_fields_values
    assert any(v.enum for f in contact.custom_fields_values for v in f.values or [])
    body = contact.model_dump(by_alias=True, include={"id", "custom_fields_values"})
    assert client.update_contacts([body])[0].id == CONTACT_ID  # "enum" dropped: no FieldNotExpected
    sb.control("POST", "reset", {"amocrm_enum_read_key": "enum_code"})


def test_lists_follow_hal_next_links(sb: Sandbox, client: AmoCrmClient) -> None:
    everyone = sb.control("GET", "amocrm/contacts")
    contacts = list(client.iter_contacts(limit=2))
    assert sorted(c.id for c in contacts) == sorted(c["id"] for c in everyone)
    assert client.stats.by_endpoint["contacts"] == -(-len(everyone) // 2)
    recent = list(client.iter_contacts_updated_since(max(c["updated_at"] for c in everyone)))
    assert recent and all(c.updated_at is not None and c.updated_at >= recent[-1].updated_at for c in recent)  # type: ignore[operator]


def test_leads_notes_links_and_catalogs(sb: Sandbox, client: AmoCrmClient) -> None:
    pipelines = {p.id: p for p in client.list_pipelines()}
    pipeline_id = int(sb.env["AMO_PIPELINE_ID"])
    assert {142, 143} <= {s.id for s in pipelines[pipeline_id].statuses}
    fields = {f.id: f for f in client.list_custom_fields("leads")}
    direction = fields[int(sb.env["AMO_LEAD_FIELD_DIRECTION"])]
    assert direction.enum_id("ЕГЭ") == int(sb.env["AMO_DIRECTION_EGE"])
    assert CATALOG_ID in {c.id for c in client.list_catalogs()}

    complex_results = client.create_leads_complex(
        [
            {
                "name": "Kaspi №1",
                "price": 100,
                "pipeline_id": pipeline_id,
                "request_id": "order-1",
                "_embedded": {
                    "contacts": [{"name": "Buyer", "custom_fields_values": [field_value("PHONE", "+77001112233")]}]
                },
            },
            {"name": "Kaspi №2", "price": 200, "pipeline_id": pipeline_id, "request_id": "order-2"},
        ]
    )
    assert [r.request_id for r in complex_results] == [["order-1"], ["order-2"]]
    first, second = complex_results
    assert first.contact_id is not None
    plain = client.create_leads(
        [
            {
                "name": "Kaspi №3",
                "pipeline_id": pipeline_id,
                "custom_fields_values": [enum_field_value(direction.id, int(sb.env["AMO_DIRECTION_OGE"]))],
                "_embedded": {"contacts": [{"id": first.contact_id}]},
            }
        ]
    )
    lead = client.get_lead(plain[0].id)
    assert lead is not None and lead.contact_ids == [first.contact_id]
    assert lead.enum_ids(direction.id) == [int(sb.env["AMO_DIRECTION_OGE"])]
    assert [x.id for x in client.find_leads("Kaspi №3")] == [plain[0].id]

    with pytest.raises(ValueError, match="pipeline_id"):
        client.update_leads([{"id": first.id, "status_id": 142}])
    client.update_leads([{"id": first.id, "status_id": 142, "pipeline_id": pipeline_id}])
    won = client.get_lead(first.id)
    assert won is not None and won.status_id == 142 and won.is_closed

    notes = client.add_notes([(first.id, "Заказ Kaspi №1"), (second.id, "Заказ Kaspi №2")])
    assert [n.entity_id for n in notes] == [first.id, second.id]
    assert [n.text for n in client.list_lead_notes(first.id)] == ["Заказ Kaspi №1"]
    before = client.requests_used
    both = client.list_notes(iter([first.id, second.id, first.id]), note_type="common")
    assert sorted((n.entity_id, n.text) for n in both) == [  # one request, two leads
        (first.id, "Заказ Kaspi №1"),
        (second.id, "Заказ Kaspi №2"),
    ]
    assert client.requests_used - before == 1

    created = client.create_catalog_elements(
        CATALOG_ID,
        [
            {"name": "Чайник", "request_id": "SKU-1", "custom_fields_values": [field_value("SKU", "SKU-1")]},
            {"name": "Утюг", "custom_fields_values": [field_value("SKU", "SKU-2")]},
        ],
    )
    assert [e.name for e in created] == ["Чайник", "Утюг"]
    assert [e.id for e in client.find_catalog_elements(CATALOG_ID, "SKU-2")] == [created[1].id]
    assert {e.id for e in created} <= {e.id for e in client.iter_catalog_elements(CATALOG_ID)}
    links = client.link_catalog_elements(
        [(first.id, created[0].id, 2, CATALOG_ID), (second.id, created[1].id, 1, CATALOG_ID)]
    )
    assert [(link.entity_id, link.to_entity_id) for link in links] == [
        (first.id, created[0].id),
        (second.id, created[1].id),
    ]
    items = [x for x in client.list_lead_links(first.id) if x.to_entity_type == "catalog_elements"]
    assert [(x.to_entity_id, x.metadata and (x.metadata.quantity, x.metadata.catalog_id)) for x in items] == [
        (created[0].id, (2, CATALOG_ID))
    ]


def test_a_json_403_is_an_auth_error_not_a_block(sb: Sandbox, client: AmoCrmClient) -> None:
    with pytest.raises(AuthError):
        AmoCrmClient(
            sb.env["AMO_BASE_URL"], auth=AmoAuth(sb.env["AMO_BASE_URL"], long_lived_token="wrong"), policy=FAST_POLICY
        ).get_contact(CONTACT_ID)
    assert client.blocked() is None


# -- the 7 req/s budget belongs to the integration, across processes -------------------------------

BUDGET_WORKER = r"""
import json, sys, time
from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.connectors.amocrm_auth import AmoAuth

base, token, rate_path, out, start_at, count = *sys.argv[1:5], float(sys.argv[5]), int(sys.argv[6])
with AmoCrmClient(base, auth=AmoAuth(base, long_lived_token=token), rate_state_path=rate_path) as client:
    time.sleep(max(0.0, start_at - time.time()))
    stamps = []
    for _ in range(count):
        assert client.get_contact(20000001) is not None
        stamps.append(time.time())
    throttled = client.stats.throttled
with open(out, "w") as f:
    json.dump({"stamps": stamps, "throttled": throttled}, f)
"""


def test_two_processes_share_the_seven_per_second_budget(sb: Sandbox, tmp_path: Path) -> None:
    count = 10
    token = long_lived(sb)
    start_at = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                BUDGET_WORKER,
                sb.env["AMO_BASE_URL"],
                token,
                str(tmp_path / "amocrm-rate.json"),
                str(tmp_path / f"out{n}.json"),
                str(start_at),
                str(count),
            ]
        )
        for n in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=30) == 0
    results = [json.loads((tmp_path / f"out{n}.json").read_text()) for n in range(2)]
    stamps = sorted(results[0]["stamps"] + results[1]["stamps"])
    assert stamps[-1] - start_at >= 2 * count / 7
    assert sum(r["throttled"] for r in results) == 0  # together they never tripped amoCRM's limit
    assert sb.stats("amocrm")["throttled"] == 0
    # ...and in no one-second window did they send more than 7
    assert max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps) <= 7
