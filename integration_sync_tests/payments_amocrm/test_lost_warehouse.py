"""The payments flow with its warehouse lost: the payments already applied are recovered from the
notes in amoCRM, so a second run makes no lead, contact or note twice and counts no payment twice."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx

from integration_sync.sandbox import amocrm_schema as ids
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings
from integration_sync_tests.payments_amocrm.flow import (
    AmoApi,
    amo,
    deliver,
    event_log,
    field,
    flow_env,
    lose_warehouse,
    payment,
    push_metadata,
    run_flow,
)

REGULAR_TG = "700700"


def notes_per_payment(control: httpx.Client) -> Counter[str]:
    return Counter(
        line.removeprefix("Payment ID: ")
        for note in amo(control, "notes")
        for line in note["params"]["text"].splitlines()
        if line.startswith("Payment ID: lost-")
    )


def totals(api: AmoApi, lead_id: int) -> tuple[Decimal, str]:
    lead = api.get("leads", lead_id)
    return Decimal(field(lead, ids.AMO_LEAD_FIELD_TOTAL_PAID)), str(field(lead, ids.AMO_LEAD_FIELD_PURCHASE_COUNT))


def test_lost_warehouse_rematches_without_doubles(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client, sandbox: object
) -> None:
    env = flow_env(sandbox_env, data_dir)
    api = AmoApi(sandbox.base_url)  # type: ignore[attr-defined]
    regular = api.contact("Постоянный клиент", tg=REGULAR_TG)
    manager_lead = api.lead(regular, ids.AMO_PIPELINE_SITE, 63242010, total=1000, count=1)
    regular_user = {"telegram_id": REGULAR_TG, "first_name": "Пётр"}
    bodies = [payment(f"lost-known-{n}", user=regular_user) for n in range(6)]
    bodies += [payment(f"lost-new-{n}", user={"telegram_id": f"71{n:04d}", "first_name": "Новый"}) for n in range(4)]
    receiver = ReceiverServer(ReceiverSettings.from_env(env))
    with receiver:
        assert set(deliver(receiver.base_url, *bodies)) == {200}
        first = run_flow(env)
        assert first.success and push_metadata(first)["rejected"] == 0
        made = {field(x, ids.AMO_LEAD_FIELD_PAYMENT_ID): x["id"] for x in amo(control, "leads")}
        closed = made["lost-new-0"]  # a lead made for a payment, then won
        pipeline = api.get("leads", closed)["pipeline_id"]
        won = api.client.patch("leads", json=[{"id": closed, "pipeline_id": pipeline, "status_id": ids.WON}])
        assert won.status_code == 200, won.text
        assert totals(api, manager_lead) == (Decimal(1000 + 6 * 10000), "7")
        leads_before = {x["id"] for x in amo(control, "leads")}
        contacts_before = len(amo(control, "contacts"))

        lose_warehouse(data_dir)
        # after the loss: the inbox's payments come again, plus new ones of customers amoCRM knows
        later = [payment("lost-known-later", user=regular_user)]
        assert set(deliver(receiver.base_url, *later)) == {200}
        second = run_flow(env)

    meta = push_metadata(second)
    assert second.success and meta["rejected"] == 0
    assert meta["leads_created"] == 0 and meta["contacts_created"] == 0
    assert meta["payments_found_applied"] == len(bodies)  # recovered from the notes, not applied again
    assert {x["id"] for x in amo(control, "leads")} == leads_before, "no lead made again"
    assert len(amo(control, "contacts")) == contacts_before
    every = [b["course_order"]["payment_id"] for b in [*bodies, *later]]
    assert notes_per_payment(control) == Counter(dict.fromkeys(every, 1)), "one note per payment"
    # totals: what amoCRM held, plus only the payments new since the loss
    assert totals(api, manager_lead) == (Decimal(1000 + 7 * 10000), "8")
    assert totals(api, made["lost-new-1"]) == (Decimal(10000), "1")
    assert totals(api, closed) == (Decimal(10000), "1")
    assert {row["status"] for row in event_log(env).values()} == {"success"}
    api.close()
