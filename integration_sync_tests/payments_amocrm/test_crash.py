"""The payments push killed mid-run (SIGKILL) and run again: no lead or note twice, no payment counted twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx

from integration_sync.sandbox import amocrm_schema as ids
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings
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


def payment_notes(control: httpx.Client) -> Counter[str]:
    return Counter(
        line.removeprefix("Payment ID: ")
        for note in amo(control, "notes")
        for line in note["params"]["text"].splitlines()
        if line.startswith("Payment ID: crash-")
    )


def test_push_killed_mid_run_then_rerun(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client, sandbox: object
) -> None:
    env = flow_env(sandbox_env, data_dir, AMO_HTTP_BACKOFF_S="0.05")
    api = AmoApi(sandbox.base_url)  # type: ignore[attr-defined]
    regular = api.contact("Постоянный клиент", tg="600600")
    lead = api.lead(regular, ids.AMO_PIPELINE_SITE, 63242010, total=1000, count=1)
    bodies = [payment(f"crash-known-{n}", user={"telegram_id": "600600", "first_name": "Пётр"}) for n in range(10)]
    bodies += [payment(f"crash-new-{n}", user={"telegram_id": f"61{n:04d}", "first_name": "Новый"}) for n in range(20)]
    with ReceiverServer(ReceiverSettings.from_env(env)) as server:
        assert set(deliver(server.base_url, *bodies)) == {200}
    run_flow(env, selection=ASSETS[:1])
    leads_before = {x["id"] for x in amo(control, "leads")}
    control.post("/_sandbox/faults", json={"amocrm": {"latency_ms": 150}}).raise_for_status()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(env)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        deadline = time.monotonic() + 120
        while not {x["id"] for x in amo(control, "leads")} - leads_before:
            assert child.poll() is None, "the push ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert sum(payment_notes(control).values()) < len(bodies), "the kill should land before every note is in"
    assert {row["status"] for row in event_log(env).values()} == {"processing"}
    control.post("/_sandbox/faults", json={"amocrm": None}).raise_for_status()

    result = run_flow(env, selection=ASSETS[1:])
    assert result.success and push_metadata(result)["rejected"] == 0
    assert payment_notes(control) == Counter({body["course_order"]["payment_id"]: 1 for body in bodies})
    made = Counter(
        field(x, ids.AMO_LEAD_FIELD_PAYMENT_ID) for x in amo(control, "leads") if x["id"] not in leads_before
    )
    assert len(made) == 20 and set(made.values()) == {1}, "one new lead per new customer's payment"
    tg_ids = Counter(field(c, ids.AMO_CONTACT_FIELD_TG_ID) for c in amo(control, "contacts"))
    assert all(tg_ids[f"61{n:04d}"] == 1 for n in range(20)), "no contact created twice"
    known = api.get("leads", lead)
    assert Decimal(field(known, ids.AMO_LEAD_FIELD_TOTAL_PAID)) == 1000 + 10 * 10000  # never counted twice
    assert field(known, ids.AMO_LEAD_FIELD_PURCHASE_COUNT) == "11"
    assert {row["status"] for row in event_log(env).values()} == {"success"}
    api.close()
