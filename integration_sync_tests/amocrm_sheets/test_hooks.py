"""amoCRM status hooks → the receiver → the inbox → the hooks sensor → a run → the row updated, with the
form amoCRM really sends (bracket keys, strings, several leads in one POST) and its re-deliveries."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import dagster as dg
import httpx
import pytest

from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.automation import amocrm_lead_hooks
from integration_sync.defs.amocrm_sheets.receiver import HookRefused, parse_status_hook
from integration_sync.sandbox.amocrm_seller import SELLER_APP
from integration_sync.webhooks.inbox import Inbox
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings
from integration_sync_tests.amocrm_sheets.flow import AMO_TO_SHEET, SECRET, cells, flow_env, resources, row_of, run
from integration_sync_tests.dagster_support import environment

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _hook(*leads: dict[str, Any], account: str = "32000001") -> bytes:
    pairs: list[tuple[str, str]] = []
    for i, lead in enumerate(leads):
        pairs += [(f"leads[status][{i}][{k}]", str(v)) for k, v in lead.items()]
    pairs += [("account[subdomain]", "sellersandbox"), ("account[id]", account)]
    return urlencode(pairs).encode()


def test_the_form_amocrm_sends_is_read_with_every_lead() -> None:
    body = _hook(
        {"id": 11, "status_id": 91000012, "pipeline_id": 9100001, "old_status_id": 91000011, "date_create": 1764000000},
        {"id": 12, "status_id": 142, "pipeline_id": 9100002, "last_modified": 1764500000, "name": "Buyurtma"},
    )
    leads, account = parse_status_hook(body)
    assert [lead["id"] for lead in leads] == [11, 12]
    assert leads[0]["old_status_id"] == 91000011 and leads[1]["last_modified"] == 1764500000
    assert account == {"subdomain": "sellersandbox", "id": "32000001"}
    with pytest.raises(HookRefused):
        parse_status_hook(_hook({"id": "abc", "status_id": 1, "pipeline_id": 2}))


def test_receiver_answers_as_amocrm_needs_and_stores_each_change_once(
    data_dir: Path, sandbox_env: dict[str, str]
) -> None:
    env = flow_env(sandbox_env, data_dir, PLATFORM_WEBHOOK_SECRET="")
    with environment(env), ReceiverServer(ReceiverSettings.from_env(env)) as server:
        url = server.url(f"/webhook/amocrm/{SECRET}")
        body = _hook(
            {"id": 21, "status_id": 91000012, "pipeline_id": 9100001, "date_create": 1764000000, "last_modified": 5},
            {"id": 22, "status_id": 91000013, "pipeline_id": 9100001, "date_create": 1764000000, "last_modified": 6},
        )
        wrong = httpx.post(server.url("/webhook/amocrm/not-the-secret"), content=body, headers=FORM)
        assert wrong.status_code == 401
        first = httpx.post(url, content=body, headers=FORM)
        again = httpx.post(url, content=body, headers=FORM)  # amoCRM re-sends when unsure
        other = httpx.post(url, content=b"leads[add][0][id]=5&account[id]=32000001", headers=FORM)
        bad = httpx.post(url, content=_hook({"id": "x1", "status_id": 1, "pipeline_id": 1}), headers=FORM)
        assert httpx.post(server.url("/webhook/payment"), content=b"{}").status_code == 404  # payments not configured
    assert (first.status_code, first.json()["new"]) == (200, 2)
    assert (again.status_code, again.json()["new"]) == (200, 0)
    assert (other.status_code, other.json()["leads"]) == (200, 0)
    assert bad.status_code == 422 and bad.json()["details"][0]["loc"][-1] == "id"
    inbox = Inbox(data_dir / "inbox.sqlite")
    assert inbox.count() == 2
    event = inbox.read_after(0, 10)[0]
    assert event.source == "amocrm_status" and event.event_key == "amocrm_status:21:91000012:5"
    assert event.event_date == "2025-11-24"  # 1764000000 is 2025-11-24 in Tashkent
    assert event.redeliveries == 1


def test_a_status_change_in_amocrm_reaches_the_row_through_the_hook(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    env = flow_env(sandbox_env, data_dir, PLATFORM_WEBHOOK_SECRET="")
    run(env, AMO_TO_SHEET)
    rows = cells(control)
    lead_a, lead_b = int(rows[1][0]), int(rows[2][0])
    auth = {"Authorization": f"Bearer {SELLER_APP.long_lived}"}
    with environment(env), ReceiverServer(ReceiverSettings.from_env(env)) as server:
        hook = {"destination": server.url(f"/webhook/amocrm/{SECRET}"), "settings": ["status_lead"]}
        control.post("/amocrm-seller/api/v4/webhooks", json=hook, headers=auth).raise_for_status()
        moves = [{"id": lead_a, "status_id": 143}, {"id": lead_b, "status_id": 142}]
        control.post("/_sandbox/amocrm-seller/leads/status", json=moves).raise_for_status()
        inbox = Inbox(data_dir / "inbox.sqlite")
        for _ in range(100):
            if inbox.count() >= 2:
                break
            time.sleep(0.05)
        assert inbox.count() == 2  # one POST carried both leads
        with environment(env):
            result = amocrm_lead_hooks(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral()))
    assert isinstance(result, dg.SensorResult) and result.run_requests
    for request in result.run_requests:
        assert request.tags["integration_sync/source"] == "inbox"
        with environment(env):
            dg.materialize(
                AMO_TO_SHEET,
                partition_key=request.partition_key,
                resources=resources(),
                instance=dg.DagsterInstance.ephemeral(),
                tags=dict(request.tags),
            )
    rows = cells(control)
    status = layout.col(layout.STATUS)
    assert rows[row_of(rows, lead_a) - 1][status] == layout.REFUSED
    assert rows[row_of(rows, lead_b) - 1][status] == layout.SUCCESS


def test_a_repeated_hook_within_the_dedup_window_costs_no_read(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    from integration_sync_tests.dagster_support import asset_metadata

    env = flow_env(sandbox_env, data_dir, PLATFORM_WEBHOOK_SECRET="", WEBHOOK_DEDUP_TTL_SEC="600")
    run(env, AMO_TO_SHEET)
    lead_id = int(cells(control)[1][0])
    data = control.get(
        f"/amocrm-seller/api/v4/leads/{lead_id}", headers={"Authorization": f"Bearer {SELLER_APP.long_lived}"}
    ).json()
    fields = {"id": lead_id, "status_id": data["status_id"], "pipeline_id": data["pipeline_id"]}
    fields["date_create"] = data["created_at"]

    def deliver_and_load(last_modified: int) -> dict[str, Any]:
        with environment(env), ReceiverServer(ReceiverSettings.from_env(env)) as server:
            body = _hook({**fields, "last_modified": last_modified})
            assert httpx.post(server.url(f"/webhook/amocrm/{SECRET}"), content=body, headers=FORM).status_code == 200
            result = amocrm_lead_hooks(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral()))
        assert isinstance(result, dg.SensorResult) and result.run_requests
        request = result.run_requests[0]
        with environment(env):
            done = dg.materialize(
                AMO_TO_SHEET[:1],
                partition_key=request.partition_key,
                resources=resources(),
                instance=dg.DagsterInstance.ephemeral(),
                tags=dict(request.tags),
            )
        return asset_metadata(done, "amocrm__seller_leads")

    first = deliver_and_load(data["updated_at"])
    assert first["hooks"] == 1 and first["duplicates"] == 0 and first["api_requests"] >= 1
    second = deliver_and_load(data["updated_at"] + 1)  # the same lead and status, sent again by amoCRM
    assert second["hooks"] == 1 and second["duplicates"] == 1 and second["api_requests"] == 0
