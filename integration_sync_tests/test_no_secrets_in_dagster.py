"""No secret reaches what Dagster stores or shows, for every flow: materialization metadata (the
rejected-record samples carry API error text), log lines, step failures and run config. Each flow is
run once with faults that make the target refuse records and once with a wrong credential."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from integration_sync.defs.abcp_bitrix24.assets import abcp_users
from integration_sync.defs.abcp_bitrix24.definitions import bitrix24_user_deals
from integration_sync.defs.kaspi_amocrm.assets import kaspi_orders
from integration_sync.defs.kaspi_amocrm.definitions import amocrm_kaspi_leads
from integration_sync.defs.payments_amocrm.assets import payment_events
from integration_sync.defs.payments_amocrm.definitions import amocrm_payment_leads
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings
from integration_sync_tests.abcp_bitrix24 import flow as abcp
from integration_sync_tests.dagster_support import environment
from integration_sync_tests.kaspi_amocrm import flow as kaspi
from integration_sync_tests.payments_amocrm import flow as payments


def run_and_collect(
    env: Mapping[str, str], assets: list[Any], resources: Callable[[], dict[str, Any]], days: int
) -> tuple[bool, str]:
    """Materialize `assets` over the last `days` days; everything Dagster recorded of the run, as text."""
    instance = dg.DagsterInstance.ephemeral()
    today = abcp.today()
    with environment(env):
        result = dg.materialize(
            assets,
            resources=resources(),
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": (today - timedelta(days=days)).isoformat(),
                "dagster/asset_partition_range_end": today.isoformat(),
            },
            raise_on_error=False,
        )
    parts: list[str] = [repr(result.dagster_run.run_config), repr(result.dagster_run.tags)]
    for entry in instance.all_logs(result.run_id):
        parts.append(entry.user_message or "")
        if entry.dagster_event is not None:
            parts.append(repr(entry.dagster_event.event_specific_data))
    return result.success, "\n".join(parts)


def secrets_of(env: Mapping[str, str], control: httpx.Client) -> dict[str, str]:
    """Every secret value configured or issued (the amoCRM emulator's live OAuth tokens too)."""
    code = env["B24_WEBHOOK_URL"].rstrip("/").split("/")[-1]
    found = {
        "ABCP_USERPSW": env["ABCP_USERPSW"],
        "ABCP_USERPSW md5": hashlib.md5(env["ABCP_USERPSW"].encode()).hexdigest(),  # noqa: S324
        "B24 webhook code": code,
        "KASPI_TOKEN": env["KASPI_TOKEN"],
        "AMO_CLIENT_SECRET": env.get("AMO_CLIENT_SECRET", ""),
        "PLATFORM_WEBHOOK_SECRET": env.get("PLATFORM_WEBHOOK_SECRET", ""),
    }
    tokens: Any = control.get("/_sandbox/amocrm/tokens").json()
    for n, value in enumerate(_strings(tokens)):
        if len(value) >= 16:
            found[f"amoCRM token {n}"] = value
    return {name: value for name, value in found.items() if value and len(value) >= 6}


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def assert_clean(text: str, secrets: Mapping[str, str]) -> None:
    leaked = [name for name, value in secrets.items() if value in text]
    assert not leaked, f"secrets in Dagster's records: {leaked}"


REFUSE = {"count": 4, "status": 400}  # a few refusals: rejected records or a failed step, either way text


@pytest.mark.parametrize(
    ("faults", "bad"),
    [
        ({"bitrix24": {"error_burst": REFUSE, "commit_then_drop": {"count": 2}}}, {}),
        ({}, {"B24_WEBHOOK_URL": "__code__"}),
    ],
    ids=["refused", "b24-code"],
)
def test_abcp_bitrix24(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client, faults: dict[str, Any], bad: dict[str, str]
) -> None:
    env = abcp.flow_env(sandbox_env, data_dir)
    secrets = secrets_of(env, control)
    if bad.get("B24_WEBHOOK_URL"):
        bad = {"B24_WEBHOOK_URL": env["B24_WEBHOOK_URL"].replace(secrets["B24 webhook code"], "not-the-code-42")}
        secrets["bad code"] = "not-the-code-42"
    secrets.update({f"bad {k}": v for k, v in bad.items() if k == "ABCP_USERPSW"})
    control.post("/_sandbox/faults", json=faults or {"bitrix24": None}).raise_for_status()
    ok, text = run_and_collect({**env, **bad}, [abcp_users, bitrix24_user_deals], abcp.resources, days=4)
    assert not ok or "rejected_sample" in text  # something went wrong, so there was text to leak into
    assert_clean(text, secrets)


@pytest.mark.parametrize(
    ("faults", "bad"),
    [
        ({"amocrm": {"error_burst": {"count": 1000, "status": 400, "methods": ["POST leads/notes"]}}}, {}),
        ({}, {"KASPI_TOKEN": "wrong-kaspi-token-123"}),
    ],
    ids=["refused", "kaspi-token"],
)
def test_kaspi_amocrm(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client, faults: dict[str, Any], bad: dict[str, str]
) -> None:
    env = {
        **sandbox_env,
        "INTEGRATION_SYNC_DATA_DIR": str(data_dir),
        "WAREHOUSE_PATH": str(data_dir / "w.duckdb"),
        "KASPI_RATE_PER_S": "9",  # just under the emulator's 10/s: the load's speed is not at stake
    }
    control.post("/_sandbox/reset", json={"kaspi_orders": 30}).raise_for_status()
    kaspi.run_flow(env, selection=[kaspi_orders])
    control.post("/_sandbox/faults", json=faults or {"amocrm": None}).raise_for_status()
    ok, text = run_and_collect({**env, **bad}, [kaspi_orders, amocrm_kaspi_leads], kaspi.resources, days=3)
    secrets = secrets_of(env, control) | {f"bad {k}": v for k, v in bad.items()}
    assert not ok or "rejected_sample" in text
    assert_clean(text, secrets)


def test_payments_amocrm(sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client) -> None:
    env = payments.flow_env(sandbox_env, data_dir)
    with ReceiverServer(ReceiverSettings.from_env(env)) as server:
        bodies = [
            payments.payment(f"sec-{n}", user={"first_name": "A", "last_name": str(n), "phone": f"+7999200{n:04d}"})
            for n in range(6)
        ]
        assert set(payments.deliver(server.base_url, *bodies)) == {200}
    control.post(
        "/_sandbox/faults", json={"amocrm": {"error_burst": {**REFUSE, "methods": ["POST leads/notes"]}}}
    ).raise_for_status()
    ok, text = run_and_collect(env, [payment_events, amocrm_payment_leads], payments.resources, days=1)
    assert not ok or "rejected_sample" in text
    assert_clean(text, secrets_of(env, control))
