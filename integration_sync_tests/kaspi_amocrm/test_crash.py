"""The amoCRM push killed mid-run (SIGKILL) and run again: no duplicate lead, contact or catalog element."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from integration_sync_tests.abcp_bitrix24.flow import flow_env
from integration_sync_tests.kaspi_amocrm.flow import ASSETS, amo, push_metadata, run_flow

CHILD = """
import json, sys
from integration_sync_tests.kaspi_amocrm.flow import run_flow, ASSETS
run_flow(json.loads(sys.argv[1]), days=2, selection=ASSETS[1:])
"""


def test_push_killed_mid_run_then_rerun(sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client) -> None:
    # Kaspi publishes no rate limit: a faster one here only shortens the load before the push
    fast = {"kaspi_rate": 100.0, "kaspi_burst": 100}
    control.post("/_sandbox/reset", json={"seed": 9, "kaspi_orders": 160, "days": 2, **fast}).raise_for_status()
    env = flow_env(sandbox_env, data_dir, KASPI_RATE_PER_S="90")
    run_flow(env, days=2, selection=ASSETS[:1])
    orders = control.get("/_sandbox/kaspi/orders").json()
    codes = {o["attributes"]["code"] for o in orders}
    phones = {o["attributes"]["customer"]["cellPhone"] for o in orders}
    control.post("/_sandbox/faults", json={"amocrm": {"latency_ms": 150}}).raise_for_status()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(env)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        deadline = time.monotonic() + 120
        while not any(str(x.get("name", "")).startswith("Kaspi №") for x in amo(control, "leads")):
            assert child.poll() is None, "the push ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    made = [x for x in amo(control, "leads") if str(x.get("name", "")).startswith("Kaspi №")]
    assert 0 < len(made) < len(codes), "the kill should land mid-push"
    control.post("/_sandbox/faults", json={"amocrm": None}).raise_for_status()

    result = run_flow(env, days=2, selection=ASSETS[1:])
    assert result.success and push_metadata(result)["rejected"] == 0
    leads = [x for x in amo(control, "leads") if str(x.get("name", "")).startswith("Kaspi №")]
    per_code = Counter(x["name"].split("№")[1] for x in leads)
    assert set(per_code) == codes and max(per_code.values()) == 1
    lead_ids = {x["id"] for x in leads}
    ours = [
        c
        for c in amo(control, "contacts")
        if {lead["id"] for lead in (c.get("_embedded") or {}).get("leads", [])} & lead_ids
    ]
    assert len(ours) == len(phones), "one contact per customer"
    elements = Counter(str(e.get("name")) for e in amo(control, "catalog_elements"))
    assert max(elements.values()) == 1, "no product created twice"
    notes = Counter(n["entity_id"] for n in amo(control, "notes") if n["entity_id"] in lead_ids)
    assert set(notes) == lead_ids, "every lead has its summary note"
