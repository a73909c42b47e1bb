"""The abcp_bitrix24 flow through Dagster against the sandbox over real loopback HTTP."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_sync_tests.abcp_bitrix24.flow import (
    ASSETS,
    entities,
    flow_env,
    push_metadata,
    run_flow,
    stats,
    today,
    warehouse,
)
from integration_sync_tests.dagster_support import asset_metadata

DAYS = 5


def abcp_users(env: dict[str, str]) -> list[dict[str, Any]]:
    """Every user the ABCP emulator holds, read straight from its API."""
    answer = httpx.get(
        env["ABCP_BASE_URL"],
        params={
            "userlogin": env["ABCP_USERLOGIN"],
            "userpsw": hashlib.md5(env["ABCP_USERPSW"].encode()).hexdigest(),  # noqa: S324 - ABCP's scheme
            "limit": 1000,
        },
        timeout=30,
    ).json()
    return list(answer.values()) if isinstance(answer, dict) else list(answer)


def assert_exactly_one_contact_and_deal(control: httpx.Client, env: dict[str, str], user_ids: set[str]) -> None:
    deals = entities(control, "deals")
    uf = env["UF_B24_DEAL_ABCP_USER_ID"]
    per_user = Counter(str(d.get(uf)) for d in deals if d.get(uf))
    assert set(per_user) == user_ids, f"missing: {user_ids - set(per_user)}, extra: {set(per_user) - user_ids}"
    assert max(per_user.values()) == 1, [k for k, v in per_user.items() if v > 1]
    contacts = {str(c["ID"]): c for c in entities(control, "contacts")}
    ours = [c for c in contacts.values() if c.get("ORIGINATOR_ID") == "integration_sync"]
    per_origin = Counter(str(c.get("ORIGIN_ID")) for c in ours)
    assert not per_origin or max(per_origin.values()) == 1
    linked = {str(d.get("CONTACT_ID")) for d in deals}
    for deal in deals:
        assert str(deal.get("CONTACT_ID")) in contacts, f"deal {deal['ID']} has no contact"
    orphans = [c["ID"] for c in ours if str(c["ID"]) not in linked]
    assert orphans == [], f"contacts without a deal: {orphans}"


@pytest.fixture()
def env(sandbox_env: dict[str, str], data_dir: Path) -> dict[str, str]:
    return flow_env(sandbox_env, data_dir)


def first_day() -> Any:
    return today() - timedelta(days=DAYS)


def test_first_run_creates_one_contact_and_deal_per_user_second_run_creates_nothing(
    env: dict[str, str], control: httpx.Client
) -> None:
    users = {u["userId"] for u in abcp_users(env) if isinstance(u, dict)}
    result = run_flow(env, first_day=first_day(), last_day=today())
    assert result.success
    meta = push_metadata(result)
    assert meta["created"] == len(users) and meta["rejected"] == 0
    assert meta["api_requests"] <= len(users) * 0.2
    assert_exactly_one_contact_and_deal(control, env, users)
    deal = next(d for d in entities(control, "deals"))
    assert deal["CATEGORY_ID"] == env["B24_DEAL_CATEGORY_ID_USERS"]
    assert deal["STAGE_ID"] == env["B24_DEAL_STAGE_NEW_USERS"]
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "target_ids_present": True,
        "one_target_per_record": True,
        "rejected_share_below_threshold": True,
        "turned_away_below_threshold": True,
    }

    before = stats(control)
    second = run_flow(env, first_day=first_day(), last_day=today())
    after = stats(control)
    assert push_metadata(second)["unchanged"] == len(users)
    assert push_metadata(second)["api_requests"] == 0
    assert after["commands"].get("crm.contact.add", 0) == before["commands"].get("crm.contact.add", 0)
    assert after["commands"].get("crm.deal.add", 0) == before["commands"].get("crm.deal.add", 0)
    assert after["requests"] == before["requests"]


def test_changed_saldo_yields_exactly_one_deal_update(env: dict[str, str], control: httpx.Client) -> None:
    run_flow(env, first_day=first_day(), last_day=today())
    user = next(u for u in abcp_users(env) if isinstance(u, dict))
    control.post(f"/_sandbox/abcp/users/{user['userId']}", json={"saldo": "-1 234,50"}).raise_for_status()
    before = stats(control)
    result = run_flow(env, first_day=today())  # the daily job: today's partitions, then the push
    after = stats(control)
    meta = push_metadata(result)
    assert (meta["changed"], meta["updated"], meta["created"]) == (1, 1, 0)
    delta = Counter(after["commands"]) - Counter(before["commands"])
    assert delta == Counter({"batch": 1, "crm.deal.update": 1}) or delta == Counter({"crm.deal.update": 1})
    assert after["requests"] - before["requests"] == 1
    uf_saldo = env["UF_B24_DEAL_SALDO"]
    deal = next(d for d in entities(control, "deals") if str(d.get(env["UF_B24_DEAL_ABCP_USER_ID"])) == user["userId"])
    assert float(deal[uf_saldo]) == -1234.5


def test_contact_with_the_same_phone_is_reused(env: dict[str, str], control: httpx.Client) -> None:
    taken = {
        "".join(ch for ch in str(p.get("VALUE")) if ch.isdigit())[-10:]
        for c in entities(control, "contacts")
        for p in c.get("PHONE") or []
    }
    user = next(
        u
        for u in abcp_users(env)
        if isinstance(u, dict)
        and u.get("mobile")
        and "".join(ch for ch in u["mobile"] if ch.isdigit())[-10:] not in taken
    )
    phone = user["mobile"]
    webhook = env["B24_WEBHOOK_URL"]
    created = httpx.post(
        f"{webhook}crm.contact.add.json",
        json={"fields": {"NAME": "Made by a manager", "PHONE": [{"VALUE": phone, "VALUE_TYPE": "WORK"}]}},
        timeout=30,
    ).json()["result"]
    run_flow(env, first_day=first_day(), last_day=today())
    uf = env["UF_B24_DEAL_ABCP_USER_ID"]
    deal = next(d for d in entities(control, "deals") if str(d.get(uf)) == user["userId"])
    assert str(deal["CONTACT_ID"]) == str(created)
    ours = [c for c in entities(control, "contacts") if str(c.get("ORIGIN_ID")) == user["userId"]]
    assert ours == []


def test_dry_run_records_the_plan_and_calls_nothing(env: dict[str, str], control: httpx.Client) -> None:
    run_flow(env, first_day=first_day(), last_day=today(), selection=ASSETS[:2])
    before = stats(control)["requests"]
    result = run_flow(env, first_day=today(), selection=ASSETS[2:], dry_run=True)
    meta = push_metadata(result)
    assert meta["planned"] > 0 and meta["created"] == 0
    assert stats(control)["requests"] == before
    with warehouse(env).connect() as conn:
        planned = conn.execute("SELECT count(*) FROM sync_log WHERE status = 'planned'").fetchone()
    assert planned == (meta["planned"],)


def test_limit_sends_only_n_users(env: dict[str, str], control: httpx.Client) -> None:
    run_flow(env, first_day=first_day(), last_day=today(), selection=ASSETS[:2])
    meta = push_metadata(run_flow(env, first_day=today(), selection=ASSETS[2:], limit=3))
    assert meta["created"] == 3 and meta["deferred"] > 0
    assert len(entities(control, "deals")) == 3


def test_faults_503_5xx_and_commit_then_drop_leave_exactly_one_of_each(
    env: dict[str, str], control: httpx.Client
) -> None:
    users = {u["userId"] for u in abcp_users(env) if isinstance(u, dict)}
    control.post(
        "/_sandbox/faults",
        json={
            "bitrix24": {
                "error_burst": {"count": 3, "status": 503},
                "commit_then_drop": {"count": 2, "methods": ["batch"]},
            }
        },
    ).raise_for_status()
    result = run_flow(env, first_day=first_day(), last_day=today())
    assert result.success
    state = control.post("/_sandbox/faults", json={}).json()["bitrix24"]  # {} reads the state, changes nothing
    assert state["error_burst"]["count"] == 0 and state["commit_then_drop"]["fired"] == 2  # both faults fired
    assert stats(control)["injected"] == {"status_503": 3}
    assert_exactly_one_contact_and_deal(control, env, users)
    # a 500 on the write batch: the answer is unknown, so the engine must not double anything
    control.post(
        "/_sandbox/faults", json={"bitrix24": {"error_burst": {"count": 1, "status": 500, "methods": ["batch"]}}}
    ).raise_for_status()
    control.post(f"/_sandbox/abcp/users/{sorted(users)[0]}", json={"saldo": "1"}).raise_for_status()
    run_flow(env, first_day=today(), raise_on_error=False)  # may fail on a 500 for a write: retried next run
    assert stats(control)["injected"] == {"status_503": 3, "status_500": 1}
    control.post("/_sandbox/faults", json={"bitrix24": None}).raise_for_status()
    run_flow(env, first_day=today())
    assert_exactly_one_contact_and_deal(control, env, users)


def test_garbage_records_are_invalid_with_reasons_and_the_rest_goes_on(
    env: dict[str, str], control: httpx.Client
) -> None:
    stamp = (today()).isoformat() + " 10:00:00"
    control.post(
        "/_sandbox/abcp/raw_users",
        json=[
            {"name": "no id", "registrationDate": stamp, "updateTime": stamp},
            {"userId": "12ab", "registrationDate": stamp, "updateTime": stamp},
            {"userId": "555000111", "registrationDate": "not a date", "updateTime": stamp},
            {
                "userId": "555000112",
                "registrationDate": stamp,
                "updateTime": stamp,
                "saldo": "garbage",
                "mobile": "phone?",
                "email": "@@",
            },
        ],
    ).raise_for_status()
    result = run_flow(env, first_day=today())
    assert result.success
    assert asset_metadata(result, "abcp__users")["invalid"] >= 2
    with warehouse(env).connect() as conn:
        reasons = {r[0] for r in conn.execute("SELECT reason FROM ingest_rejects").fetchall()}
    assert "no userId" in reasons and any("not numeric" in r for r in reasons)
    # the partial user still gets a deal, its unparseable saldo sent as the raw string (the seed's rule)
    uf = env["UF_B24_DEAL_ABCP_USER_ID"]
    deal = next(d for d in entities(control, "deals") if str(d.get(uf)) == "555000112")
    assert deal[env["UF_B24_DEAL_SALDO"]] == "garbage"


def test_wrong_credentials_fail_clearly_without_leaking_secrets(sandbox_env: dict[str, str], data_dir: Path) -> None:
    env = flow_env(sandbox_env, data_dir, ABCP_USERPSW="wrong-password-123")
    result = run_flow(env, first_day=today(), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = str(failure.event_specific_data)
    assert "wrong-password-123" not in text
    assert hashlib.md5(b"wrong-password-123").hexdigest() not in text  # noqa: S324
    assert "abcp" in text.lower()

    code = sandbox_env["B24_WEBHOOK_URL"].rstrip("/").split("/")[-1]
    bad_hook = sandbox_env["B24_WEBHOOK_URL"].replace(code, "not-the-code-42")
    env = flow_env(sandbox_env, data_dir, B24_WEBHOOK_URL=bad_hook)
    # several days, so there are users to push even just after midnight in Moscow
    result = run_flow(env, first_day=first_day(), last_day=today(), raise_on_error=False)
    assert not result.success
    text = " ".join(str(e.event_specific_data) for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "not-the-code-42" not in text and code not in text
    with warehouse(env).connect() as conn:
        rows = conn.execute("SELECT status, count(*) FROM sync_state GROUP BY 1").fetchall()
    assert rows == []  # nothing marked sent or rejected: the next good run sends everything
