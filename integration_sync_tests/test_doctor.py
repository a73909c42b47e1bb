"""`integration-sync doctor`: each flow configured, not configured, or missing what (by name)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from integration_sync import doctor
from integration_sync.cli import main
from integration_sync.sandbox.env import sandbox_env

# the sandbox's settings pass clean against a running sandbox: test_preflight.py


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
    code, text = doctor.run(env, ["kaspi_amocrm"])
    assert "AMO_BASE_URL" not in text  # the flow's own account is enough
    # what its clients need besides is named before any request is sent
    assert code == 1 and "  kaspi_amocrm: KASPI_BASE_URL is not set" in text.splitlines()


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


def test_a_flow_that_is_not_configured_skips_its_ticks(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Its schedules and sensors say why instead of launching runs that fail on a missing setting."""
    import dagster as dg

    from integration_sync.defs.kaspi_amocrm.schedules import kaspi_reconciliation
    from integration_sync.defs.kaspi_amocrm.sensors import kaspi_new_orders
    from integration_sync.defs.payments_amocrm.automation import payment_inbox, payments_retry
    from integration_sync.defs.resources import WarehouseResource
    from integration_sync.lib.registry import plugins

    for each in plugins():
        for name in (*each.source_vars, *each.required_vars):
            monkeypatch.delenv(name, raising=False)
    instance = dg.DagsterInstance.ephemeral()
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    tick = dg.build_schedule_context(instance=instance, scheduled_execution_time=now)
    for schedule, flow in ((kaspi_reconciliation, "kaspi_amocrm"), (payments_retry, "payments_amocrm")):
        skipped = schedule(tick)
        assert isinstance(skipped, dg.SkipReason), schedule.name
        assert (skipped.skip_message or "").startswith(f"{flow} is not configured (none of ")
    sensed = dg.build_sensor_context(instance=instance)
    inbox = payment_inbox(sensed)
    assert isinstance(inbox, dg.SkipReason) and "payments_amocrm is not configured" in (inbox.skip_message or "")
    store = WarehouseResource(database=str(tmp_path / "w.duckdb"))
    orders = kaspi_new_orders(dg.build_sensor_context(instance=instance, resources={"warehouse": store}))
    assert isinstance(orders, dg.SkipReason) and "kaspi_amocrm is not configured" in (orders.skip_message or "")

    monkeypatch.setenv("KASPI_TOKEN", "t")  # half configured: the missing variables are named
    skipped = kaspi_reconciliation(tick)
    assert isinstance(skipped, dg.SkipReason)
    assert "kaspi_amocrm is not fully configured: AMO_PIPELINE_ID" in (skipped.skip_message or "")
