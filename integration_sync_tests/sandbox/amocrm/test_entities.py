"""The amoCRM API v4 emulator over real HTTP: leads, notes, links, catalogs, webhooks, faults and volumes."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from integration_sync.sandbox import amocrm_schema as amo
from integration_sync_tests.sandbox.amocrm.conftest import (
    add_contacts,
    add_leads,
    dump,
    errors_of,
    phone,
    reset,
)


# ------------------------------------------------------------------------------ leads
def test_leads_filters_order_and_with_contacts(api: httpx.Client) -> None:
    [cid] = add_contacts(api, [{"name": "Лид-контакт"}])
    site, yandex, kaspi = add_leads(
        api,
        [
            {
                "name": "Сайт",
                "price": 100,
                "pipeline_id": amo.AMO_PIPELINE_SITE,
                "status_id": 63242010,
                "updated_at": 1_700_000_000,
                "_embedded": {"contacts": [{"id": cid}]},
            },
            {
                "name": "Яндекс",
                "pipeline_id": amo.AMO_PIPELINE_YANDEX,
                "status_id": amo.AMO_STATUS_AUTOPAY_YANDEX,
                "updated_at": 1_700_000_100,
            },
            {
                "name": "Kaspi",
                "pipeline_id": amo.AMO_PIPELINE_ID,
                "status_id": amo.AMO_STATUS_ID,
                "responsible_user_id": amo.AMO_RESPONSIBLE_USER_ID,
                "updated_at": 1_700_000_200,
                "_embedded": {"tags": [{"name": "kaspi"}]},
            },
        ],
    )
    mine = {"filter[id][]": [site, yandex, kaspi]}

    def ids(params: dict[str, Any]) -> list[int]:
        response = api.get("/api/v4/leads", params={**mine, **params})
        return [] if response.status_code == 204 else [lead["id"] for lead in response.json()["_embedded"]["leads"]]

    assert ids({}) == [site, yandex, kaspi]
    assert ids({"order[updated_at]": "desc"}) == [kaspi, yandex, site]
    assert ids({"filter[pipeline_id][]": [amo.AMO_PIPELINE_SITE, amo.AMO_PIPELINE_ID]}) == [site, kaspi]
    assert ids(
        {
            "filter[statuses][0][pipeline_id]": amo.AMO_PIPELINE_YANDEX,
            "filter[statuses][0][status_id]": amo.AMO_STATUS_AUTOPAY_YANDEX,
        }
    ) == [yandex]
    assert ids({"filter[updated_at][from]": 1_700_000_050, "filter[updated_at][to]": 1_700_000_150}) == [yandex]
    lead = api.get(f"/api/v4/leads/{site}", params={"with": "contacts"}).json()
    assert lead["_embedded"]["contacts"][0]["id"] == cid and lead["_embedded"]["contacts"][0]["is_main"] is True
    assert "contacts" not in api.get(f"/api/v4/leads/{site}").json()["_embedded"]
    assert api.get(f"/api/v4/leads/{kaspi}").json()["_embedded"]["tags"][0]["name"] == "kaspi"
    assert lead["is_deleted"] is False and lead["closed_at"] is None and lead["price"] == 100
    contact = api.get(f"/api/v4/contacts/{cid}", params={"with": "leads"}).json()
    assert [x["id"] for x in contact["_embedded"]["leads"]] == [site]


def test_lead_status_rules(api: httpx.Client) -> None:
    [lead] = add_leads(api, [{"pipeline_id": amo.AMO_PIPELINE_SITE}])
    assert api.get(f"/api/v4/leads/{lead}").json()["status_id"] == 63242010  # the first stage after unsorted
    cases = [
        ([{"pipeline_id": amo.AMO_PIPELINE_SITE, "status_id": amo.AMO_STATUS_ID}], "status_id"),  # other pipeline
        ([{"pipeline_id": amo.AMO_PIPELINE_SITE, "status_id": 63242000}], "status_id"),  # unsorted
        ([{"pipeline_id": 123, "status_id": 142}], "pipeline_id"),
        ([{"price": "100"}], "price"),
        ([{"name": 7}], "name"),
        ([{"responsible_user_id": 999}], "responsible_user_id"),
        ([{"name": "x", "title": "unknown top-level key"}], "title"),
    ]
    for body, path in cases:
        assert errors_of(api.post("/api/v4/leads", json=body))[0]["errors"][0]["path"] == path, body
    closing = errors_of(api.patch(f"/api/v4/leads/{lead}", json={"status_id": 142}))
    assert closing[0]["errors"][0]["path"] == "pipeline_id"
    relink = errors_of(api.patch(f"/api/v4/leads/{lead}", json={"_embedded": {"contacts": [{"id": 1}]}}))
    assert relink[0]["errors"][0] == {
        "code": "FieldNotExpected",
        "path": "_embedded.contacts",
        "detail": "This field was not expected.",
    }
    assert api.post("/api/v4/leads", json=[{"name": str(i)} for i in range(251)]).status_code == 400
    done = api.patch("/api/v4/leads", json=[{"id": lead, "pipeline_id": amo.AMO_PIPELINE_SITE, "status_id": 142}])
    assert done.status_code == 200
    closed = api.get(f"/api/v4/leads/{lead}").json()
    assert closed["status_id"] == 142 and closed["closed_at"] is not None
    moved = api.patch(f"/api/v4/leads/{lead}", json={"pipeline_id": amo.AMO_PIPELINE_ID, "status_id": 70000012})
    assert moved.status_code == 200
    reopened = api.get(f"/api/v4/leads/{lead}").json()
    assert (reopened["pipeline_id"], reopened["status_id"], reopened["closed_at"]) == (
        amo.AMO_PIPELINE_ID,
        70000012,
        None,
    )


def test_plain_post_duplicates_complex_answers_a_bare_array(api: httpx.Client, control: httpx.Client) -> None:
    assert len(set(add_leads(api, [{"name": "Дубль"}, {"name": "Дубль"}]))) == 2
    complex_ = api.post(
        "/api/v4/leads/complex",
        json=[
            {
                "name": "Комплекс",
                "price": 10,
                "request_id": "qweasd",
                "pipeline_id": amo.AMO_PIPELINE_ID,
                "_embedded": {
                    "contacts": [{"first_name": "Евгений", "custom_fields_values": [phone("+77770001122")]}],
                    "companies": [{"name": "ТОО Ромашка"}],
                },
            },
            {"name": "Без контакта"},
        ],
    )
    assert complex_.status_code == 200
    body = complex_.json()
    assert isinstance(body, list) and [r["request_id"] for r in body] == [["qweasd"], ["1"]]
    assert body[0]["merged"] is False and body[0]["company_id"] and body[1]["contact_id"] is None
    lead = api.get(f"/api/v4/leads/{body[0]['id']}", params={"with": "contacts"}).json()
    assert lead["_embedded"]["contacts"][0]["id"] == body[0]["contact_id"]
    assert (
        api.get("/api/v4/contacts", params={"query": "+77770001122"}).json()["_embedded"]["contacts"][0]["id"]
        == (body[0]["contact_id"])
    )
    leads_before = len(dump(control, "leads"))
    too_many = api.post("/api/v4/leads/complex", json=[{"name": f"L{i}"} for i in range(51)])
    assert too_many.status_code == 400 and len(dump(control, "leads")) == leads_before
    two_contacts = api.post("/api/v4/leads/complex", json=[{"_embedded": {"contacts": [{"name": "a"}, {"name": "b"}]}}])
    assert errors_of(two_contacts)[0]["errors"][0]["path"] == "_embedded.contacts"
    existing = api.post("/api/v4/leads/complex", json=[{"_embedded": {"contacts": [{"id": 1}]}}])
    assert errors_of(existing)[0]["errors"][0]["code"] == "FieldNotExpected"


def test_lead_query_and_filter_query_are_configurable(api: httpx.Client, control: httpx.Client) -> None:
    [cid] = add_contacts(api, [{"name": "Поиск", "custom_fields_values": [phone("+79990001234")]}])
    [lead] = add_leads(api, [{"name": "Заявка", "_embedded": {"contacts": [{"id": cid}]}}])
    assert api.get("/api/v4/leads", params={"query": "+79990001234"}).status_code == 204  # leads have no phone
    everything = api.get("/api/v4/leads", params={"filter[query]": "+79990001234", "limit": 250}).json()
    assert len(everything["_embedded"]["leads"]) > 1  # an unknown filter is ignored
    reset(control, amocrm_lead_query_includes_contacts=True, amocrm_filter_query=True)
    [cid] = add_contacts(api, [{"name": "Поиск", "custom_fields_values": [phone("+79990001234")]}])
    [lead] = add_leads(api, [{"name": "Заявка", "_embedded": {"contacts": [{"id": cid}]}}])
    for params in ({"query": "+79990001234"}, {"filter[query]": "+79990001234"}):
        assert [x["id"] for x in api.get("/api/v4/leads", params=params).json()["_embedded"]["leads"]] == [lead]


# ------------------------------------------------------------------------ notes, links, catalogs
def test_notes_per_lead_and_bulk(api: httpx.Client, control: httpx.Client) -> None:
    first, second = add_leads(api, [{"name": "N1"}, {"name": "N2"}])
    one = api.post(f"/api/v4/leads/{first}/notes", json=[{"note_type": "common", "params": {"text": "Оплата"}}])
    assert one.status_code == 200 and one.json()["_embedded"]["notes"][0]["entity_id"] == first
    bulk = api.post(
        "/api/v4/leads/notes",
        json=[
            {"entity_id": first, "note_type": "common", "params": {"text": "a"}, "request_id": "r1"},
            {"entity_id": second, "note_type": "common", "params": {"text": "b"}},
        ],
    )
    assert [n["request_id"] for n in bulk.json()["_embedded"]["notes"]] == ["r1", "1"]
    listed = api.get(f"/api/v4/leads/{first}/notes").json()["_embedded"]["notes"]
    assert [(n["note_type"], n["params"]["text"]) for n in listed] == [("common", "Оплата"), ("common", "a")]
    assert api.get(f"/api/v4/leads/{second}/notes", params={"filter[note_type]": "call_in"}).status_code == 204
    notes_before = len(dump(control, "notes"))
    for response in (
        api.post("/api/v4/leads/1/notes", json=[{"note_type": "common", "params": {"text": "x"}}]),
        api.post(
            "/api/v4/leads/notes",
            json=[
                {"entity_id": first, "note_type": "common", "params": {"text": "ok"}},
                {"entity_id": 1, "note_type": "common", "params": {"text": "x"}},
            ],
        ),
        api.post(f"/api/v4/leads/{first}/notes", json=[{"note_type": "common", "params": {}}]),
        api.post(f"/api/v4/leads/{first}/notes", json=[{"note_type": "scribble", "params": {}}]),
    ):
        assert response.status_code == 400
    assert len(dump(control, "notes")) == notes_before == 3


def test_links_to_catalog_elements_and_contacts(api: httpx.Client, control: httpx.Client) -> None:
    [lead] = add_leads(api, [{"name": "Товары"}])
    [cid] = add_contacts(api, [{"name": "Связь"}])
    element = api.get(f"/api/v4/catalogs/{amo.AMO_CATALOG_ID}/elements", params={"limit": 1}).json()
    eid = element["_embedded"]["elements"][0]["id"]
    linked = api.post(
        f"/api/v4/leads/{lead}/link",
        json=[
            {
                "to_entity_id": eid,
                "to_entity_type": "catalog_elements",
                "metadata": {"quantity": 2, "catalog_id": amo.AMO_CATALOG_ID},
            },
            {"to_entity_id": cid, "to_entity_type": "contacts", "metadata": {"is_main": True}},
        ],
    )
    assert linked.status_code == 200
    assert [x["metadata"] for x in linked.json()["_embedded"]["links"]] == [
        {"quantity": 2, "catalog_id": amo.AMO_CATALOG_ID},
        {"main_contact": True},
    ]
    listed = api.get(f"/api/v4/leads/{lead}/links").json()
    assert listed["_total_items"] == 2 and listed["_embedded"]["links"][0] == {
        "to_entity_id": eid,
        "to_entity_type": "catalog_elements",
        "metadata": {"quantity": 2, "catalog_id": amo.AMO_CATALOG_ID},
    }
    with_contacts = api.get(f"/api/v4/leads/{lead}", params={"with": "contacts,catalog_elements"}).json()["_embedded"]
    assert [c["id"] for c in with_contacts["contacts"]] == [cid] and with_contacts["catalog_elements"][0]["id"] == eid
    bad = api.post(
        "/api/v4/leads/link",
        json=[
            {
                "entity_id": lead,
                "to_entity_id": 1,
                "to_entity_type": "catalog_elements",
                "metadata": {"quantity": 1, "catalog_id": amo.AMO_CATALOG_ID},
            }
        ],
    )
    assert errors_of(bad)[0]["errors"][0]["path"] == "to_entity_id"
    unlinked = api.post(
        "/api/v4/leads/unlink", json=[{"entity_id": lead, "to_entity_id": cid, "to_entity_type": "contacts"}]
    )
    assert unlinked.status_code == 204 and unlinked.content == b""
    assert "contacts" not in {
        x["to_entity_type"] for x in api.get(f"/api/v4/leads/{lead}/links").json()["_embedded"]["links"]
    }
    assert any(x["entity_id"] == lead for x in dump(control, "links"))


def test_catalog_elements_crud_and_search(api: httpx.Client) -> None:
    path = f"/api/v4/catalogs/{amo.AMO_CATALOG_ID}/elements"
    created = api.post(
        path,
        json=[
            {
                "name": "Утюг Tefal FV",
                "custom_fields_values": [
                    {"field_id": amo.AMO_CATALOG_SKU_FIELD_ID, "values": [{"value": "KZ-777"}]},
                    {"field_id": amo.AMO_CATALOG_PRICE_FIELD_ID, "values": [{"value": 25990}]},
                ],
            }
        ],
    )
    assert created.status_code == 200
    element = created.json()["_embedded"]["elements"][0]
    assert element["request_id"] == 0 and element["catalog_id"] == amo.AMO_CATALOG_ID
    assert {f["field_code"]: f["values"][0]["value"] for f in element["custom_fields_values"]} == {
        "SKU": "KZ-777",
        "PRICE": "25990",
    }
    found = api.get(path, params={"query": "KZ-777"}).json()["_embedded"]["elements"]
    assert [e["id"] for e in found] == [element["id"]]
    assert api.get(path, params={"filter[id][]": element["id"]}).json()["_embedded"]["elements"][0]["name"] == (
        "Утюг Tefal FV"
    )
    patched = api.patch(path, json=[{"id": element["id"], "name": "Утюг Tefal FV2"}])
    assert patched.status_code == 200 and api.get(f"{path}/{element['id']}").json()["name"] == "Утюг Tefal FV2"
    assert errors_of(api.post(path, json=[{"custom_fields_values": []}]))[0]["errors"][0]["path"] == "name"
    assert api.get("/api/v4/catalogs/999/elements").status_code == 404


def test_webhook_subscriptions(api: httpx.Client) -> None:
    assert api.get("/api/v4/webhooks").status_code == 204
    hook = api.post("/api/v4/webhooks", json={"destination": "https://example.test/hook", "settings": ["status_lead"]})
    assert hook.status_code == 200 and hook.json()["settings"] == ["status_lead"] and hook.json()["disabled"] is False
    listed = api.get("/api/v4/webhooks").json()
    assert (
        listed["_total_items"] == 1 and listed["_embedded"]["webhooks"][0]["destination"] == "https://example.test/hook"
    )
    assert api.post("/api/v4/webhooks", json={"destination": "https://x.test", "settings": ["fly"]}).status_code == 400
    assert (
        api.request("DELETE", "/api/v4/webhooks", json={"destination": "https://example.test/hook"}).status_code == 204
    )
    assert api.get("/api/v4/webhooks").status_code == 204


# ------------------------------------------------------------------------------ faults and stats
def test_faults_stats_and_commit_then_drop(api: httpx.Client, control: httpx.Client) -> None:
    assert (
        control.post("/_sandbox/faults", json={"amocrm": {"error_burst": {"count": 1, "status": 502}}}).json()[
            "amocrm"
        ]["error_burst"]["count"]
        == 1
    )
    failed = api.get("/api/v4/leads")
    assert failed.status_code == 502 and failed.headers["content-type"].startswith("text/html")
    control.post("/_sandbox/faults", json={"amocrm": {"commit_then_drop": {"count": 1, "methods": ["POST leads"]}}})
    before = len(dump(control, "leads"))
    with pytest.raises(httpx.TransportError):
        api.post("/api/v4/leads", json=[{"name": "dropped"}])
    assert len(dump(control, "leads")) == before + 1
    stats = control.get("/_sandbox/stats").json()["amocrm"]
    assert stats["by_method"] == {"GET leads": 1, "POST leads": 1}
    assert set(stats["entities"]) == {"contacts", "leads", "catalog_elements", "notes", "links"}
    assert control.post("/_sandbox/faults", json={"amocrm": {"surprise": 1}}).status_code == 400


def test_bulk_volumes_are_fast(api: httpx.Client) -> None:
    started = time.perf_counter()
    ids: list[int] = []
    for batch in range(8):
        ids += add_leads(
            api,
            [
                {
                    "name": f"Bulk {batch}-{i}",
                    "price": i,
                    "custom_fields_values": [
                        {"field_id": amo.AMO_LEAD_ORDER_CODE_FIELD_ID, "values": [{"value": f"{batch}-{i}"}]}
                    ],
                }
                for i in range(250)
            ],
        )
    seen = 0
    page = 1
    while True:
        response = api.get("/api/v4/leads", params={"limit": 250, "page": page, "with": "contacts"})
        if response.status_code == 204:
            break
        seen += len(response.json()["_embedded"]["leads"])
        page += 1
    assert len(ids) == 2000 and seen >= 2000
    found = api.get("/api/v4/leads", params={"query": "7-249"}).json()["_embedded"]["leads"]
    assert [lead["id"] for lead in found] == [ids[-1]]
    assert time.perf_counter() - started < 8
