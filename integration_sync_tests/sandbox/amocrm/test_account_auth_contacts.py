"""The amoCRM API v4 emulator, exercised over real HTTP with plain httpx (never the connectors): the
account, auth, limits, lists and contacts (leads, notes, links, catalogs: test_amocrm_emulator_entities.py)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from integration_sync.sandbox import amocrm_schema as amo
from integration_sync.sandbox.env import sandbox_env
from integration_sync.sandbox.server import SandboxConfig, SandboxServer
from integration_sync_tests.sandbox.amocrm.conftest import (
    FAST,
    REVOKED,
    UNAUTHORIZED,
    add_contacts,
    add_leads,
    dump,
    errors_of,
    oauth,
    phone,
    reset,
)


# ------------------------------------------------------------------------------ account and env
def test_env_points_at_the_seeded_account(server: SandboxServer, api: httpx.Client) -> None:
    env = sandbox_env(server.base_url)
    assert env["AMO_BASE_URL"] == f"{server.base_url}/amocrm"
    assert (env["AMO_CLIENT_ID"], env["AMO_CLIENT_SECRET"], env["AMO_REDIRECT_URI"]) == (
        "sandbox-amo-client",
        "sandbox-amo-secret",
        "https://example.invalid/oauth",
    )
    assert (env["AMO_ACCESS_TOKEN"], env["AMO_REFRESH_TOKEN"]) == ("sandbox-amo-access-0", "sandbox-amo-refresh-0")
    assert env["AMO_LONG_LIVED_TOKEN"] == ""
    assert json.loads(env["AMO_SUBJECT_ENUMS"]) == amo.AMO_SUBJECT_ENUMS and len(amo.AMO_SUBJECT_ENUMS) == 10
    pipelines = api.get("/api/v4/leads/pipelines").json()
    assert pipelines["_total_items"] == 4
    statuses = {p["id"]: {s["id"]: s for s in p["_embedded"]["statuses"]} for p in pipelines["_embedded"]["pipelines"]}
    for pid, sid in (
        ("AMO_PIPELINE_ID", "AMO_STATUS_ID"),
        ("AMO_PIPELINE_SITE", "AMO_STATUS_AUTOPAY_SITE"),
        ("AMO_PIPELINE_YANDEX", "AMO_STATUS_AUTOPAY_YANDEX"),
        ("AMO_PIPELINE_PARTNERS", "AMO_STATUS_AUTOPAY_PARTNERS"),
    ):
        assert int(env[sid]) in statuses[int(env[pid])]
    for by_id in statuses.values():
        assert [s["type"] for s in by_id.values()].count(1) == 1 and {142, 143} <= set(by_id)
    lead_fields = {
        f["id"]: f
        for f in api.get("/api/v4/leads/custom_fields", params={"limit": 250}).json()["_embedded"]["custom_fields"]
    }
    assert lead_fields[int(env["AMO_LEAD_FIELD_SUBJECTS"])]["type"] == "multiselect"
    assert {e["id"] for e in lead_fields[int(env["AMO_LEAD_FIELD_SUBJECTS"])]["enums"]} == set(
        amo.AMO_SUBJECT_ENUMS.values()
    )
    assert {e["id"] for e in lead_fields[int(env["AMO_LEAD_FIELD_DIRECTION"])]["enums"]} == {
        int(env["AMO_DIRECTION_EGE"]),
        int(env["AMO_DIRECTION_OGE"]),
    }
    assert lead_fields[int(env["AMO_LEAD_ORDER_DATE_FIELD_ID"])]["type"] == "date_time"
    assert lead_fields[int(env["AMO_LEAD_FIELD_TOTAL_PAID"])]["type"] == "numeric"
    assert {f["code"] for f in lead_fields.values() if f["type"] == "tracking_data"} == {
        "UTM_SOURCE",
        "UTM_MEDIUM",
        "UTM_CAMPAIGN",
        "UTM_TERM",
        "UTM_CONTENT",
    }
    contact_fields = {
        f["code"] or f["id"]: f for f in api.get("/api/v4/contacts/custom_fields").json()["_embedded"]["custom_fields"]
    }
    assert [e["value"] for e in contact_fields["PHONE"]["enums"]] == ["WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"]
    assert [e["value"] for e in contact_fields["EMAIL"]["enums"]] == ["WORK", "PRIV", "OTHER"]
    assert {int(env["AMO_CONTACT_FIELD_TG_ID"]), int(env["AMO_CONTACT_ADDRESS_FIELD_ID"])} <= set(contact_fields)
    catalogs = api.get("/api/v4/catalogs").json()["_embedded"]["catalogs"]
    assert [(c["id"], c["type"]) for c in catalogs] == [(int(env["AMO_CATALOG_ID"]), "products")]
    catalog_fields = api.get(f"/api/v4/catalogs/{env['AMO_CATALOG_ID']}/custom_fields").json()
    assert {f["id"]: f["code"] for f in catalog_fields["_embedded"]["custom_fields"]}[
        int(env["AMO_CATALOG_SKU_FIELD_ID"])
    ] == "SKU"
    assert api.get("/api/v4/leads/pipelines/999/statuses").json()["detail"] == "Pipeline not found"


def test_seed_covers_phone_formats_closed_and_autopay_leads(control: httpx.Client) -> None:
    contacts = dump(control, "contacts")
    assert len(contacts) == 20
    phones = [
        v["value"]
        for c in contacts
        for f in c["custom_fields_values"]
        if f["field_code"] == "PHONE"
        for v in f["values"]
    ]
    assert any(p.startswith("+7") for p in phones) and any(p.startswith("8") for p in phones)
    nationals = ["".join(ch for ch in p if ch.isdigit())[1:] for p in phones]
    assert any(n.startswith("7") for n in nationals) and any(n.startswith("9") for n in nationals)  # KZ and RU
    assert any(f["field_id"] == amo.AMO_CONTACT_FIELD_TG_ID for c in contacts for f in c["custom_fields_values"])
    leads = dump(control, "leads")
    statuses = {lead["status_id"] for lead in leads}
    assert {
        142,
        143,
        amo.AMO_STATUS_AUTOPAY_SITE,
        amo.AMO_STATUS_AUTOPAY_YANDEX,
        amo.AMO_STATUS_AUTOPAY_PARTNERS,
        amo.AMO_STATUS_ID,
    } <= statuses
    assert all(lead["_embedded"]["contacts"] for lead in leads)
    assert all((lead["closed_at"] is not None) == (lead["status_id"] in (142, 143)) for lead in leads)


def test_same_seed_same_account() -> None:
    config = SandboxConfig(**{**FAST, "clock_epoch": 1_760_000_000.0})
    dumps = []
    for cfg in (config, config, config.model_copy(update={"seed": 6})):
        with SandboxServer(cfg) as srv, httpx.Client(base_url=srv.base_url) as http:
            dumps.append([dump(http, kind) for kind in ("contacts", "leads", "catalog_elements")])
    assert dumps[0] == dumps[1] and dumps[0] != dumps[2]


# ------------------------------------------------------------------------------------- auth
def test_bearer_token_required(api: httpx.Client) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        response = api.get("/api/v4/contacts", headers=headers)
        assert response.status_code == 401 and response.json() == UNAUTHORIZED
        assert response.headers["content-type"] == "application/problem+json"
    long_lived = api.get("/api/v4/contacts", headers={"Authorization": f"Bearer {amo.AMO_LONG_LIVED_TOKEN}"})
    assert long_lived.status_code == 200 and long_lived.headers["content-type"] == "application/hal+json"


def test_authorization_code_is_single_use_and_client_must_match(api: httpx.Client) -> None:
    grant = {"grant_type": "authorization_code", "code": amo.AMO_AUTH_CODE, "refresh_token": None}
    assert oauth(api, **grant, client_secret="wrong").json()["title"] == "Некорректный клиент"
    assert oauth(api, **grant, redirect_uri="https://elsewhere.invalid").status_code == 401
    assert oauth(api, **{**grant, "client_id": None}).json()["hint"] == "Check the `client_id` parameter"
    first = oauth(api, **grant)
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"token_type", "expires_in", "server_time", "access_token", "refresh_token"}
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 86400)
    assert api.get("/api/v4/account", headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 200
    again = oauth(api, **grant)
    assert again.status_code == 400 and again.json()["hint"] == "Authorization code has been revoked"


def test_refresh_token_is_single_use_and_revokes_the_old_access_token(api: httpx.Client, control: httpx.Client) -> None:
    fresh = oauth(api)
    assert fresh.status_code == 200
    pair = fresh.json()
    assert api.get("/api/v4/account").status_code == 401  # the previous access token is revoked
    assert api.get("/api/v4/account", headers={"Authorization": f"Bearer {pair['access_token']}"}).status_code == 200
    reused = oauth(api)
    assert reused.status_code == 401 and reused.json() == REVOKED
    assert oauth(api, refresh_token="garbage").status_code == 401
    tokens = control.get("/_sandbox/amocrm/tokens").json()
    assert tokens["refresh_used"] == [amo.AMO_INITIAL_REFRESH_TOKEN]
    assert tokens["refresh_reuse_attempts"] == 1
    assert oauth(api, refresh_token=pair["refresh_token"]).status_code == 200

    reset(control, amocrm_refresh_revokes_access=False)
    assert oauth(api).status_code == 200
    assert api.get("/api/v4/account").status_code == 200  # configurable: the old token lives until it expires


def test_concurrent_refreshes_with_one_token_only_one_wins(api: httpx.Client, control: httpx.Client) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = sorted(pool.map(lambda _: oauth(api).status_code, range(6)))
    assert codes == [200] + [401] * 5
    tokens = control.get("/_sandbox/amocrm/tokens").json()
    assert tokens["refresh_reuse_attempts"] == 5 and len(tokens["refresh_active"]) == 1


def test_expire_control_invalidates_access_tokens_until_refreshed(api: httpx.Client, control: httpx.Client) -> None:
    assert control.post("/_sandbox/amocrm/tokens/expire").json() == {"expired": [amo.AMO_INITIAL_ACCESS_TOKEN]}
    assert api.get("/api/v4/leads").status_code == 401
    assert api.get("/api/v4/leads", headers={"Authorization": f"Bearer {amo.AMO_LONG_LIVED_TOKEN}"}).status_code == 200
    token = oauth(api).json()["access_token"]
    assert api.get("/api/v4/leads", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_access_tokens_expire_after_their_lifetime(api: httpx.Client, control: httpx.Client) -> None:
    reset(control, amocrm_token_lifetime_s=1)
    form = {
        "client_id": amo.AMO_CLIENT_ID,
        "client_secret": amo.AMO_CLIENT_SECRET,
        "redirect_uri": amo.AMO_REDIRECT_URI,
        "grant_type": "refresh_token",
        "refresh_token": amo.AMO_INITIAL_REFRESH_TOKEN,
    }
    issued = api.post("/oauth2/access_token", data=form)  # the endpoint also takes a form body
    assert issued.status_code == 200 and issued.json()["expires_in"] == 1
    headers = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    assert api.get("/api/v4/account", headers=headers).status_code == 200
    time.sleep(1.05)
    assert api.get("/api/v4/account", headers=headers).status_code == 401


# ---------------------------------------------------------------------------- limits and block
def test_rate_limit_answers_429_html_without_retry_after(api: httpx.Client, control: httpx.Client) -> None:
    reset(control, amocrm_rate=7.0)
    statuses = [api.get("/api/v4/account") for _ in range(12)]
    codes = [r.status_code for r in statuses]
    assert codes == [200] * 7 + [429] * 5
    refused = statuses[-1]
    assert refused.headers["content-type"].startswith("text/html") and "retry-after" not in refused.headers
    assert b"429 Too Many Requests" in refused.content
    assert control.get("/_sandbox/stats").json()["amocrm"]["throttled"] == 5
    time.sleep(1.05)
    assert api.get("/api/v4/account").status_code == 200


def test_block_mode_answers_403_to_everything_until_unblocked(api: httpx.Client, control: httpx.Client) -> None:
    reset(control, amocrm_rate=2.0, amocrm_block_mode=True, amocrm_block_after_429s=3)
    codes = [api.get("/api/v4/account").status_code for _ in range(8)]
    assert codes[:5] == [200, 200, 429, 429, 429] and set(codes[5:]) == {403}
    blocked = oauth(api)
    assert blocked.status_code == 403 and b"<center>nginx</center>" in blocked.content
    assert blocked.headers["content-type"].startswith("text/html")
    assert control.post("/_sandbox/amocrm/unblock").json() == {"unblocked": True}
    time.sleep(1.0)  # the 1-second window of the limiter still holds the accepted requests
    assert api.get("/api/v4/account").status_code == 200

    reset(control, amocrm_rate=2.0, amocrm_block_after_429s=3)  # block mode off: only 429s
    assert 403 not in {api.get("/api/v4/account").status_code for _ in range(10)}
    assert control.post("/_sandbox/faults", json={"amocrm": {"block_mode": True}}).status_code == 200
    assert 403 in {api.get("/api/v4/account").status_code for _ in range(6)}


# ------------------------------------------------------------------------------ lists and 204
def test_pages_links_limits_and_204(api: httpx.Client, control: httpx.Client) -> None:
    first = api.get("/api/v4/contacts", params={"limit": 8}).json()
    assert first["_page"] == 1 and set(first["_links"]) == {"self", "next"} and "_total_items" not in first
    assert first["_links"]["next"]["href"].endswith("/amocrm/api/v4/contacts?page=2&limit=8")
    last = api.get("/api/v4/contacts", params={"limit": 8, "page": 3}).json()
    assert len(last["_embedded"]["contacts"]) == 4 and "next" not in last["_links"]
    assert set(last["_links"]) == {"self", "first", "prev"}
    for response in (
        api.get("/api/v4/contacts", params={"limit": 8, "page": 4}),
        api.get("/api/v4/contacts", params={"query": "no such thing anywhere"}),
        api.get("/api/v4/contacts/1"),
        api.get("/api/v4/leads/1"),
        api.get("/api/v4/leads", params={"filter[pipeline_id][]": 1}),
    ):
        assert response.status_code == 204 and response.content == b""
    over = api.get("/api/v4/contacts", params={"limit": 251})
    assert over.status_code == 400 and over.headers["content-type"] == "application/problem+json"
    reset(control, amocrm_limit_over_max="clamp")
    assert len(api.get("/api/v4/contacts", params={"limit": 500}).json()["_embedded"]["contacts"]) == 20


def test_query_is_a_raw_substring_match(api: httpx.Client) -> None:
    plus, eight = add_contacts(
        api,
        [
            {"name": "Плюс Семь", "custom_fields_values": [phone("+77011234567")]},
            {
                "name": "Восемь",
                "custom_fields_values": [
                    phone("87011234567"),
                    {"field_id": amo.AMO_CONTACT_FIELD_TG_ID, "values": [{"value": "555000111"}]},
                ],
            },
        ],
    )

    def found(query: str) -> set[int]:
        response = api.get("/api/v4/contacts", params={"query": query})
        return set() if response.status_code == 204 else {c["id"] for c in response.json()["_embedded"]["contacts"]}

    assert found("+77011234567") == {plus}
    assert found("87011234567") == {eight}
    assert found("7011234567") == {plus, eight}
    assert found("555000111") == {eight}
    assert found("плюс") == {plus}
    assert found(" 77011234567") == set()  # an unencoded "+" arrives as a space: no trimming
    assert found("+7 701 123") == set()  # formats are not normalized


# ------------------------------------------------------------------------------ contacts
def test_contacts_create_echo_request_ids_and_read_form(api: httpx.Client, control: httpx.Client) -> None:
    response = api.post(
        "/api/v4/contacts",
        json=[
            {
                "first_name": "Пётр",
                "last_name": "Смирнов",
                "request_id": "abc",
                "custom_fields_values": [
                    phone("+79001112233"),
                    {"field_code": "EMAIL", "values": [{"value": "p@x.kz"}]},
                ],
            },
            {"name": "Без полей"},
        ],
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/hal+json"
    created = response.json()["_embedded"]["contacts"]
    assert [c["request_id"] for c in created] == ["abc", "1"]
    first = api.get(f"/api/v4/contacts/{created[0]['id']}").json()
    assert first["name"] == "Пётр Смирнов"
    assert first["custom_fields_values"] == [
        {
            "field_id": amo.AMO_CONTACT_FIELD_PHONE,
            "field_name": "Телефон",
            "field_code": "PHONE",
            "field_type": "multitext",
            "values": [{"value": "+79001112233", "enum_id": amo.PHONE_ENUMS["MOB"], "enum_code": "MOB"}],
        },
        {
            "field_id": amo.AMO_CONTACT_FIELD_EMAIL,
            "field_name": "Email",
            "field_code": "EMAIL",
            "field_type": "multitext",
            "values": [{"value": "p@x.kz", "enum_id": amo.EMAIL_ENUMS["WORK"], "enum_code": "WORK"}],
        },
    ]
    assert api.get(f"/api/v4/contacts/{created[1]['id']}").json()["custom_fields_values"] is None
    reset(control, amocrm_enum_read_key="enum")
    contact = api.get("/api/v4/contacts", params={"limit": 1}).json()["_embedded"]["contacts"][0]
    assert "enum" in contact["custom_fields_values"][0]["values"][0]


def test_custom_field_validation_refuses_the_whole_batch(api: httpx.Client, control: httpx.Client) -> None:
    before = len(dump(control, "contacts"))
    enum_sent = api.post(
        "/api/v4/contacts",
        json=[
            {"name": "ok"},
            {
                "name": "bad",
                "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "1", "enum": "WORK"}]}],
            },
        ],
    )
    assert errors_of(enum_sent) == [
        {
            "request_id": "1",
            "errors": [
                {
                    "code": "FieldNotExpected",
                    "path": "custom_fields_values.0.values.0.enum",
                    "detail": "This field was not expected.",
                }
            ],
        }
    ]
    assert len(dump(control, "contacts")) == before
    unknown = errors_of(
        api.post(
            "/api/v4/contacts",
            json=[{"request_id": "x", "custom_fields_values": [{"field_id": 1, "values": [{"value": "a"}]}]}],
        )
    )
    assert unknown == [
        {
            "request_id": "x",
            "errors": [
                {
                    "code": "NotSupportedChoice",
                    "path": "custom_fields_values.0.field_id",
                    "detail": "The value you selected is not a valid choice.",
                }
            ],
        }
    ]
    lead_cases = [
        ({"field_id": amo.AMO_LEAD_FIELD_DIRECTION, "values": [{"value": "ЕГЭ!"}]}, "values.0.value"),
        ({"field_id": amo.AMO_LEAD_FIELD_DIRECTION, "values": [{"enum_id": 1}]}, "values.0.enum_id"),
        ({"field_id": amo.AMO_LEAD_FIELD_TOTAL_PAID, "values": [{"value": "много"}]}, "values.0.value"),
        ({"field_id": amo.AMO_LEAD_ORDER_DATE_FIELD_ID, "values": [{"value": "вчера"}]}, "values.0.value"),
        ({"field_id": amo.AMO_CONTACT_FIELD_TG_ID, "values": [{"value": "1"}]}, "field_id"),  # a contact field
        (
            {
                "field_id": amo.AMO_LEAD_FIELD_DIRECTION,
                "values": [{"enum_id": amo.AMO_DIRECTION_EGE}, {"enum_id": amo.AMO_DIRECTION_OGE}],
            },
            "values",
        ),  # a select takes one value
    ]
    for entry, path in lead_cases:
        failed = errors_of(api.post("/api/v4/leads", json=[{"custom_fields_values": [entry]}]))
        assert failed[0]["errors"][0]["path"] == f"custom_fields_values.0.{path}", entry


def test_patch_replaces_a_fields_values_and_null_clears(api: httpx.Client) -> None:
    [cid] = add_contacts(
        api,
        [
            {
                "name": "Два телефона",
                "custom_fields_values": [
                    {
                        "field_code": "PHONE",
                        "values": [{"value": "+77010000001"}, {"value": "+77010000002", "enum_code": "WORK"}],
                    },
                    {"field_id": amo.AMO_CONTACT_FIELD_TG_ID, "values": [{"value": "42"}]},
                ],
            }
        ],
    )
    response = api.patch("/api/v4/contacts", json=[{"id": cid, "custom_fields_values": [phone("+77010000003")]}])
    assert response.status_code == 200 and response.json()["_embedded"]["contacts"][0]["id"] == cid
    fields = {
        f["field_code"] or f["field_id"]: f for f in api.get(f"/api/v4/contacts/{cid}").json()["custom_fields_values"]
    }
    assert [v["value"] for v in fields["PHONE"]["values"]] == ["+77010000003"]
    assert fields[amo.AMO_CONTACT_FIELD_TG_ID]["values"] == [{"value": "42"}]  # untouched
    single = api.patch(
        f"/api/v4/contacts/{cid}",
        json={
            "custom_fields_values": [
                {"field_code": "PHONE", "values": None},
                {"field_id": amo.AMO_CONTACT_FIELD_TG_ID, "values": None},
            ]
        },
    )
    assert single.status_code == 200 and single.json()["id"] == cid
    assert api.get(f"/api/v4/contacts/{cid}").json()["custom_fields_values"] is None
    assert errors_of(api.patch("/api/v4/contacts", json=[{"id": 1, "name": "x"}]))[0]["errors"][0]["path"] == "id"


def test_select_field_takes_enum_id_only(api: httpx.Client) -> None:
    """Real amoCRM: enum_code on a select (single) field is FieldNotExpected, even beside enum_id."""
    direction = amo.AMO_LEAD_FIELD_DIRECTION
    for value in ({"enum_id": amo.AMO_DIRECTION_EGE, "enum_code": "EGE"}, {"enum_code": "EGE"}):
        entry = {"field_id": direction, "values": [value]}
        assert errors_of(api.post("/api/v4/leads", json=[{"name": "x", "custom_fields_values": [entry]}])) == [
            {
                "request_id": "0",
                "errors": [
                    {
                        "code": "FieldNotExpected",
                        "path": "custom_fields_values.0.values.0.enum_code",
                        "detail": "This field was not expected.",
                    }
                ],
            }
        ]
    by_id = {"field_id": direction, "values": [{"enum_id": amo.AMO_DIRECTION_EGE}]}
    [lead] = add_leads(api, [{"name": "ok", "custom_fields_values": [by_id]}])
    with_code = {"field_id": direction, "values": [{"enum_id": amo.AMO_DIRECTION_EGE, "enum_code": "X"}]}
    patched = api.patch("/api/v4/leads", json=[{"id": lead, "custom_fields_values": [with_code]}])
    assert errors_of(patched)[0]["errors"][0] == {
        "code": "FieldNotExpected",
        "path": "custom_fields_values.0.values.0.enum_code",
        "detail": "This field was not expected.",
    }
    # a multi-value enum field (PHONE) still takes enum_code
    add_contacts(api, [{"name": "p", "custom_fields_values": [phone("+77010000009", "WORK")]}])
