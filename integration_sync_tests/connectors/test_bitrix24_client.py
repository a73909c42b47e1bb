"""Bitrix24 client: PHP-bracket encoding, classification, and calls/batches/lists/duplicate lookup
against the sandbox emulator (throttle bursts, commit-then-drop)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from integration_sync.connectors.bitrix24 import (
    BatchCommandError,
    Bitrix24Client,
    classify_bitrix24,
    encode_params,
    is_idempotent_method,
)
from integration_sync.connectors.errors import (
    AmbiguousWriteError,
    ApiError,
    AuthError,
    ConfigError,
    RateLimitedError,
    TransientError,
)
from integration_sync.connectors.http import HttpPolicy, ResponseKind
from integration_sync.sync.normalize import normalize_phone
from integration_sync_tests.connectors.sandbox_support import FAST_POLICY, Sandbox, running_sandbox

# -- pure parts ---------------------------------------------------------------------------------


def test_encode_params_uses_php_brackets() -> None:
    params = {"fields": {"NAME": "Анна", "PHONE": [{"VALUE": "+7 916", "VALUE_TYPE": "WORK"}]}}
    assert encode_params(params) == (
        "fields[NAME]=%D0%90%D0%BD%D0%BD%D0%B0&fields[PHONE][0][VALUE]=%2B7%20916&fields[PHONE][0][VALUE_TYPE]=WORK"
    )


def test_encode_params_keeps_result_references_literal() -> None:
    params = {"fields": {"CONTACT_ID": "$result[c1]", "TITLE": "for $result[c1][NAME] & co"}}
    assert encode_params(params) == "fields[CONTACT_ID]=$result[c1]&fields[TITLE]=for%20$result[c1][NAME]%20%26%20co"


def test_encode_params_filter_operators_scalars_and_empties() -> None:
    params: dict[str, Any] = {
        "filter": {">ID": 5, "@ID": [1, 2]},
        "a": None,
        "b": True,
        "c": False,
        "d": [],
        "e": {},
        "f": 1.5,
    }
    assert encode_params(params) == "filter[%3EID]=5&filter[%40ID][0]=1&filter[%40ID][1]=2&a=&b=1&c=0&f=1.5"


def test_encode_params_round_trips_through_a_php_style_parser() -> None:
    from integration_sync.sandbox.core import parse_php_query  # the emulator's parse_str

    params = {"fields": {"NAME": "A&B=C", "EMAIL": [{"VALUE": "x+y@ex.com"}]}, "filter": {"=%NAME": "I%"}}
    assert parse_php_query(encode_params(params)) == params


@pytest.mark.parametrize(
    ("method", "idempotent"),
    [
        ("crm.contact.list", True),
        ("crm.deal.get", True),
        ("crm.contact.fields", True),
        ("crm.duplicate.findbycomm", True),
        ("crm.deal.userfield.list", True),
        ("crm.status.list", True),
        ("crm.status.entity.items", True),
        ("crm.category.list", True),
        ("crm.dealcategory.list", True),
        ("crm.dealcategory.stage.list", True),
        ("crm.contact.add", False),
        ("crm.deal.update", False),
        ("crm.contact.delete", False),
        ("some.unknown.method", False),
    ],
)
def test_idempotency_is_inferred_from_the_method(method: str, idempotent: bool) -> None:
    assert is_idempotent_method(method) is idempotent


def test_throttle_answers_are_classified_even_with_html_bodies() -> None:
    qle = httpx.Response(503, json={"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})
    otl_html = httpx.Response(429, html="<html><body>OPERATION_TIME_LIMIT: blocked</body></html>")
    maintenance = httpx.Response(503, html="<html><body>Maintenance</body></html>")
    creds = httpx.Response(401, json={"error": "INVALID_CREDENTIALS", "error_description": "Invalid"})
    invalid = httpx.Response(400, json={"error": "", "error_description": "Parameter 'fields' must be array."})
    assert classify_bitrix24(qle) is ResponseKind.THROTTLED
    assert classify_bitrix24(otl_html) is ResponseKind.THROTTLED
    assert classify_bitrix24(maintenance) is ResponseKind.SERVER_ERROR
    assert classify_bitrix24(creds) is ResponseKind.AUTH
    assert classify_bitrix24(invalid) is ResponseKind.CLIENT_ERROR
    assert classify_bitrix24(httpx.Response(200, json={"result": 1})) is ResponseKind.OK


def test_a_malformed_webhook_url_is_a_config_error_without_the_code() -> None:
    with pytest.raises(ConfigError) as caught:
        Bitrix24Client("https://portal.example/rest/secretcode-only/")
    assert "secretcode-only" not in str(caught.value)


def test_batch_size_limit_and_empty_batches() -> None:
    with Bitrix24Client("http://127.0.0.1:9/rest/1/code123/", policy=FAST_POLICY) as b24:
        with pytest.raises(ValueError):
            b24.batch({f"c{i}": ("crm.contact.get", {"id": i}) for i in range(51)}, halt=False)
        empty = b24.batch({}, halt=True)
        assert (empty.results, empty.errors, empty.not_executed) == ({}, {}, [])
        assert b24.requests_used == 0


# -- against the emulator ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_sandbox() -> Iterator[Sandbox]:
    with running_sandbox(seed=1, abcp_users=20, days=5) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(module_sandbox: Sandbox) -> Sandbox:
    module_sandbox.reset()
    return module_sandbox


@pytest.fixture
def b24(sandbox: Sandbox) -> Iterator[Bitrix24Client]:
    with Bitrix24Client(sandbox.env["B24_WEBHOOK_URL"], policy=FAST_POLICY) as client:
        yield client


def contacts_named(sandbox: Sandbox, name: str) -> list[dict[str, Any]]:
    rows = sandbox.control("GET", "bitrix24/contacts")
    return [row for row in rows if row.get("NAME") == name]


def test_call_round_trip_and_method_errors(b24: Bitrix24Client) -> None:
    cid = b24.call("crm.contact.add", {"fields": {"NAME": "Ann", "PHONE": [{"VALUE": "+79160000001"}]}})
    assert isinstance(cid, int)
    contact = b24.call("crm.contact.get", {"id": cid})
    assert contact["NAME"] == "Ann"
    assert contact["PHONE"][0]["VALUE"] == "+79160000001"
    with pytest.raises(ApiError) as bad_fields:
        b24.call("crm.contact.add", {"fields": "not an array"})
    assert (bad_fields.value.status, bad_fields.value.code) == (400, None)
    assert bad_fields.value.message == "Parameter 'fields' must be array."
    with pytest.raises(ApiError) as unknown:
        b24.call("crm.nothing.list")
    assert (unknown.value.status, unknown.value.code) == (404, "ERROR_METHOD_NOT_FOUND")
    assert b24.stats.snapshot()["by_endpoint"] == {
        "crm.contact.add": 2,
        "crm.contact.get": 1,
        "crm.nothing.list": 1,
    }


def test_a_wrong_webhook_code_is_an_auth_error(sandbox: Sandbox) -> None:
    url = sandbox.env["B24_WEBHOOK_URL"].replace("sandboxb24webhookcode", "wrongWebhookCode99")
    with Bitrix24Client(url, policy=FAST_POLICY) as b24, pytest.raises(AuthError) as caught:
        b24.call("crm.contact.list")
    assert caught.value.code == "INVALID_CREDENTIALS"
    assert "wrongWebhookCode99" not in f"{caught.value} {caught.value!r}"
    assert b24.requests_used == 1


def test_batch_with_result_references(sandbox: Sandbox, b24: Bitrix24Client) -> None:
    outcome = b24.batch(
        {
            "c1": ("crm.contact.add", {"fields": {"NAME": "Boris", "PHONE": [{"VALUE": "+79160000002"}]}}),
            "d1": (
                "crm.deal.add",
                {
                    "fields": {
                        "TITLE": "Deal of contact $result[c1]",
                        "CONTACT_ID": "$result[c1]",
                        "CATEGORY_ID": 5,
                        "STAGE_ID": "C5:NEW",
                        "UF_CRM_ABCP_USER_ID": "8714642",
                    }
                },
            ),
        },
        halt=True,
    )
    assert outcome.errors == {}
    contact_id, deal_id = outcome.results["c1"], outcome.results["d1"]
    deal = b24.call("crm.deal.get", {"id": deal_id})
    assert deal["CONTACT_ID"] == str(contact_id)
    assert deal["TITLE"] == f"Deal of contact {contact_id}"
    assert deal["UF_CRM_ABCP_USER_ID"] == "8714642"
    assert deal["STAGE_ID"] == "C5:NEW"
    stats = sandbox.stats("bitrix24")
    assert stats["by_method"]["batch"] == 1
    assert stats["commands"]["crm.contact.add"] == 1
    assert stats["commands"]["crm.deal.add"] == 1


@pytest.mark.parametrize("halt", [False, True])
def test_batch_result_errors(b24: Bitrix24Client, halt: bool) -> None:
    outcome = b24.batch(
        {
            "ok1": ("crm.contact.add", {"fields": {"NAME": "One"}}),
            "bad": ("crm.contact.update", {"id": 999999, "fields": {"NAME": "X"}}),
            "ok2": ("crm.contact.add", {"fields": {"NAME": "Two"}}),
        },
        halt=halt,
    )
    assert outcome.errors == {"bad": BatchCommandError(error="", description="Contact is not found")}
    assert "ok1" in outcome.results
    if halt:
        assert "ok2" not in outcome.results
        assert outcome.not_executed == ["ok2"]
    else:
        assert "ok2" in outcome.results
        assert outcome.not_executed == []


def test_iter_list_follows_next(sandbox: Sandbox, b24: Bitrix24Client) -> None:
    for chunk in range(3):
        commands = {f"a{i}": ("crm.contact.add", {"fields": {"NAME": "Pager"}}) for i in range(40)}
        assert b24.batch(commands, halt=False).errors == {}, chunk
    rows = list(b24.iter_list("crm.contact.list", filter={"NAME": "Pager"}, select=["ID", "NAME"], order={"ID": "ASC"}))
    ids = [int(row["ID"]) for row in rows]
    assert len(ids) == 120
    assert ids == sorted(set(ids))
    assert b24.stats.by_endpoint["crm.contact.list"] == 3  # 50 + 50 + 20


def test_iter_by_id_pages_without_counting(sandbox: Sandbox, b24: Bitrix24Client) -> None:
    commands = {f"a{i}": ("crm.contact.add", {"fields": {"NAME": "ById"}}) for i in range(50)}
    assert b24.batch(commands, halt=False).errors == {}
    assert b24.batch(dict(list(commands.items())[:25]), halt=False).errors == {}
    rows = list(b24.iter_by_id("crm.contact.list", filter={"NAME": "ById"}, select=["NAME"]))
    ids = [int(row["ID"]) for row in rows]
    assert len(ids) == 75
    assert ids == sorted(set(ids))
    assert b24.stats.by_endpoint["crm.contact.list"] == 2


def test_throttled_batch_commands_are_flagged() -> None:
    assert BatchCommandError("OPERATION_TIME_LIMIT", "blocked").throttled
    assert not BatchCommandError("", "Contact is not found").throttled


def test_query_limit_bursts_are_retried_even_for_writes(sandbox: Sandbox, b24: Bitrix24Client) -> None:
    sandbox.faults({"bitrix24": {"error_burst": {"count": 3, "status": 503}}})
    cid = b24.call("crm.contact.add", {"fields": {"NAME": "Burst"}})
    assert isinstance(cid, int)
    assert b24.stats.throttled == 3
    assert b24.requests_used == 4
    assert len(contacts_named(sandbox, "Burst")) == 1


def test_operation_time_limit_is_retried(sandbox: Sandbox, b24: Bitrix24Client) -> None:
    sandbox.faults({"bitrix24": {"error_burst": {"count": 2, "status": 429}}})
    assert isinstance(b24.call("crm.contact.list", {"select": ["ID"]}), list)
    assert b24.stats.throttled == 2


def test_the_real_leaky_bucket_throttles_an_over_eager_client() -> None:
    # the portal allows a burst of 2, then 2 requests/s; the client's own limiter is far looser,
    # so the third call meets QUERY_LIMIT_EXCEEDED and must back off until the portal refills
    patient = HttpPolicy(timeout=10.0, max_attempts=8, backoff_base=0.1, backoff_max=0.5)
    with running_sandbox(seed=3, abcp_users=0, days=1, bitrix24_rate=2.0, bitrix24_burst=2) as own:
        with Bitrix24Client(own.env["B24_WEBHOOK_URL"], rate=1000.0, burst=1000, policy=patient) as b24:
            for _ in range(3):
                b24.call("crm.contact.list", {"select": ["ID"]})
            assert b24.stats.throttled > 0  # the portal said QUERY_LIMIT_EXCEEDED...
        assert own.stats("bitrix24")["throttled"] == b24.stats.throttled  # ...and every one was retried
        assert own.stats("bitrix24")["by_method"]["crm.contact.list"] == 3 + b24.stats.throttled


def test_server_error_on_a_write_is_ambiguous(sandbox: Sandbox, b24: Bitrix24Client) -> None:
    sandbox.faults({"bitrix24": {"error_burst": {"count": 1, "status": 500}}})
    with pytest.raises(AmbiguousWriteError):
        b24.call("crm.contact.add", {"fields": {"NAME": "Maybe"}})
    assert b24.requests_used == 1


def test_commit_then_drop_on_a_batch_is_ambiguous_and_really_committed(sandbox: Sandbox, b24: Bitrix24Client) -> None:
    sandbox.faults({"bitrix24": {"commit_then_drop": {"count": 1, "methods": ["batch"]}}})
    commands = {"c1": ("crm.contact.add", {"fields": {"NAME": "Dropped"}})}
    with pytest.raises(AmbiguousWriteError) as caught:
        b24.batch(commands, halt=True)
    assert "sandboxb24webhookcode" not in f"{caught.value} {caught.value!r}"
    assert b24.requests_used == 1  # not retried blindly
    assert len(contacts_named(sandbox, "Dropped")) == 1  # the server did apply it
    # a read batch that is dropped is simply retried
    sandbox.faults({"bitrix24": {"commit_then_drop": {"count": 1, "methods": ["batch"]}}})
    outcome = b24.batch({"l": ("crm.contact.list", {"filter": {"NAME": "Dropped"}, "select": ["ID"]})}, halt=False)
    assert len(outcome.results["l"]) == 1


def test_find_contact_ids_by_comm_is_cheap_and_exact(sandbox: Sandbox, b24: Bitrix24Client) -> None:
    existing = 30
    commands = {
        f"c{i}": (
            "crm.contact.add",
            {
                "fields": {
                    "NAME": f"Known{i}",
                    "PHONE": [{"VALUE": f"+7916000{i:04d}", "VALUE_TYPE": "WORK"}],
                    "EMAIL": [{"VALUE": f"user{i}@example.com", "VALUE_TYPE": "WORK"}],
                }
            },
        )
        for i in range(existing)
    }
    commands["dup"] = ("crm.contact.add", {"fields": {"NAME": "Dup", "PHONE": [{"VALUE": "8 (916) 000-00-05"}]}})
    created = b24.batch(commands, halt=True)
    assert created.errors == {}
    ids = {key: int(value) for key, value in created.results.items()}

    users = 600
    formats = ("+7916000{:04d}", "8916000{:04d}", "916000{:04d}")
    phones = [formats[i % 3].format(i) if i < existing else f"+7925{i:07d}" for i in range(users)]
    emails = [f"USER{i}@Example.com" if i < existing else f"new{i}@example.com" for i in range(users)]

    before = b24.requests_used
    found = b24.find_contact_ids_by_comm(phones, emails, lambda raw: normalize_phone(raw, "RU"))
    used = b24.requests_used - before

    lookups = math.ceil(users / 20) * 2  # findbycomm commands, 20 values each
    hits = existing + 1
    assert used == math.ceil(lookups / 50) + math.ceil(math.ceil(hits / 50) / 50)  # 2 + 1
    assert used <= 0.05 * users
    assert sandbox.stats("bitrix24")["commands"]["crm.duplicate.findbycomm"] == lookups

    assert found[phones[0]] == [ids["c0"]]
    assert found[phones[4]] == [ids["c4"]]  # written 8916..., stored +7916...
    assert found[phones[5]] == sorted([ids["c5"], ids["dup"]])  # one phone, two contacts
    assert found[phones[8]] == [ids["c8"]]  # 10 digits without the country code
    assert found[emails[3]] == [ids["c3"]]  # case-insensitive
    assert all(found[p] == [] for p in phones[existing:])
    assert all(found[e] == [] for e in emails[existing:])
    assert len(found) == 2 * users


def test_status_entity_items_is_a_read_retried_after_a_server_error(sandbox: Sandbox, b24: Bitrix24Client) -> None:
    """Guards `crm.status.entity.items` in `_READ_METHODS` (a 500 on a write is not retried)."""
    sandbox.faults({"bitrix24": {"error_burst": {"count": 1, "status": 500, "methods": ["crm.status.entity.items"]}}})
    stages = b24.call("crm.status.entity.items", {"entityId": "DEAL_STAGE_5"})
    assert [s["STATUS_ID"] for s in stages] == ["C5:NEW", "C5:PREPARATION", "C5:WON", "C5:LOSE"]
    assert stages[0]["SORT"] == 10  # a JSON number, as the real portal sends
    assert b24.requests_used == 2
    assert sandbox.stats("bitrix24")["injected"] == {"status_500": 1}


def test_iter_list_pages_an_answer_that_holds_its_list_in_an_object(sandbox: Sandbox, b24: Bitrix24Client) -> None:
    """Guards `_list_rows` (crm.category.list answers {"categories": [...]} with total/next beside)."""
    sandbox.control("POST", "bitrix24/categories", {"names": [f"Воронка {i}" for i in range(60)]})
    rows = list(b24.iter_list("crm.category.list", params={"entityTypeId": 2}))
    assert len(rows) == 62 and len({row["id"] for row in rows}) == 62
    assert rows[0] == {
        "id": 0,
        "name": "Общая",
        "sort": 100,
        "entityTypeId": 2,
        "isDefault": "Y",
        "originId": "",
        "originatorId": "",
    }
    assert b24.stats.by_endpoint["crm.category.list"] == 2


def test_read_batch_raises_on_a_command_error_inside_a_200_batch(sandbox: Sandbox, b24: Bitrix24Client) -> None:
    """Guards `_raise_command_errors` in `read_batch`: a failed read is never an empty result."""
    reads: dict[str, tuple[str, dict[str, Any]]] = {
        "a": ("crm.contact.list", {"filter": {"NAME": "nobody"}, "select": ["ID"]}),
        "b": ("crm.deal.list", {"filter": {"TITLE": "nothing"}, "select": ["ID"]}),
    }
    assert b24.read_batch(reads) == {"a": [], "b": []}
    sandbox.faults({"bitrix24": {"batch_command_error": {"count": 1, "methods": ["crm.deal.list"]}}})
    with pytest.raises(TransientError, match=r"crm\.deal\.list failed in a batch"):
        b24.read_batch(reads)
    sandbox.faults(
        {"bitrix24": {"batch_command_error": {"methods": ["crm.contact.list"], "error": "OPERATION_TIME_LIMIT"}}}
    )
    with pytest.raises(RateLimitedError):
        b24.read_batch(reads)
    assert sandbox.stats("bitrix24")["injected"] == {"batch_command_error": 2}


def test_read_batch_reads_every_page_of_a_long_list(sandbox: Sandbox, b24: Bitrix24Client) -> None:
    """Guards the `nexts` follow-up in `read_batch`: rows past the first 50 are not dropped."""
    commands = {f"a{i}": ("crm.contact.add", {"fields": {"NAME": "Long"}}) for i in range(45)}
    assert b24.batch(commands, halt=False).errors == {}
    assert b24.batch(commands, halt=False).errors == {}
    rows = b24.read_batch({"l": ("crm.contact.list", {"filter": {"NAME": "Long"}, "select": ["ID"]})})["l"]
    assert len(rows) == 90 and len({r["ID"] for r in rows}) == 90
