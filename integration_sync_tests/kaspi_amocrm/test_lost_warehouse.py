"""A lost warehouse (fresh data dir) against an amoCRM that already holds the leads: nothing made twice."""

from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path

import httpx
import pytest

from integration_sync_tests.kaspi_amocrm.flow import amo, amo_requests, flow_env, push_metadata, run_flow


@pytest.fixture()
def env(sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client) -> dict[str, str]:
    control.post("/_sandbox/reset", json={"seed": 5, "kaspi_orders": 30, "days": 1}).raise_for_status()
    return flow_env(sandbox_env, data_dir)


def kaspi_leads(control: httpx.Client) -> list[dict[str, object]]:
    return [x for x in amo(control, "leads") if str(x.get("name", "")).startswith("Kaspi №")]


def test_fresh_warehouse_rematches_every_lead_in_bulk(
    env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    assert run_flow(env, days=1).success
    leads = kaspi_leads(control)
    notes, contacts = len(amo(control, "notes")), len(amo(control, "contacts"))
    links, elements = len(amo(control, "links")), len(amo(control, "catalog_elements"))
    shutil.rmtree(data_dir)
    data_dir.mkdir()

    before = amo_requests(control)
    result = run_flow(env, days=1)
    assert result.success
    meta = push_metadata(result)
    assert meta["created"] == 0 and meta["rejected"] == 0
    assert meta["lead_index_requests"] == 1  # 30 leads: one page of the pipeline's leads
    after = kaspi_leads(control)
    assert Counter(x["name"] for x in after) == Counter(x["name"] for x in leads)
    assert len(amo(control, "notes")) == notes and len(amo(control, "contacts")) == contacts
    assert len(amo(control, "links")) == links and len(amo(control, "catalog_elements")) == elements
    # one page of the pipeline's leads per 250, one notes read per 50 leads, nothing else
    used = amo_requests(control) - before
    assert used <= math.ceil(len(leads) / 250) + math.ceil(len(leads) / 50), used


def test_a_lead_without_its_note_is_completed_not_doubled(
    env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    # the note's answer is lost on the first run: the note is in amoCRM, the warehouse does not know
    control.post(
        "/_sandbox/faults", json={"amocrm": {"commit_then_drop": {"count": 1, "methods": ["POST leads/notes"]}}}
    ).raise_for_status()
    run_flow(env, days=1, raise_on_error=False)
    faults = control.post("/_sandbox/faults", json={}).json()
    assert faults["amocrm"]["commit_then_drop"]["fired"] == 1
    control.post("/_sandbox/faults", json={"amocrm": None}).raise_for_status()
    assert run_flow(env, days=1).success
    ids = {x["id"] for x in kaspi_leads(control)}
    per_lead = Counter(n["entity_id"] for n in amo(control, "notes") if n["entity_id"] in ids)
    assert set(per_lead) == ids and max(per_lead.values()) == 1
