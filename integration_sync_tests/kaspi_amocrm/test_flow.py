"""The kaspi_amocrm flow through Dagster against the Kaspi and amoCRM emulators over loopback HTTP."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from integration_sync.defs.kaspi_amocrm.schedules import kaspi_amocrm_job, kaspi_reconciliation
from integration_sync.sync.normalize import KAZAKHSTAN
from integration_sync_tests.dagster_support import asset_metadata, environment
from integration_sync_tests.kaspi_amocrm.flow import (
    ASSETS,
    CHECKS,
    amo,
    amo_requests,
    flow_env,
    push_metadata,
    resources,
    run_flow,
    today,
)


@pytest.fixture()
def env(sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client) -> dict[str, str]:
    control.post("/_sandbox/reset", json={"seed": 5, "kaspi_orders": 40, "days": 3}).raise_for_status()
    return flow_env(sandbox_env, data_dir)


def kaspi_orders(control: httpx.Client) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = control.get("/_sandbox/kaspi/orders").json()
    return rows


def product(entry: dict[str, Any]) -> str:
    """An order line's product (its master product: one merchant SKU, one catalog element)."""
    return str(entry["relationships"]["product"]["data"]["id"])


def kaspi_entries(control: httpx.Client, order: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = control.get(f"/_sandbox/kaspi/orders/{order['attributes']['code']}").json()["entries"]
    return rows


def field_value(entity: dict[str, Any], field_id: int) -> Any:
    for item in entity.get("custom_fields_values") or []:
        if item.get("field_id") == field_id:
            return (item.get("values") or [{}])[0].get("value")
    return None


def leads_by_code(control: httpx.Client, env: dict[str, str]) -> Counter[str]:
    field_id = int(env["AMO_LEAD_ORDER_CODE_FIELD_ID"])
    return Counter(
        str(field_value(lead, field_id))
        for lead in amo(control, "leads")
        if str(lead.get("name", "")).startswith("Kaspi №") and field_value(lead, field_id)
    )


def test_each_order_becomes_one_lead_with_contact_items_and_note(env: dict[str, str], control: httpx.Client) -> None:
    orders = kaspi_orders(control)
    codes = {o["attributes"]["code"] for o in orders}
    result = run_flow(env)
    assert result.success
    meta = push_metadata(result)
    assert meta["created"] == len(codes) and meta["rejected"] == 0 and meta["invalid"] == 0
    assert meta["api_requests"] / len(codes) <= 0.5
    per_code = leads_by_code(control, env)
    assert set(per_code) == codes and max(per_code.values()) == 1
    leads = [lead for lead in amo(control, "leads") if str(lead.get("name", "")).startswith("Kaspi №")]
    expected = {
        o["attributes"]["code"]: {"COMPLETED": 142, "CANCELLED": 143, "RETURNED": 143}.get(
            o["attributes"]["status"], int(env["AMO_STATUS_ID"])
        )
        for o in orders
    }
    assert {lead["name"].split("№")[1]: lead["status_id"] for lead in leads} == expected
    assert all(lead["responsible_user_id"] == int(env["AMO_RESPONSIBLE_USER_ID"]) for lead in leads)
    # repeat customers share one contact; every lead has one
    customers = {o["attributes"]["customer"]["cellPhone"] for o in orders}
    ours = [
        c
        for c in amo(control, "contacts")
        if any(lead["id"] in {x["id"] for x in leads} for lead in (c.get("_embedded") or {}).get("leads", []))
    ]
    assert len(ours) == len(customers)
    notes = [n for n in amo(control, "notes") if n.get("entity_id") in {lead["id"] for lead in leads}]
    assert len(notes) == len(leads) and all("Заказ Kaspi №" in n["params"]["text"] for n in notes)
    links = [
        x
        for x in amo(control, "links")
        if x.get("to_entity_type") == "catalog_elements" and x.get("entity_id") in {lead["id"] for lead in leads}
    ]
    assert links, "order lines are linked as catalog elements"
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "orders_match_kaspi_total": True,
        "target_ids_present": True,
        "one_target_per_record": True,
        "rejected_share_below_threshold": True,
        "turned_away_below_threshold": True,
    }

    before = amo_requests(control)
    again = run_flow(env)
    assert push_metadata(again)["api_requests"] == 0 and push_metadata(again)["unchanged"] == len(codes)
    assert amo_requests(control) == before
    # products are reused: a new order's known products create no catalog element, new ones one each
    elements = len(amo(control, "catalog_elements"))
    known = {product(e) for o in orders for e in kaspi_entries(control, o)}
    made = control.post("/_sandbox/kaspi/orders", json={"count": 3}).json()["codes"]
    new_products = {
        product(e) for code in made for e in control.get(f"/_sandbox/kaspi/orders/{code}").json()["entries"]
    } - known
    third = run_flow(env, days=0)
    assert push_metadata(third)["created"] == 3
    assert len(amo(control, "catalog_elements")) - elements == len(new_products)


def test_reconciliation_schedule_moves_old_leads_to_won_and_lost(env: dict[str, str], control: httpx.Client) -> None:
    run_flow(env)
    orders = kaspi_orders(control)  # oldest first: these two are from 3 days ago, past the minute job's reach
    done, cancelled = orders[0]["attributes"]["code"], orders[1]["attributes"]["code"]
    assert (
        today() - datetime.fromtimestamp(orders[1]["attributes"]["creationDate"] / 1000, KAZAKHSTAN).date()
    ).days >= 2
    control.post(f"/_sandbox/kaspi/orders/{done}/status", json={"status": "COMPLETED", "force": True})
    control.post(f"/_sandbox/kaspi/orders/{cancelled}/status", json={"status": "CANCELLED", "force": True})
    before = amo_requests(control)
    # the 10-minute schedule, evaluated now, and the run it requests executed as the daemon would
    with environment(env), dg.instance_for_test() as instance:
        defs = dg.Definitions(
            assets=ASSETS,
            asset_checks=CHECKS,
            jobs=[kaspi_amocrm_job],
            schedules=[kaspi_reconciliation],
            resources=resources(),
        )
        tick = datetime.now(KAZAKHSTAN)
        request = kaspi_reconciliation(dg.build_schedule_context(instance=instance, scheduled_execution_time=tick))
        assert isinstance(request, dg.RunRequest)
        job = defs.resolve_job_def("kaspi_amocrm_job")
        result = job.execute_in_process(instance=instance, tags=request.tags)
    assert result.success
    meta = asset_metadata(result, "amocrm__kaspi_leads")
    assert (meta["changed"], meta["updated"], meta["created"]) == (2, 2, 0)
    assert amo_requests(control) - before == 1  # one bulk PATCH
    field_id = int(env["AMO_LEAD_ORDER_CODE_FIELD_ID"])
    status = {str(field_value(lead, field_id)): lead["status_id"] for lead in amo(control, "leads")}
    assert (status[done], status[cancelled]) == (142, 143)


def test_orders_missed_while_down_are_caught_up(env: dict[str, str], control: httpx.Client) -> None:
    run_flow(env, days=1)
    two_days_ago = datetime.now(KAZAKHSTAN) - timedelta(days=2, hours=1)
    made = control.post(
        "/_sandbox/kaspi/orders", json={"count": 2, "created_at": int(two_days_ago.timestamp() * 1000)}
    ).json()
    run_flow(env, days=1)  # yesterday and today only: the outage's orders are not there yet
    assert not set(made["codes"]) & set(leads_by_code(control, env))
    run_flow(env, first_day=today() - timedelta(days=3))  # the catch-up range the schedule computes
    assert set(made["codes"]) <= set(leads_by_code(control, env))


def test_lost_answer_on_create_never_makes_a_second_lead(env: dict[str, str], control: httpx.Client) -> None:
    codes = {o["attributes"]["code"] for o in kaspi_orders(control)}
    control.post(
        "/_sandbox/faults",
        json={
            "amocrm": {
                "commit_then_drop": {"count": 1, "methods": ["POST leads/complex"]},
                "error_burst": {"count": 2, "status": 429},
            }
        },
    ).raise_for_status()
    result = run_flow(env, raise_on_error=False)
    fired = control.post("/_sandbox/faults", json={}).json()["amocrm"]["commit_then_drop"]["fired"]
    assert fired == 1, "the answer of a leads/complex write was lost"
    control.post("/_sandbox/faults", json={"amocrm": None}).raise_for_status()
    if not result.success:
        run_flow(env)
    run_flow(env)
    per_code = leads_by_code(control, env)
    assert set(per_code) == codes and max(per_code.values()) == 1
    leads = {lead["id"] for lead in amo(control, "leads") if str(lead.get("name", "")).startswith("Kaspi №")}
    notes = Counter(n["entity_id"] for n in amo(control, "notes") if n["entity_id"] in leads)
    # the lead whose answer was lost was completed (note and links added), not created again
    assert set(notes) == leads and max(notes.values()) == 1


def test_malformed_orders_are_invalid_with_reasons(env: dict[str, str], control: httpx.Client) -> None:
    now_ms = int(datetime.now(KAZAKHSTAN).timestamp() * 1000)
    good = kaspi_orders(control)[0]
    broken = []
    changes: list[dict[str, Any]] = [
        {"customer": {"firstName": "Без", "lastName": "Телефона"}},
        {"totalPrice": "дорого"},
    ]
    for n, change in enumerate(changes):
        code = f"99900{n}"
        attributes = {**good["attributes"], "code": code, "creationDate": now_ms, **change}
        broken.append({**good, "id": f"raw{n}", "attributes": attributes})
    control.post("/_sandbox/kaspi/orders/raw", json=broken).raise_for_status()
    result = run_flow(env)
    assert result.success
    meta = push_metadata(result)
    assert meta["invalid"] == 2 and meta["created"] == len(kaspi_orders(control)) - 2
    reasons = str(meta["invalid_sample"])
    assert "no valid customer phone" in reasons and "totalPrice is not a number" in reasons


def test_minute_run_reads_one_page_per_day_and_picks_up_new_orders(env: dict[str, str], control: httpx.Client) -> None:
    # Kaspi publishes no rate limit: a faster one here only shortens the first load's line fetches
    fast = {"kaspi_rate": 100.0, "kaspi_burst": 100}
    control.post("/_sandbox/reset", json={"seed": 6, "kaspi_orders": 250, "days": 2, **fast}).raise_for_status()
    env = {**env, "KASPI_RATE_PER_S": "90"}
    run_flow(env, days=2)
    stats = control.get("/_sandbox/stats").json()
    kaspi_before, amo_before = stats["kaspi"]["requests"], stats["amocrm"]["requests"]
    idle = run_flow(env, days=1, incremental=True)
    stats = control.get("/_sandbox/stats").json()
    assert stats["kaspi"]["requests"] - kaspi_before == 2  # yesterday and today, one page each
    assert stats["amocrm"]["requests"] - amo_before == 0
    assert push_metadata(idle)["api_requests"] == 0
    made = control.post("/_sandbox/kaspi/orders", json={"count": 2}).json()
    run_flow(env, days=1, incremental=True)
    assert set(made["codes"]) <= set(leads_by_code(control, env))
