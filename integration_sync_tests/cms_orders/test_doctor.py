"""`integration-sync doctor` for cms_orders: each wrong setting is one line naming its variable, before a
run would fail on it; the deals push refuses to start on a pipeline or stage the portal lacks."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from integration_sync import doctor
from integration_sync_tests.cms_orders import flow


@pytest.fixture()
def env(sandbox_env: dict[str, str], data_dir: Path) -> dict[str, str]:
    return flow.flow_env(sandbox_env, data_dir)


def problems(env: dict[str, str], **overrides: str) -> list[str]:
    code, text = doctor.run({**env, **overrides}, ["cms_orders"], as_json=True)
    (report,) = json.loads(text)
    assert code == (1 if report["problems"] else 0)
    found: list[str] = report["problems"]
    return found


def test_each_wrong_setting_is_one_line_naming_its_variable(env: dict[str, str]) -> None:
    assert problems(env) == []
    assert problems(env, CMS_B24_DEAL_CATEGORY_ID="9") == [
        "CMS_B24_DEAL_CATEGORY_ID=9: Bitrix24 has no such deal pipeline (category)"
    ]
    assert problems(env, CMS_STATUS_STAGE_MAP="N:NEW,F:DELIVERED") == [
        "CMS_STATUS_STAGE_MAP: C3:DELIVERED is not a stage of the pipeline 3"
    ]
    assert problems(env, CMS_CONFLICT_WINNER="manager") == [
        "CMS_CONFLICT_WINNER: must be one of newer, shop, crm, got 'manager'"
    ]
    [key] = problems(env, BITRIX_WEBHOOK_KEY="wrong-key")
    assert key.startswith("BITRIX_WEBHOOK_KEY: the shop refused the credentials") and "wrong-key" not in key
    [swapped] = problems(env, BITRIX_WEBHOOK_URL=env["CMS_B24_WEBHOOK_URL"])
    assert swapped == "BITRIX_WEBHOOK_URL is the shop's endpoint, not the Bitrix24 portal (CMS_B24_WEBHOOK_URL)"
    assert problems(env, WEBHOOK_TOKEN="short") == [
        "WEBHOOK_TOKEN is shorter than 16 characters: generate one (openssl rand -hex 32)"
    ]
    assert problems(env, BITRIX_WEBHOOK_KEY="") == ["BITRIX_WEBHOOK_KEY is not set"]


def test_the_deals_push_refuses_to_start_on_a_stage_the_portal_lacks(
    env: dict[str, str], control: httpx.Client
) -> None:
    result = flow.run(env, flow.FORWARD, raise_on_error=False)
    assert result.success
    wrong = {**env, "CMS_STATUS_STAGE_MAP": "N:NEW,P:PAID"}
    failed = flow.run(wrong, [flow.shop_deals], raise_on_error=False)
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "CMS_STATUS_STAGE_MAP: C3:PAID is not a stage of the pipeline 3" in str(failure.event_specific_data)
