"""The Bitrix24 REST emulator, exercised over real HTTP with plain httpx."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from integration_sync.sandbox.server import SandboxConfig, SandboxServer

HOOK = "/bitrix24/rest/1/sandboxb24webhookcode/"
FAST = {
    "seed": 3,
    "abcp_users": 60,
    "bitrix24_rate": 2.0,
    "bitrix24_burst": 50,
    "bitrix24_rate_multiplier": 1000.0,
    "bitrix24_operating_budget_s": 480.0,
    "bitrix24_operating_cost_s": 0.0,
    "bitrix24_contacts": 3,
}


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(**FAST)) as srv:
        yield srv


@pytest.fixture
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        assert http.post("/_sandbox/reset", json=FAST).status_code == 200
        yield http


def call(client: httpx.Client, method: str, payload: dict[str, Any] | None = None) -> httpx.Response:
    return client.post(HOOK + method, json=payload or {})


def ok(client: httpx.Client, method: str, payload: dict[str, Any] | None = None) -> Any:
    response = call(client, method, payload)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def batch(client: httpx.Client, cmd: dict[str, str], halt: int = 0) -> dict[str, Any]:
    response = call(client, "batch", {"halt": halt, "cmd": cmd})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


def contacts_dump(client: httpx.Client) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = client.get("/_sandbox/bitrix24/contacts").json()
    return rows


def deals_dump(client: httpx.Client) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = client.get("/_sandbox/bitrix24/deals").json()
    return rows


def test_credentials_and_unknown_methods(client: httpx.Client) -> None:
    bad_code = client.post("/bitrix24/rest/1/wrongcode/crm.contact.list", json={})
    assert bad_code.status_code == 401
    assert bad_code.json() == {"error": "INVALID_CREDENTIALS", "error_description": "Invalid request credentials"}
    assert client.post("/bitrix24/rest/2/sandboxb24webhookcode/crm.contact.list", json={}).status_code == 401
    missing = call(client, "crm.contact.fly")
    assert missing.status_code == 404
    assert missing.json() == {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
    assert call(client, "crm.contact.list.json").status_code == 200


def test_add_and_get_contact_in_every_body_encoding(client: httpx.Client) -> None:
    first = ok(
        client,
        "crm.contact.add",
        {
            "FIELDS": {
                "NAME": "Иван",
                "LAST_NAME": "Петров",
                "ORIGINATOR_ID": "abcp",
                "ORIGIN_ID": "8714642",
                "PHONE": [{"VALUE": "+79161234567", "VALUE_TYPE": "WORK"}],
                "EMAIL": [{"VALUE": "i@p.ru"}],
                "FOO_BAR": "dropped",
                "DATE_CREATE": "2001-01-01T00:00:00+03:00",
                "UF_CRM_UNDEFINED": "dropped",
                "ASSIGNED_BY_ID": 7,
            }
        },
    )
    assert isinstance(first, int) and first == 4  # three seeded contacts come first
    form = client.post(
        HOOK + "crm.contact.add.json",
        content=(
            "fields[NAME]="
            + quote("Анна")
            + "&fields[PHONE][0][VALUE]="
            + quote("8 (916) 000-11-22")
            + "&fields[PHONE][0][VALUE_TYPE]=MOBILE"
        ),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 200 and form.json()["result"] == 5
    query = client.get(HOOK + "crm.contact.add?fields[NAME]=" + quote("Олег") + "&fields[LAST_NAME]=X")
    assert query.json()["result"] == 6

    got = ok(client, "crm.contact.get", {"id": first})
    assert got["ID"] == "4" and got["NAME"] == "Иван" and got["ASSIGNED_BY_ID"] == "7"
    assert got["ORIGIN_ID"] == "8714642" and got["ORIGINATOR_ID"] == "abcp"
    assert got["PHONE"] == [
        {"ID": got["PHONE"][0]["ID"], "VALUE_TYPE": "WORK", "VALUE": "+79161234567", "TYPE_ID": "PHONE"}
    ]
    assert got["EMAIL"][0]["VALUE_TYPE"] == "WORK" and got["HAS_PHONE"] == "Y" and got["HAS_EMAIL"] == "Y"
    assert "FOO_BAR" not in got and "UF_CRM_UNDEFINED" not in got
    assert not got["DATE_CREATE"].startswith("2001")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+03:00", got["DATE_CREATE"])
    form_contact = ok(client, "crm.contact.get", {"ID": 5})
    assert form_contact["PHONE"][0]["VALUE"] == "8 (916) 000-11-22"
    assert form_contact["PHONE"][0]["VALUE_TYPE"] == "MOBILE"


def test_vendor_error_bodies(client: httpx.Client) -> None:
    for method in ("crm.contact.add", "crm.deal.add"):
        response = call(client, method, {"fields": "NAME=x"})
        assert response.status_code == 400
        assert response.json() == {"error": "", "error_description": "Parameter 'fields' must be array."}
    assert call(client, "crm.contact.add").json()["error_description"] == "Parameter 'fields' must be array."
    assert call(client, "crm.contact.get", {"id": 999}).json() == {"error": "", "error_description": "Not found"}
    assert call(client, "crm.deal.get", {"id": 999}).json()["error_description"] == "Not found"
    update = call(client, "crm.contact.update", {"id": 999, "fields": {"NAME": "x"}})
    assert update.status_code == 400 and update.json() == {"error": "", "error_description": "Contact is not found"}
    assert call(client, "crm.deal.update", {"id": 999, "fields": {}}).json()["error_description"] == "Deal is not found"
    assert call(client, "crm.contact.get", {"id": "abc"}).json()["error_description"] == "ID is not defined or invalid."
    assert call(client, "crm.contact.list", {"filter": "x"}).json()["error_description"] == (
        "Parameter 'filter' must be array."
    )


def test_multifield_update_appends_changes_and_deletes(client: httpx.Client) -> None:
    cid = ok(client, "crm.contact.add", {"fields": {"NAME": "M", "PHONE": [{"VALUE": "+79160000001"}]}})
    assert ok(client, "crm.contact.update", {"id": cid, "fields": {"PHONE": [{"VALUE": "+79160000001"}]}}) is True
    phones = ok(client, "crm.contact.get", {"id": cid})["PHONE"]
    assert [p["VALUE"] for p in phones] == ["+79160000001", "+79160000001"]  # naive update duplicates
    ok(
        client,
        "crm.contact.update",
        {
            "id": cid,
            "fields": {
                "PHONE": [
                    {"ID": phones[0]["ID"], "VALUE": "+79160000002", "VALUE_TYPE": "MOBILE"},
                    {"ID": phones[1]["ID"], "DELETE": "Y"},
                ]
            },
        },
    )
    after = ok(client, "crm.contact.get", {"id": cid})["PHONE"]
    assert after == [{"ID": phones[0]["ID"], "VALUE_TYPE": "MOBILE", "VALUE": "+79160000002", "TYPE_ID": "PHONE"}]
    ok(client, "crm.contact.update", {"id": cid, "fields": {"PHONE": [{"ID": phones[0]["ID"], "VALUE": ""}]}})
    got = ok(client, "crm.contact.get", {"id": cid})
    assert "PHONE" not in got and got["HAS_PHONE"] == "N"


def _add_contacts(client: httpx.Client, count: int) -> None:
    for start in range(0, count, 50):
        cmd = {
            f"c{i}": (f"crm.contact.add?fields[NAME]=N{i}&fields[ORIGIN_ID]={i}&fields[PHONE][0][VALUE]=%2B7900{i:07d}")
            for i in range(start, min(count, start + 50))
        }
        assert batch(client, cmd)["result_error"] == []


def test_list_pages_select_and_start_minus_one(client: httpx.Client) -> None:
    _add_contacts(client, 120)  # 123 contacts with the seeded ones
    page = call(client, "crm.contact.list", {"order": {"ID": "ASC"}}).json()
    assert len(page["result"]) == 50 and page["total"] == 123 and page["next"] == 50
    assert "PHONE" not in page["result"][0] and "NAME" in page["result"][0]
    last = call(client, "crm.contact.list", {"start": 100}).json()
    assert len(last["result"]) == 23 and last["total"] == 123 and "next" not in last
    beyond = call(client, "crm.contact.list", {"start": 500}).json()
    assert beyond["result"] == last["result"] and "next" not in beyond  # CDBResult clamps to the last page
    floored = call(client, "crm.contact.list", {"start": 60}).json()
    assert floored["result"][0]["ID"] == "51" and floored["next"] == 100
    no_count = call(
        client, "crm.contact.list", {"start": -1, "order": {"ID": "ASC"}, "filter": {">ID": 100}, "select": ["ID"]}
    ).json()
    assert [r["ID"] for r in no_count["result"]] == [str(i) for i in range(101, 124)]
    assert "total" not in no_count and "next" not in no_count
    named = ok(client, "crm.contact.list", {"select": ["NAME", "PHONE"], "filter": {"ORIGIN_ID": "7"}})
    assert named == [{"NAME": "N7", "ID": "11", "PHONE": named[0]["PHONE"]}]
    assert named[0]["PHONE"][0]["VALUE"] == "+79000000007"
    raw_plus = batch(client, {"p": "crm.contact.add?fields[PHONE][0][VALUE]=+79161112233"})["result"]["p"]
    assert ok(client, "crm.contact.get", {"id": raw_plus})["PHONE"][0]["VALUE"] == " 79161112233"  # unencoded +


def test_filter_prefixes(client: httpx.Client) -> None:
    _add_contacts(client, 20)

    def ids(flt: dict[str, Any], order: dict[str, str] | None = None) -> list[int]:
        rows = ok(client, "crm.contact.list", {"filter": flt, "select": ["ID"], "order": order or {}})
        return [int(r["ID"]) for r in rows]

    assert ids({"ID": 5}) == [5]
    assert ids({"=ID": "5"}) == [5]
    assert ids({">ID": 20}) == [21, 22, 23]
    assert ids({">=ID": 21, "<ID": 23}) == [21, 22]
    assert ids({"<=ID": 2}) == [1, 2]
    assert ids({"@ID": [2, 4, 99]}) == [2, 4]
    assert ids({"!ID": 1, "<ID": 4}) == [2, 3]
    assert ids({"ORIGIN_ID": ["3", "4"]}) == [7, 8]
    assert ids({"%NAME": "n1"}) == [5, *range(14, 24)]
    assert ids({"=%NAME": "N1%"}) == [5, *range(14, 24)]
    assert ids({"PHONE": "89000000002"}) == [6]
    assert ids({"NOT_A_FIELD": "x", "ID": 2}) == [2]  # unknown filter fields are ignored
    assert ids({"<ID": 4}, {"ID": "DESC"}) == [3, 2, 1]


def test_deals_pipeline_stage_and_user_fields(client: httpx.Client) -> None:
    cid = ok(client, "crm.contact.add", {"fields": {"NAME": "D"}})
    did = ok(
        client,
        "crm.deal.add",
        {
            "fields": {
                "TITLE": "ABCP Регистрация: 1",
                "CATEGORY_ID": 5,
                "STAGE_ID": "C5:NEW",
                "CONTACT_ID": cid,
                "OPPORTUNITY": 1582.5,
                "UF_CRM_ABCP_USER_ID": "8714642",
                "UF_CRM_ABCP_INN": "7701234567",
                "UF_CRM_ABCP_SALDO": -1582.0,
                "UF_CRM_1738181468": "not on this portal",
            }
        },
    )
    deal = ok(client, "crm.deal.get", {"id": did})
    assert deal["CATEGORY_ID"] == "5" and deal["STAGE_ID"] == "C5:NEW" and deal["CONTACT_ID"] == str(cid)
    assert deal["OPPORTUNITY"] == "1582.50" and deal["CURRENCY_ID"] == "RUB"
    assert deal["UF_CRM_ABCP_USER_ID"] == "8714642" and deal["UF_CRM_ABCP_SALDO"] == "-1582"
    assert "UF_CRM_1738181468" not in deal

    ok(
        client,
        "crm.deal.update",
        {"id": did, "fields": {"CATEGORY_ID": 0, "STAGE_ID": "C5:WON", "UF_CRM_ABCP_SALDO": "-1 582,00"}},
    )
    deal = ok(client, "crm.deal.get", {"id": did})
    assert deal["CATEGORY_ID"] == "5" and deal["STAGE_ID"] == "C5:WON" and deal["CLOSED"] == "Y"
    assert deal["UF_CRM_ABCP_SALDO"] == "-1 582,00"

    lost = ok(client, "crm.deal.add", {"fields": {"CATEGORY_ID": 77, "STAGE_ID": "C77:NEW"}})
    lost_deal = ok(client, "crm.deal.get", {"id": lost})
    assert lost_deal["CATEGORY_ID"] == "0" and lost_deal["STAGE_ID"] == "NEW"
    assert lost_deal["TITLE"] == f"Сделка #{lost}"
    foreign = ok(client, "crm.deal.add", {"fields": {"CATEGORY_ID": "5", "STAGE_ID": "WON"}})
    assert ok(client, "crm.deal.get", {"id": foreign})["STAGE_ID"] == "C5:NEW"

    found = ok(client, "crm.deal.list", {"filter": {"UF_CRM_ABCP_USER_ID": "8714642"}, "select": ["ID"]})
    assert found == [{"ID": str(did)}]
    ignored = ok(client, "crm.deal.list", {"filter": {"PHONE": "1"}, "select": ["ID"]})  # deals have no PHONE
    assert [d["ID"] for d in ignored] == [str(did), str(lost), str(foreign)]
    plain = ok(client, "crm.deal.list", {"select": ["*"], "filter": {"ID": did}})[0]
    assert "UF_CRM_ABCP_USER_ID" not in plain and plain["TITLE"] == "ABCP Регистрация: 1"
    with_uf = ok(client, "crm.deal.list", {"select": ["ID", "UF_*"], "filter": {"ID": did}})[0]
    assert with_uf == {
        "ID": str(did),
        "UF_CRM_ABCP_USER_ID": "8714642",
        "UF_CRM_ABCP_INN": "7701234567",
        "UF_CRM_ABCP_SALDO": "-1 582,00",
    }


def test_findbycomm_normalizes_and_caps_values(client: httpx.Client) -> None:
    seeded = contacts_dump(client)
    phone_contact = next(c for c in seeded if c["PHONE"])
    email_contact = next(c for c in seeded if c["EMAIL"])
    raw = phone_contact["PHONE"][0]["VALUE"]
    assert re.fullmatch(r"8\d{10}", raw)  # seeded from an ABCP user's mobile, written with 8
    pretty = f"+7 ({raw[1:4]}) {raw[4:7]}-{raw[7:9]}-{raw[9:]}"
    by_phone = ok(
        client,
        "crm.duplicate.findbycomm",
        {"entity_type": "CONTACT", "type": "PHONE", "values": [pretty, "+70000000000"]},
    )
    assert by_phone == {"CONTACT": [int(phone_contact["ID"])]}
    email = email_contact["EMAIL"][0]["VALUE"]
    assert email == email.upper()
    assert ok(client, "crm.duplicate.findbycomm", {"type": "EMAIL", "values": [email.lower()]}) == {
        "CONTACT": [int(email_contact["ID"])]
    }
    assert ok(client, "crm.duplicate.findbycomm", {"type": "PHONE", "values": ["+79990001122"]}) == []
    assert ok(client, "crm.duplicate.findbycomm", {"type": "PHONE", "values": [raw[1:]]}) == []  # no country code

    filler = [f"+7999000{i:04d}" for i in range(20)]
    assert ok(client, "crm.duplicate.findbycomm", {"type": "PHONE", "values": [*filler, pretty]}) == []
    missing = call(client, "crm.duplicate.findbycomm", {"entity_type": "CONTACT", "values": ["1"]})
    assert missing.status_code == 400
    assert missing.json() == {
        "error": "Communication type is not defined",
        "error_description": "Parameter 'type' is required.",
    }
    assert call(client, "crm.duplicate.findbycomm", {"type": "PHONE"}).json()["error"] == (
        "Communication values is not defined"
    )


def test_portal_configuration_methods(client: httpx.Client) -> None:
    fields = call(client, "crm.deal.userfield.list", {"filter": {"LANG": "ru"}}).json()
    assert fields["total"] == 3
    assert {f["FIELD_NAME"]: f["USER_TYPE_ID"] for f in fields["result"]} == {
        "UF_CRM_ABCP_USER_ID": "string",
        "UF_CRM_ABCP_INN": "string",
        "UF_CRM_ABCP_SALDO": "string",
    }
    assert {"ID", "ENTITY_ID", "MULTIPLE", "MANDATORY", "SETTINGS", "EDIT_FORM_LABEL"} <= set(fields["result"][0])
    categories = ok(client, "crm.dealcategory.list")
    assert [(c["ID"], c["NAME"]) for c in categories] == [("5", "Пользователи")]
    stages = ok(client, "crm.dealcategory.stage.list", {"id": 5})
    assert [s["STATUS_ID"] for s in stages] == ["C5:NEW", "C5:PREPARATION", "C5:WON", "C5:LOSE"]
    statuses = ok(client, "crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE_5"}, "order": {"SORT": "ASC"}})
    assert [s["STATUS_ID"] for s in statuses] == ["C5:NEW", "C5:PREPARATION", "C5:WON", "C5:LOSE"]
    assert statuses[0]["CATEGORY_ID"] == "5" and statuses[2]["SEMANTICS"] == "S"
    default = ok(client, "crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE"}})
    assert default[0]["STATUS_ID"] == "NEW" and default[0]["CATEGORY_ID"] is None


def test_batch_substitutes_results_and_reports_per_command(client: httpx.Client) -> None:
    out = batch(
        client,
        {
            "c1": "crm.contact.add?fields[NAME]=" + quote("Пётр") + "&fields[EMAIL][0][VALUE]=p@x.ru",
            "d1": "crm.deal.add?fields[TITLE]=T&fields[CATEGORY_ID]=5&fields[CONTACT_ID]=$result[c1]",
            "g1": "crm.contact.get?id=$result[c1]",
            "d2": "crm.deal.add?fields[TITLE]=" + quote("Для ") + "$result[g1][NAME]&fields[COMMENTS]=id-$result[c1]",
            "l1": "crm.contact.list?filter[>ID]=0",
        },
    )
    contact_id = out["result"]["c1"]
    assert out["result_error"] == []
    assert out["result"]["g1"]["EMAIL"][0]["VALUE"] == "p@x.ru"
    deals = {d["ID"]: d for d in deals_dump(client)}
    assert deals[str(out["result"]["d1"])]["CONTACT_ID"] == str(contact_id)
    assert deals[str(out["result"]["d2"])]["TITLE"] == "Для Пётр"
    assert deals[str(out["result"]["d2"])]["COMMENTS"] == f"id-{contact_id}"
    assert out["result_total"] == {"l1": 4} and out["result_next"] == []
    assert set(out["result_time"]) == {"c1", "d1", "g1", "d2", "l1"}


def test_batch_failures_halt_and_missing_references(client: httpx.Client) -> None:
    out = batch(
        client,
        {
            "bad": "crm.contact.update?id=999&fields[NAME]=x",
            "dangling": "crm.deal.add?fields[TITLE]=orphan&fields[CONTACT_ID]=$result[bad]",
            "nope": "crm.nothing.here",
            "good": "crm.contact.add?fields[NAME]=ok",
        },
    )
    assert out["result_error"]["bad"] == {"error": "", "error_description": "Contact is not found"}
    assert out["result_error"]["nope"]["error"] == "ERROR_METHOD_NOT_FOUND"
    assert set(out["result"]) == {"dangling", "good"}
    orphan = next(d for d in deals_dump(client) if d["ID"] == str(out["result"]["dangling"]))
    assert orphan["CONTACT_ID"] is None  # the reference did not resolve to a contact

    before = len(contacts_dump(client))
    halted = batch(
        client,
        {"a": "crm.contact.add?fields[NAME]=a", "b": "crm.contact.get?id=0", "c": "crm.contact.add?fields[NAME]=c"},
        halt=1,
    )
    assert list(halted["result"]) == ["a"] and list(halted["result_error"]) == ["b"]
    assert len(contacts_dump(client)) == before + 1

    nested = batch(client, {"n": "batch?cmd[x]=crm.contact.list"})
    assert nested["result"] == [] and "n" in nested["result_error"]


def test_batch_over_fifty_commands_and_one_request_in_stats(client: httpx.Client) -> None:
    cmd = {f"k{i}": f"crm.contact.add?fields[NAME]=B{i}" for i in range(52)}
    out = batch(client, cmd)
    assert len(out["result"]) == 50
    assert out["result_error"] == {
        "k50": {"error": "ERROR_BATCH_LENGTH_EXCEEDED", "error_description": "Max batch length exceeded"},
        "k51": {"error": "ERROR_BATCH_LENGTH_EXCEEDED", "error_description": "Max batch length exceeded"},
    }
    stats = client.get("/_sandbox/stats").json()["bitrix24"]
    assert stats["by_method"] == {"batch": 1}
    assert stats["commands"] == {"crm.contact.add": 50}
    assert stats["entities"] == {"contacts": 53, "deals": 0}


def test_leaky_bucket_refuses_with_503_and_executes_nothing(client: httpx.Client, server: SandboxServer) -> None:
    # 2/s x 0.01 = one slot per 50 s: real time cannot refill it during the test, only clock.advance
    client.post("/_sandbox/reset", json={**FAST, "bitrix24_rate_multiplier": 0.01, "bitrix24_burst": 5})
    codes = [call(client, "crm.contact.add", {"fields": {"NAME": f"R{i}"}}).status_code for i in range(5)]
    assert codes == [200] * 5
    refused = call(client, "crm.contact.add", {"fields": {"NAME": "refused"}})
    assert refused.status_code == 503
    assert refused.json() == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    assert "refused" not in [c["NAME"] for c in contacts_dump(client)]
    stats = client.get("/_sandbox/stats").json()["bitrix24"]
    assert stats["throttled"] == 1 and stats["commands"] == {"crm.contact.add": 5}
    server.sandbox.clock.advance(60)  # 1.2 slots drain: exactly one request fits again
    assert call(client, "crm.contact.list", {"select": ["ID"]}).status_code == 200
    assert call(client, "crm.contact.list", {"select": ["ID"]}).status_code == 503


def test_operating_time_limit_blocks_a_method_until_reset(client: httpx.Client, server: SandboxServer) -> None:
    client.post("/_sandbox/reset", json={**FAST, "bitrix24_operating_budget_s": 0.5, "bitrix24_operating_cost_s": 0.2})
    reported = [call(client, "crm.contact.list").json()["time"] for _ in range(3)]
    assert [round(t["operating"], 1) for t in reported] == [0.2, 0.4, 0.6]
    assert all(t["operating_reset_at"] > t["start"] + 590 for t in reported)
    blocked = call(client, "crm.contact.list")
    assert blocked.status_code == 429
    assert blocked.json() == {
        "error": "OPERATION_TIME_LIMIT",
        "error_description": "Method is blocked due to operation time limit.",
    }
    assert call(client, "crm.deal.list").status_code == 200  # the limit is per method
    inner = batch(client, {"l": "crm.contact.list", "d": "crm.deal.list"})
    assert inner["result_error"]["l"]["error"] == "OPERATION_TIME_LIMIT" and "d" in inner["result"]
    server.sandbox.clock.advance(601)
    assert call(client, "crm.contact.list").status_code == 200


def test_batch_command_error_fault_fails_one_command_inside_a_200_batch(client: httpx.Client) -> None:
    spec = {"batch_command_error": {"count": 1, "skip": 1, "methods": ["crm.deal.list"]}}
    assert client.post("/_sandbox/faults", json={"bitrix24": spec}).status_code == 200
    cmd = {f"d{i}": "crm.deal.list?select[0]=ID" for i in range(3)} | {"c": "crm.contact.list?select[0]=ID"}
    response = call(client, "batch", {"halt": 0, "cmd": cmd})
    assert response.status_code == 200
    out = response.json()["result"]
    # the shape of api-samples/bitrix24/batch_error_halt0_response.json
    assert out["result_error"] == {
        "d1": {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}
    }
    assert set(out["result"]) == {"d0", "d2", "c"}
    state = client.post("/_sandbox/faults", json={}).json()["bitrix24"]
    assert state["batch_command_error"]["fired"] == 1 and state["batch_command_error"]["count"] == 0
    stats = client.get("/_sandbox/stats").json()["bitrix24"]
    assert stats["injected"] == {"batch_command_error": 1}
    assert stats["commands"]["crm.deal.list"] == 2  # the failed command did not run
    bad = client.post("/_sandbox/faults", json={"bitrix24": {"batch_command_error": {"count": -1}}})
    assert bad.status_code == 400


def test_real_traffic_shapes_numbers_operating_time_and_object_lists(client: httpx.Client) -> None:
    statuses = ok(client, "crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE_5"}})
    assert [s["SORT"] for s in statuses] == [10, 20, 30, 40]
    assert all(isinstance(s["SORT"], int) for s in ok(client, "crm.dealcategory.stage.list", {"id": 5}))
    assert all(isinstance(c["SORT"], int) for c in ok(client, "crm.dealcategory.list"))
    items = ok(client, "crm.status.entity.items", {"entityId": "SOURCE"})
    assert items[0] == {"NAME": "Звонок", "SORT": 10, "STATUS_ID": "CALL"}
    answer = call(client, "crm.category.list", {"entityTypeId": 2}).json()
    assert [c["id"] for c in answer["result"]["categories"]] == [0, 5]
    assert answer["total"] == 2 and "next" not in answer
    assert call(client, "crm.category.list", {"entityTypeId": 1036}).status_code == 400
    out = batch(client, {"s": "crm.status.list?filter[ENTITY_ID]=SOURCE", "c": "crm.contact.list?select[0]=ID"})
    for timing in out["result_time"].values():
        assert {"operating", "operating_reset_at"} <= set(timing)
