"""Payments → amoCRM push benchmarks against the sandbox with amoCRM's real limit (7 requests/s).

- amoCRM requests per payment of a customer amoCRM knows (found by Telegram id, with an active lead
  in another pipeline): one payment per run (nothing to share a request with), then 50 payments of 50
  such customers in one run; then the same payments re-matched after the warehouse is lost;
- webhook → lead updated: payments posted to the receiver one at a time while the Dagster daemon runs
  the inbox sensor; the time until each payment's note is in the amoCRM emulator (p50, p95).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import httpx

from integration_sync.sandbox import amocrm_schema as ids
from integration_sync.sandbox.env import sandbox_env
from integration_sync.sandbox.server import SandboxConfig, SandboxServer
from integration_sync.webhooks.models import MOSCOW
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings
from integration_sync_tests.bench.results import Result
from integration_sync_tests.payments_amocrm.flow import (
    AmoApi,
    deliver,
    flow_env,
    lose_warehouse,
    payment,
    push_metadata,
    run_flow,
)

FLOW = "payments_amocrm"
ROOT = Path(__file__).resolve().parents[2]


def _requests(control: httpx.Client) -> int:
    return int(control.get("/_sandbox/stats").json()["amocrm"]["requests"])


def _known_customers(api: AmoApi, count: int, offset: int) -> list[str]:
    """Customers amoCRM knows: a contact with a Telegram id and an open lead in the Yandex pipeline."""
    now = int(datetime.now(MOSCOW).timestamp())
    tg_ids = []
    for n in range(offset, offset + count):
        tg = f"88{n:06d}"
        contact = api.contact(f"Клиент {n}", tg=tg, phone=f"+7999{n:07d}")
        api.lead(contact, ids.AMO_PIPELINE_YANDEX, 80579120, total=5000, count=1, updated_at=now - 60)
        tg_ids.append(tg)
    return tg_ids


def requests_per_payment(batch: int = 50, singles: int = 5) -> list[Result]:
    with (
        SandboxServer(SandboxConfig(seed=3, abcp_users=0, kaspi_orders=0, amocrm_contacts=50)) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as control,
        tempfile.TemporaryDirectory() as tmp,
    ):
        env = flow_env(sandbox_env(server.base_url), Path(tmp))
        api = AmoApi(server.base_url)
        with ReceiverServer(ReceiverSettings.from_env(env)) as receiver:
            single_costs = []
            for n, tg in enumerate(_known_customers(api, singles, 0)):
                deliver(receiver.base_url, payment(f"single-{n}", user={"telegram_id": tg, "first_name": "Клиент"}))
                time.sleep(1.0)  # amoCRM's window starts empty, as between two webhooks
                before = _requests(control)
                meta = push_metadata(run_flow(env))
                assert meta["created"] == 1 and meta["leads_found"] == 1, meta
                single_costs.append(_requests(control) - before)
            customers = _known_customers(api, batch, 1000)
            bodies = [payment(f"batch-{n}", user={"telegram_id": tg}) for n, tg in enumerate(customers)]
            deliver(receiver.base_url, *bodies)
            time.sleep(1.0)
            before = _requests(control)
            meta = push_metadata(run_flow(env))
            batched = (_requests(control) - before) / max(int(meta["created"]), 1)
            # the warehouse lost: every payment of the inbox is matched again against amoCRM
            lose_warehouse(Path(tmp))
            time.sleep(1.0)
            before = _requests(control)
            again = push_metadata(run_flow(env))
            rematched = singles + batch
            rematch_cost = (_requests(control) - before) / rematched
            rematch_ok = again["leads_created"] == 0 and again["contacts_created"] == 0 and again["rejected"] == 0
        api.close()
    worst = max(single_costs)
    return [
        Result(
            FLOW,
            "known customer, one payment per run: requests",
            worst,
            "req",
            "<= 5",
            worst <= 5,
            f"runs cost {single_costs}; the seed makes about 8",
        ),
        Result(
            FLOW,
            f"{batch} known customers in one run: requests/payment",
            batched,
            "req",
            "<= 5",
            batched <= 5 and meta["created"] == batch,
            "search by Telegram id each; reads, PATCH and notes in bulk",
        ),
        Result(
            FLOW,
            f"warehouse lost, {singles + batch} applied payments re-matched: requests/payment",
            rematch_cost,
            "req",
            "<= 2",
            rematch_ok and rematch_cost <= 2,
            "contact search per customer; leads and their notes read 50 per request; nothing written",
        ),
    ]


def _start_daemon(env: Mapping[str, str], home: Path) -> subprocess.Popen[bytes]:
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    daemon = Path(sys.executable).parent / "dagster-daemon"
    return subprocess.Popen(
        [str(daemon), "run", "-w", str(ROOT / "workspace.yaml")],
        env={**os.environ, **env, "DAGSTER_HOME": str(home)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for_note(control: httpx.Client, payment_id: str, timeout_s: float) -> float | None:
    marker = f"Payment ID: {payment_id}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        notes = control.get("/_sandbox/amocrm/notes").json()
        if any(marker in str((n.get("params") or {}).get("text", "")).splitlines() for n in notes):
            return time.monotonic()
        time.sleep(0.1)
    return None


def webhook_latency(count: int = 20, gap_s: float = 3.0) -> list[Result]:
    with (
        SandboxServer(SandboxConfig(seed=4, abcp_users=0, kaspi_orders=0)) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as control,
        tempfile.TemporaryDirectory() as tmp,
    ):
        env = flow_env(sandbox_env(server.base_url), Path(tmp) / "data")
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        with ReceiverServer(ReceiverSettings.from_env(env)) as receiver:
            daemon = _start_daemon(env, home)
            try:
                deliver(receiver.base_url, payment("warm-up", user={"telegram_id": "500500", "first_name": "Первый"}))
                if _wait_for_note(control, "warm-up", 180) is None:
                    raise RuntimeError("the daemon never applied the first payment")
                latencies = []
                for n in range(count):
                    sent = time.monotonic()
                    deliver(receiver.base_url, payment(f"lat-{n}", user={"telegram_id": f"5006{n:02d}"}))
                    done = _wait_for_note(control, f"lat-{n}", 120)
                    latencies.append((done or time.monotonic() + 999) - sent)
                    time.sleep(gap_s)
            finally:
                daemon.terminate()
                daemon.wait(timeout=60)
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    return [
        Result(
            FLOW,
            "webhook → lead updated, daemon running: p95",
            p95,
            "s",
            "<= 15",
            p95 <= 15,
            f"p50 {statistics.median(latencies):.1f} s, max {latencies[-1]:.1f} s over {count} payments",
        )
    ]
