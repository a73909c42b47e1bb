"""`integration-sync doctor`: each flow configured, not configured, or missing what (by name)."""

from __future__ import annotations

import json

import pytest

from integration_sync import doctor
from integration_sync.cli import main
from integration_sync.sandbox.env import sandbox_env


def test_the_sandbox_configures_every_flow() -> None:
    code, text = doctor.run(sandbox_env("http://127.0.0.1:8787"), as_json=True)
    reports = json.loads(text)
    assert code == 0
    assert {r["flow"]: r["state"] for r in reports} == {
        "abcp_bitrix24": "configured",
        "kaspi_amocrm": "configured",
        "payments_amocrm": "configured",
    }


def test_nothing_set_is_not_a_problem_but_a_half_configured_flow_is_named() -> None:
    assert doctor.run({})[0] == 0
    code, text = doctor.run({"KASPI_TOKEN": "t", "AMO_PIPELINE_ID": " "})
    assert code == 1
    assert "kaspi_amocrm: incomplete" in text
    assert "kaspi_amocrm: AMO_PIPELINE_ID is not set" in text
    assert "kaspi_amocrm: KASPI_AMO_BASE_URL (or AMO_BASE_URL) is not set" in text
    assert "abcp_bitrix24: not configured" in text


def test_a_flow_on_its_own_account_needs_no_shared_one() -> None:
    env = {"KASPI_TOKEN": "t", "AMO_PIPELINE_ID": "1", "KASPI_AMO_BASE_URL": "https://shop.amocrm.ru"}
    assert doctor.run(env, ["kaspi_amocrm"]) == (0, "kaspi_amocrm: configured")


def test_the_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    for key, value in sandbox_env("http://127.0.0.1:8787").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("UF_B24_DEAL_INN", "")
    assert main(["doctor", "--flow", "abcp_bitrix24", "--project-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "abcp_bitrix24: incomplete",
        "  abcp_bitrix24: UF_B24_DEAL_INN is not set",
    ]
    assert main(["doctor", "--flow", "nope", "--project-dir", str(tmp_path)]) == 2
    assert "unknown flow(s): nope" in capsys.readouterr().err
