"""Two pushes of the same flow started at once, as two CLI runs outside any run queue (ephemeral
instances, so no Dagster pool can order them): the engine's push lock must keep every source record to
one target record. Each API answer is slowed so the two pushes would overlap without the lock."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_sync.defs.abcp_bitrix24.assets import abcp_users
from integration_sync.defs.kaspi_amocrm.assets import kaspi_orders
from integration_sync.defs.payments_amocrm.assets import payment_events
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings
from integration_sync_tests.abcp_bitrix24 import flow as abcp
from integration_sync_tests.kaspi_amocrm import flow as kaspi
from integration_sync_tests.payments_amocrm import flow as payments

BIN = Path(sys.executable).parent


def two_cli_pushes(env: Mapping[str, str], asset: str, tmp_path: Path) -> None:
    """`dagster asset materialize` twice at once; both must succeed (the second waits for the first)."""
    run_env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    run_env.update(env)
    procs = [
        subprocess.Popen(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "integration_sync.definitions", "--select", asset],
            env=run_env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=240)[0] for proc in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-3000:]


@pytest.fixture()
def slow(control: httpx.Client) -> Iterator[None]:
    """Every answer of amoCRM takes half a second: a payment costs several lookups before its write, so
    one push lasts longer than a CLI run's start-up jitter and two unguarded pushes would overlap."""
    control.post("/_sandbox/faults", json={"amocrm": {"latency_ms": 500}})
    yield
    control.post("/_sandbox/faults", json={"amocrm": None})


def test_abcp_two_cli_pushes_at_once_one_contact_and_deal_per_user(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client, tmp_path: Path
) -> None:
    env = abcp.flow_env(sandbox_env, data_dir)
    abcp.run_flow(env, first_day=abcp.today() - timedelta(days=4), last_day=abcp.today(), selection=[abcp_users])
    seeded = len(control.get("/_sandbox/bitrix24/contacts").json())
    control.post("/_sandbox/faults", json={"bitrix24": {"latency_ms": 1000}}).raise_for_status()
    two_cli_pushes(env, "bitrix24/user_deals", tmp_path)
    deals: list[dict[str, Any]] = control.get("/_sandbox/bitrix24/deals").json()
    per_user = Counter(str(d.get(env["UF_B24_DEAL_ABCP_USER_ID"])) for d in deals)
    assert len(per_user) > 5 and max(per_user.values()) == 1, per_user.most_common(3)
    contacts: list[dict[str, Any]] = control.get("/_sandbox/bitrix24/contacts").json()
    assert len(contacts) - seeded <= len(per_user)


def test_kaspi_two_cli_pushes_at_once_one_lead_and_note_per_order(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client, tmp_path: Path
) -> None:
    env = {
        **sandbox_env,
        "INTEGRATION_SYNC_DATA_DIR": str(data_dir),
        "WAREHOUSE_PATH": str(data_dir / "w.duckdb"),
        "KASPI_RATE_PER_S": "9",  # just under the emulator's 10/s: the load's speed is not at stake here
    }
    control.post("/_sandbox/reset", json={"kaspi_orders": 40}).raise_for_status()
    control.post("/_sandbox/faults", json={"amocrm": {"latency_ms": 1000}}).raise_for_status()
    kaspi.run_flow(env, selection=[kaspi_orders])
    two_cli_pushes(env, "amocrm/kaspi_leads", tmp_path)
    leads = [lead for lead in kaspi.amo(control, "leads") if str(lead.get("name", "")).startswith("Kaspi №")]
    per_order = Counter(lead["name"] for lead in leads)
    assert per_order and max(per_order.values()) == 1, per_order.most_common(3)
    notes = Counter(note["entity_id"] for note in kaspi.amo(control, "notes"))
    assert {lead["id"] for lead in leads} <= set(notes) and max(notes.values()) == 1


def test_payments_two_cli_pushes_at_once_apply_each_payment_once(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client, tmp_path: Path, slow: None
) -> None:
    env = payments.flow_env(sandbox_env, data_dir)
    with ReceiverServer(ReceiverSettings.from_env(env)) as server:
        bodies = [
            payments.payment(
                f"lock-{n}",
                user={"first_name": "Ученик", "last_name": str(n), "phone": f"+7999100{n:04d}", "telegram_id": f"7{n}"},
            )
            for n in range(4)
        ]
        assert set(payments.deliver(server.base_url, *bodies)) == {200}
    payments.run_flow(env, selection=[payment_events])
    two_cli_pushes(env, "amocrm/payment_leads", tmp_path)
    notes = Counter(
        line.split("Payment ID: ", 1)[1].split()[0]
        for note in payments.amo(control, "notes")
        for line in [str(note["params"]["text"])]
        if "Payment ID: " in line
    )
    assert sorted(notes) == sorted(f"lock-{n}" for n in range(4))
    assert max(notes.values()) == 1, notes.most_common(3)
