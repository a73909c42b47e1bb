"""The preflight against the sandbox's emulators: `doctor` is clean on the sandbox's settings, each
wrong id, code or credential is one line naming its variable, and a push whose configured field
does not exist refuses to start before writing anything."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from integration_sync import doctor
from integration_sync.cli import main
from integration_sync.defs.kaspi_amocrm.assets import PUSH as KASPI_PUSH
from integration_sync.defs.kaspi_amocrm.definitions import resources as kaspi_resources
from integration_sync.defs.payments_amocrm.assets import PUSH as PAYMENTS_PUSH
from integration_sync.defs.payments_amocrm.definitions import resources as payments_resources
from integration_sync.lib.registry import plugin, plugins
from integration_sync.sandbox import amocrm_schema as amo
from integration_sync_tests.abcp_bitrix24.flow import flow_env, run_flow, stats, today
from integration_sync_tests.dagster_support import environment


@pytest.fixture()
def env(sandbox_env: dict[str, str], data_dir: Path) -> dict[str, str]:
    return flow_env(sandbox_env, data_dir)


def problems(env: dict[str, str], flow: str, **overrides: str) -> list[str]:
    code, text = doctor.run({**env, **overrides}, [flow], as_json=True)
    (report,) = json.loads(text)
    assert code == (1 if report["problems"] else 0)
    found: list[str] = report["problems"]
    return found


def test_the_sandbox_passes_doctor_clean_for_every_flow(env: dict[str, str]) -> None:
    for flow in plugins():  # as `integration-sync up` does before its doctor: the sandbox's amoCRM hook
        if flow.on_start is not None:
            flow.on_start(env)
    code, text = doctor.run(env, as_json=True)
    assert [(r["flow"], r["state"], r["problems"]) for r in json.loads(text)] == [
        ("abcp_bitrix24", "sandbox", []),
        ("amocrm_sheets", "sandbox", []),
        ("cms_orders", "sandbox", []),
        ("kaspi_amocrm", "sandbox", []),
        ("payments_amocrm", "sandbox", []),
    ]
    assert code == 0
    # the same settings pointing at real hosts would read "configured"
    assert not doctor._on_the_sandbox(plugin("kaspi_amocrm"), {**env, "SANDBOX_BASE_URL": "http://elsewhere:1"})


def test_each_wrong_bitrix24_setting_is_one_line_naming_its_variable(env: dict[str, str]) -> None:
    flow = "abcp_bitrix24"
    assert problems(env, flow, UF_B24_DEAL_ABCP_USER_ID="UF_CRM_TYPO") == [
        "UF_B24_DEAL_ABCP_USER_ID=UF_CRM_TYPO: deals have no such field"
    ]
    assert problems(env, flow, UF_B24_DEAL_SALDO="UF_CRM_SALDO_TYPO") == [
        "UF_B24_DEAL_SALDO=UF_CRM_SALDO_TYPO: deals have no such field"
    ]
    assert problems(env, flow, B24_DEAL_CATEGORY_ID_USERS="99") == [
        "B24_DEAL_CATEGORY_ID_USERS=99: Bitrix24 has no such deal pipeline (category)"
    ]
    # "NEW" is a stage of the default pipeline (0), not of «Пользователи» (C5:NEW)
    assert problems(env, flow, B24_DEAL_STAGE_NEW_USERS="NEW") == [
        "B24_DEAL_STAGE_NEW_USERS=NEW: not a stage of the pipeline 5 (B24_DEAL_CATEGORY_ID_USERS)"
    ]
    [bad_webhook] = problems(env, flow, B24_WEBHOOK_URL=env["B24_WEBHOOK_URL"].rstrip("/") + "x/")
    assert bad_webhook.startswith("B24_WEBHOOK_URL: Bitrix24 refused the credentials")
    [bad_login] = problems(env, flow, ABCP_USERPSW="wrong")
    assert bad_login.startswith("ABCP_USERLOGIN/ABCP_USERPSW: ABCP refused the credentials")
    assert "wrong" not in bad_login


def test_each_wrong_kaspi_or_amocrm_setting_is_one_line_naming_its_variable(env: dict[str, str]) -> None:
    flow = "kaspi_amocrm"
    assert problems(env, flow, AMO_PIPELINE_ID="1") == ["AMO_PIPELINE_ID=1: amoCRM has no such pipeline"]
    other = str(amo.AMO_STATUS_AUTOPAY_SITE)  # a status of the payments' pipeline
    assert problems(env, flow, AMO_STATUS_ID=other) == [
        f"AMO_STATUS_ID={other}: not a status of pipeline {amo.AMO_PIPELINE_ID} (AMO_PIPELINE_ID)"
    ]
    # a contact field's id is not a lead field
    assert problems(env, flow, AMO_LEAD_ORDER_CODE_FIELD_ID=str(amo.AMO_CONTACT_FIELD_TG_ID)) == [
        f"AMO_LEAD_ORDER_CODE_FIELD_ID={amo.AMO_CONTACT_FIELD_TG_ID}: amoCRM has no such custom field on leads"
    ]
    assert problems(env, flow, AMO_CATALOG_ID="999") == ["AMO_CATALOG_ID=999: amoCRM has no such catalog"]
    assert problems(env, flow, AMO_CATALOG_SKU_FIELD_ID="999999") == [
        f"AMO_CATALOG_SKU_FIELD_ID=999999: amoCRM has no such custom field on the catalog {amo.AMO_CATALOG_ID}"
    ]
    assert problems(env, flow, KASPI_STATUS_MAP='{"COMPLETED": 1}') == [
        f"KASPI_STATUS_MAP: COMPLETED → 1 is not a status of pipeline {amo.AMO_PIPELINE_ID} (AMO_PIPELINE_ID)"
    ]
    [bad_token] = problems(env, flow, KASPI_TOKEN="not-the-token")
    assert bad_token.startswith("KASPI_TOKEN: Kaspi refused the credentials")
    assert "not-the-token" not in bad_token


def test_each_wrong_payments_setting_is_one_line_naming_its_variable(env: dict[str, str]) -> None:
    flow = "payments_amocrm"
    assert problems(env, flow, AMO_PIPELINE_YANDEX="1") == ["AMO_PIPELINE_YANDEX=1: amoCRM has no such pipeline"]
    assert problems(env, flow, AMO_STATUS_AUTOPAY_PARTNERS="1") == [
        f"AMO_STATUS_AUTOPAY_PARTNERS=1: not a status of pipeline {amo.AMO_PIPELINE_PARTNERS} (AMO_PIPELINE_PARTNERS)"
    ]
    assert problems(env, flow, AMO_LEAD_FIELD_TOTAL_PAID="999999") == [
        "AMO_LEAD_FIELD_TOTAL_PAID=999999: amoCRM has no such custom field on leads"
    ]
    assert problems(env, flow, AMO_CONTACT_FIELD_TG_USERNAME=str(amo.AMO_LEAD_FIELD_TOTAL_PAID)) == [
        f"AMO_CONTACT_FIELD_TG_USERNAME={amo.AMO_LEAD_FIELD_TOTAL_PAID}: amoCRM has no such custom field on contacts"
    ]
    # an enum id of the subjects field is not a value of the direction field
    subject = next(iter(amo.AMO_SUBJECT_ENUMS.values()))
    assert problems(env, flow, AMO_DIRECTION_EGE=str(subject)) == [
        f"AMO_DIRECTION_EGE={subject}: not a value of the field {amo.AMO_LEAD_FIELD_DIRECTION}"
        " (AMO_LEAD_FIELD_DIRECTION)"
    ]
    assert problems(env, flow, AMO_SUBJECT_ENUMS=json.dumps({"Физика": amo.AMO_DIRECTION_OGE})) == [
        f"AMO_SUBJECT_ENUMS[Физика]={amo.AMO_DIRECTION_OGE}: not a value of the field"
        f" {amo.AMO_LEAD_FIELD_SUBJECTS} (AMO_LEAD_FIELD_SUBJECTS)"
    ]
    assert problems(env, flow, PAYMENTS_EXCLUDED_STATUSES=f"{amo.AMO_STATUS_ID},1") == [
        "PAYMENTS_EXCLUDED_STATUSES: 1 is not a status of any pipeline"
    ]
    [bad_token] = problems(env, flow, AMO_LONG_LIVED_TOKEN="not-a-token")
    assert bad_token.startswith("AMO_LONG_LIVED_TOKEN: amoCRM refused the credentials")
    assert "not-a-token" not in bad_token


def test_an_unreachable_service_is_one_line_not_a_traceback(env: dict[str, str]) -> None:
    [line] = problems(env, "payments_amocrm", AMO_BASE_URL="http://127.0.0.1:1")
    assert line.startswith("AMO_BASE_URL: amoCRM did not answer as expected (")
    assert "connection failed" in line


def test_the_abcp_push_refuses_to_start_when_a_configured_field_does_not_exist(
    env: dict[str, str], control: httpx.Client
) -> None:
    bad = {**env, "UF_B24_DEAL_ABCP_USER_ID": "UF_CRM_TYPO"}
    before: dict[str, Any] = stats(control)["commands"]
    result = run_flow(bad, first_day=today(), raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "bitrix24__user_deals"
    message = failure.event_specific_data.error.to_string()  # type: ignore[union-attr]
    assert "PreflightError" in message and "UF_B24_DEAL_ABCP_USER_ID=UF_CRM_TYPO: deals have no such field" in message
    after: dict[str, Any] = stats(control)["commands"]
    written = {m: after.get(m, 0) - before.get(m, 0) for m in after if m.endswith((".add", ".update", ".set"))}
    assert not any(written.values()), written
    assert after.get("crm.deal.userfield.list", 0) == before.get("crm.deal.userfield.list", 0) + 1


def test_the_command_exits_1_with_the_lines(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for key, value in {**env, "UF_B24_DEAL_INN": "UF_CRM_TYPO"}.items():
        monkeypatch.setenv(key, value)
    assert main(["doctor", "--flow", "abcp_bitrix24", "--project-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "abcp_bitrix24: incomplete",
        "  abcp_bitrix24: UF_B24_DEAL_INN=UF_CRM_TYPO: deals have no such field",
    ]


@pytest.mark.parametrize(
    ("push", "build", "override", "line"),
    [
        (
            KASPI_PUSH,
            kaspi_resources,
            {"AMO_LEAD_ORDER_DATE_FIELD_ID": "999999"},
            "AMO_LEAD_ORDER_DATE_FIELD_ID=999999",
        ),
        (PAYMENTS_PUSH, payments_resources, {"AMO_PIPELINE_SITE": "1"}, "AMO_PIPELINE_SITE=1"),
    ],
)
def test_the_amocrm_pushes_check_their_settings(
    env: dict[str, str], push: Any, build: Any, override: dict[str, str], line: str
) -> None:
    with environment({**env, **override}):
        built = {key: resource.process_config_and_initialize() for key, resource in build().items()}
    assert push.preflight is not None
    ctx = SimpleNamespace(resources=SimpleNamespace(**built))
    with built[push.client].client() as client:
        [found] = push.preflight(ctx, client)
    assert found.startswith(line)
