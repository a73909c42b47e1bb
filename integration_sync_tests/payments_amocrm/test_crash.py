"""The payments push SIGKILLed at chosen writes, then run again: no lead, contact or note twice, and no
payment counted twice in a lead's totals.

The amoCRM emulator commits the chosen write and holds its answer (`commit_then_drop` with
``hold_ms``); the test kills the run process while the answer is held, so the kill lands exactly
after that write: new leads made, the known lead's totals PATCHed (no note yet), or every note in.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_sync.sandbox import amocrm_schema as ids
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings
from integration_sync_tests.crash_support import kill_at_held_write
from integration_sync_tests.payments_amocrm.flow import (
    ASSETS,
    AmoApi,
    amo,
    deliver,
    event_log,
    field,
    flow_env,
    payment,
    push_metadata,
    run_flow,
)

CHILD = """
import json, sys
from integration_sync_tests.payments_amocrm.flow import run_flow, ASSETS
run_flow(json.loads(sys.argv[1]), selection=ASSETS[1:])
"""
KNOWN, NEW = 5, 8


def payment_notes(control: httpx.Client) -> Counter[str]:
    return Counter(
        line.removeprefix("Payment ID: ")
        for note in amo(control, "notes")
        for line in note["params"]["text"].splitlines()
        if line.startswith("Payment ID: crash-")
    )


def lead_of(control: httpx.Client, lead_id: int) -> dict[str, Any]:
    return next(x for x in amo(control, "leads") if x["id"] == lead_id)


@pytest.mark.parametrize(
    ("method", "notes_at_kill"),
    [
        ("POST leads/complex", 0),  # the new customers' leads and contacts made
        ("PATCH leads", 0),  # the known lead's totals written, no note yet: a retry must not add them again
        ("POST leads/notes", KNOWN + NEW),  # every note in: a retry must see them, not add them again
    ],
    ids=["after-new-leads", "after-totals", "after-notes"],
)
def test_push_killed_at_a_write_then_rerun(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client, sandbox: Any, method: str, notes_at_kill: int
) -> None:
    env = flow_env(sandbox_env, data_dir, AMO_HTTP_BACKOFF_S="0.05")
    api = AmoApi(sandbox.base_url)
    regular = api.contact("Постоянный клиент", tg="600600")
    lead = api.lead(regular, ids.AMO_PIPELINE_SITE, 63242010, total=1000, count=1)
    bodies = [payment(f"crash-known-{n}", user={"telegram_id": "600600", "first_name": "Пётр"}) for n in range(KNOWN)]
    bodies += [payment(f"crash-new-{n}", user={"telegram_id": f"61{n:04d}", "first_name": "Новый"}) for n in range(NEW)]
    with ReceiverServer(ReceiverSettings.from_env(env)) as server:
        assert set(deliver(server.base_url, *bodies)) == {200}
    run_flow(env, selection=ASSETS[:1])
    leads_before = {x["id"] for x in amo(control, "leads")}
    kill_at_held_write(control, "amocrm", {"count": 1, "methods": [method], "hold_ms": 3_000}, CHILD, json.dumps(env))
    assert sum(payment_notes(control).values()) == notes_at_kill
    if method == "PATCH leads":  # the kill landed after the totals were written
        assert Decimal(field(lead_of(control, lead), ids.AMO_LEAD_FIELD_TOTAL_PAID)) == 1000 + KNOWN * 10000
    assert {row["status"] for row in event_log(env).values()} == {"processing"}

    result = run_flow(env, selection=ASSETS[1:])
    assert result.success and push_metadata(result)["rejected"] == 0
    assert payment_notes(control) == Counter({body["course_order"]["payment_id"]: 1 for body in bodies})
    made = Counter(
        field(x, ids.AMO_LEAD_FIELD_PAYMENT_ID) for x in amo(control, "leads") if x["id"] not in leads_before
    )
    assert len(made) == NEW and set(made.values()) == {1}, "one new lead per new customer's payment"
    tg_ids = Counter(field(c, ids.AMO_CONTACT_FIELD_TG_ID) for c in amo(control, "contacts"))
    assert all(tg_ids[f"61{n:04d}"] == 1 for n in range(NEW)), "no contact created twice"
    known = lead_of(control, lead)
    assert Decimal(field(known, ids.AMO_LEAD_FIELD_TOTAL_PAID)) == 1000 + KNOWN * 10000  # never counted twice
    assert str(field(known, ids.AMO_LEAD_FIELD_PURCHASE_COUNT)) == str(1 + KNOWN)
    new_leads = [x for x in amo(control, "leads") if x["id"] not in leads_before]
    assert {Decimal(field(x, ids.AMO_LEAD_FIELD_TOTAL_PAID)) for x in new_leads} == {10000}  # one payment each
    assert {row["status"] for row in event_log(env).values()} == {"success"}
    api.close()
