"""The amoCRM push killed (SIGKILL) at chosen writes, then run again: exactly one lead, one note and
one contact per customer, no product twice.

The emulator commits the chosen write (the `skip`+1-th matching request), holds its answer, and the
test kills the run process while it waits for that answer: the write is in amoCRM, the warehouse
does not know it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest

from integration_sync_tests.crash_support import kill_at_held_write
from integration_sync_tests.kaspi_amocrm.flow import ASSETS, amo, flow_env, push_metadata, run_flow

CHILD = """
import json, sys
from integration_sync_tests.kaspi_amocrm.flow import run_flow, ASSETS
run_flow(json.loads(sys.argv[1]), days=2, selection=ASSETS[1:])
"""


def kaspi_leads(control: httpx.Client) -> list[dict[str, object]]:
    return [x for x in amo(control, "leads") if str(x.get("name", "")).startswith("Kaspi №")]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("write", "skip"),
    [
        ("POST leads/complex", 1),  # the second chunk of new leads: made, no note, no links yet
        ("POST leads/notes", 1),  # the second chunk of notes: in amoCRM, its answer never read
    ],
)
def test_push_killed_at_a_write_then_rerun(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client, write: str, skip: int
) -> None:
    # Kaspi publishes no rate limit: a faster one here only shortens the load before the push
    fast = {"kaspi_rate": 100.0, "kaspi_burst": 100}
    control.post("/_sandbox/reset", json={"seed": 9, "kaspi_orders": 160, "days": 2, **fast}).raise_for_status()
    env = flow_env(sandbox_env, data_dir, KASPI_RATE_PER_S="90")
    run_flow(env, days=2, selection=ASSETS[:1])
    orders = control.get("/_sandbox/kaspi/orders").json()
    codes = {o["attributes"]["code"] for o in orders}
    phones = {o["attributes"]["customer"]["cellPhone"] for o in orders}
    hook = {"count": 1, "methods": [write], "skip": skip, "hold_ms": 5_000}
    kill_at_held_write(control, "amocrm", hook, CHILD, json.dumps(env))
    made = kaspi_leads(control)
    assert 0 < len(made) < len(codes) or write != "POST leads/complex", "the kill should land mid-push"

    result = run_flow(env, days=2, selection=ASSETS[1:])
    assert result.success and push_metadata(result)["rejected"] == 0
    leads = kaspi_leads(control)
    per_code = Counter(str(x["name"]).split("№")[1] for x in leads)
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
    assert set(notes) == lead_ids and max(notes.values()) == 1, "one summary note per lead"
    linked = {x["entity_id"] for x in amo(control, "links") if x.get("to_entity_type") == "catalog_elements"}
    assert lead_ids <= linked, "every lead has its order lines"
