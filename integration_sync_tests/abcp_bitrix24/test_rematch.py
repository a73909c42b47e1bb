"""A populated Bitrix24 portal and a warehouse that knows nothing of it (lost, restored, moved): the
flow matches every user to its existing contact and deal, and a failed lookup fails the push
instead of reading as "not there"."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from integration_sync_tests.abcp_bitrix24.flow import entities, flow_env, push_metadata, run_flow, stats, today

DAYS = 5


def _counts(control: httpx.Client) -> tuple[int, int]:
    return len(entities(control, "contacts")), len(entities(control, "deals"))


def _deals_per_user(control: httpx.Client, uf: str) -> Counter[str]:
    return Counter(str(d.get(uf)) for d in entities(control, "deals") if d.get(uf))


def _fault_state(control: httpx.Client) -> dict[str, Any]:
    state: dict[str, Any] = control.post("/_sandbox/faults", json={}).json()["bitrix24"]  # {} changes nothing
    return state


def test_fresh_warehouse_against_a_populated_portal_creates_nothing(
    sandbox_env: dict[str, str], tmp_path: Path, control: httpx.Client
) -> None:
    first = today() - timedelta(days=DAYS)
    env = flow_env(sandbox_env, tmp_path / "first")
    assert run_flow(env, first_day=first, last_day=today()).success
    contacts, deals = _counts(control)
    uf = sandbox_env["UF_B24_DEAL_ABCP_USER_ID"]
    changed = sorted(_deals_per_user(control, uf))[0]  # one user changes while the warehouse is lost
    control.post(f"/_sandbox/abcp/users/{changed}", json={"saldo": "-1 234,50"}).raise_for_status()
    before = stats(control)

    lost = flow_env(sandbox_env, tmp_path / "lost")  # a new data dir, same portal
    result = run_flow(lost, first_day=first, last_day=today())
    assert result.success
    assert _counts(control) == (contacts, deals)
    after = stats(control)["commands"]
    for method in ("crm.contact.add", "crm.deal.add"):
        assert after.get(method, 0) == before["commands"].get(method, 0), method
    sent = {k: v - before["commands"].get(k, 0) for k, v in after.items()}
    meta = push_metadata(result)
    assert meta["created"] == 0
    # guards destination._seen_deals/_same_value: a matched deal equal in Bitrix24 is not re-sent,
    # and the lookup is bulk (one batch for 40 users; the rest is the 2 contacts reused by phone/email)
    assert sent.get("crm.deal.update", 0) == 1 and sent["crm.deal.list"] == 1
    deal = next(d for d in entities(control, "deals") if str(d.get(uf)) == changed)
    assert float(deal[sandbox_env["UF_B24_DEAL_SALDO"]]) == -1234.5  # what differs is still sent
    assert meta["api_requests"] <= 3


def test_a_lookup_failing_inside_a_200_batch_fails_the_push_and_duplicates_nothing(
    sandbox_env: dict[str, str], tmp_path: Path, control: httpx.Client
) -> None:
    """Guards destination._run_reads → Bitrix24Client.read_batch raising on `result_error`."""
    first = today() - timedelta(days=DAYS)
    uf = sandbox_env["UF_B24_DEAL_ABCP_USER_ID"]
    assert run_flow(flow_env(sandbox_env, tmp_path / "first"), first_day=first, last_day=today()).success
    contacts, deals = _counts(control)
    assert max(_deals_per_user(control, uf).values()) == 1

    fault = {"batch_command_error": {"count": 1, "methods": ["crm.deal.list"]}}
    control.post("/_sandbox/faults", json={"bitrix24": fault}).raise_for_status()
    lost = flow_env(sandbox_env, tmp_path / "lost")
    failed = run_flow(lost, first_day=first, last_day=today(), raise_on_error=False)
    state = _fault_state(control)
    assert state["batch_command_error"]["fired"] == 1
    assert stats(control)["injected"] == {"batch_command_error": 1}
    assert not failed.success
    text = " ".join(str(e.event_specific_data) for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
    assert "crm.deal.list failed in a batch" in text
    assert _counts(control) == (contacts, deals)  # nothing created on a failed lookup

    control.post("/_sandbox/faults", json={"bitrix24": None}).raise_for_status()
    again = run_flow(lost, first_day=first, last_day=today())  # the next run retries and matches
    assert again.success and push_metadata(again)["created"] == 0
    assert _counts(control) == (contacts, deals)
    assert max(_deals_per_user(control, uf).values()) == 1
