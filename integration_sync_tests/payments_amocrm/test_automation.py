"""The inbox sensor, the retry schedule and the jobs: webhook → sensor → run → amoCRM through Dagster."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from integration_sync.defs.payments_amocrm.automation import (
    payment_inbox,
    payments_amocrm_job,
    payments_push_job,
    payments_reconciliation,
    payments_retry,
)
from integration_sync.webhooks.inbox import Inbox
from integration_sync.webhooks.models import MOSCOW
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings
from integration_sync_tests.dagster_support import environment
from integration_sync_tests.payments_amocrm.flow import (
    ASSETS,
    CHECKS,
    amo,
    deliver,
    event_log,
    flow_env,
    payment,
    resources,
    today,
)


@pytest.fixture()
def env(sandbox_env: dict[str, str], data_dir: Path) -> Iterator[dict[str, str]]:
    values = flow_env(sandbox_env, data_dir, AMO_HTTP_BACKOFF_S="0.05")
    with environment(values):
        yield values


@pytest.fixture()
def receiver(env: dict[str, str]) -> Iterator[str]:
    with ReceiverServer(ReceiverSettings.from_env(env)) as server:
        yield server.base_url


def definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[payments_amocrm_job, payments_push_job],
        sensors=[payment_inbox],
        schedules=[payments_retry, payments_reconciliation],
        resources=resources(),
    )


def tick(instance: dg.DagsterInstance, cursor: str | None = None) -> Any:
    return payment_inbox(dg.build_sensor_context(instance=instance, cursor=cursor))


def test_no_inbox_yet_is_a_skip_not_an_error(env: dict[str, str]) -> None:
    assert isinstance(tick(dg.DagsterInstance.ephemeral()), dg.SkipReason)


def test_the_sensor_asks_one_run_per_day_and_moves_its_cursor(env: dict[str, str], receiver: str) -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert not tick(instance).run_requests
    yesterday = datetime.now(MOSCOW) - timedelta(days=1)
    deliver(
        receiver,
        payment("s-1"),
        payment("s-2", paid_at=yesterday),
        payment("s-3"),
        payment("s-4", paid_at=datetime(2019, 5, 1, tzinfo=MOSCOW)),  # before the first partition
    )
    result = tick(instance)
    identity = Inbox(env["WEBHOOK_INBOX_PATH"]).identity()
    assert result.cursor == f"{identity}:4"
    requests = {r.partition_key: r.run_key for r in result.run_requests}
    assert requests == {
        today().isoformat(): f"payments:{today().isoformat()}:1-3",
        yesterday.date().isoformat(): f"payments:{yesterday.date().isoformat()}:2-2",
        "2025-01-01": "payments:2025-01-01:4-4",
    }
    idle = tick(instance, result.cursor)
    assert idle.run_requests == [] and idle.skip_reason and idle.cursor == result.cursor
    deliver(receiver, payment("s-5"))
    assert [r.run_key for r in tick(instance, result.cursor).run_requests] == [f"payments:{today().isoformat()}:5-5"]
    # a cursor from another inbox (the data folder was replaced) does not skip this one's first events
    assert len(tick(instance, "0123456789abcdef:99").run_requests) == 3


def test_a_day_with_a_run_waiting_in_the_queue_gets_no_second_run(env: dict[str, str], receiver: str) -> None:
    instance = dg.DagsterInstance.ephemeral()
    waiting = dg.DagsterRun(
        job_name=payments_amocrm_job.name,
        run_id="waiting",
        status=dg.DagsterRunStatus.NOT_STARTED,  # queued runs need a code location origin; same wait
        tags={"dagster/partition": today().isoformat()},
    )
    instance.add_run(waiting)
    deliver(receiver, payment("q-1"))
    result = tick(instance)
    assert result.run_requests == [] and result.cursor.endswith(":1")
    instance.report_run_canceled(waiting)  # no longer waiting: the next payments get their run
    deliver(receiver, payment("q-2"))
    assert len(tick(instance, result.cursor).run_requests) == 1


@pytest.fixture()
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def test_webhook_to_amocrm_through_the_sensor_and_the_job(
    env: dict[str, str], receiver: str, control: httpx.Client, instance: dg.DagsterInstance
) -> None:
    deliver(receiver, payment("e2e-1", user={"telegram_id": "31337", "first_name": "Ада"}), payment("e2e-2"))
    job = definitions().resolve_job_def(payments_amocrm_job.name)
    for request in tick(instance).run_requests:
        result = job.execute_in_process(instance=instance, partition_key=request.partition_key, tags=request.tags)
        assert result.success
    assert {k: v["status"] for k, v in event_log(env).items()} == {"e2e-1": "success", "e2e-2": "success"}
    lead_ids = {row["lead_id"] for row in event_log(env).values()}
    assert lead_ids <= {lead["id"] for lead in amo(control, "leads")}

    # the retry schedule stays quiet while nothing is outstanding
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime.now(MOSCOW))
    assert isinstance(payments_retry(context), dg.SkipReason)


def test_the_retry_schedule_runs_the_push_while_payments_are_outstanding_or_the_last_run_failed(
    env: dict[str, str], receiver: str, control: httpx.Client, instance: dg.DagsterInstance
) -> None:
    deliver(receiver, payment("r-1"))
    control.post("/_sandbox/faults", json={"amocrm": {"error_rate": {"rate": 1.0, "status": 503}}}).raise_for_status()
    job = definitions().resolve_job_def(payments_amocrm_job.name)
    failed = job.execute_in_process(instance=instance, partition_key=today().isoformat(), raise_on_error=False)
    assert not failed.success
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime.now(MOSCOW))
    request = payments_retry(context)
    assert isinstance(request, dg.RunRequest)
    control.post("/_sandbox/faults", json={"amocrm": None}).raise_for_status()
    push = definitions().resolve_job_def(payments_push_job.name)
    assert push.execute_in_process(instance=instance, tags=request.tags).success
    assert event_log(env)["r-1"]["status"] == "success"
    assert isinstance(payments_retry(context), dg.SkipReason)


def test_the_hourly_reconciliation_covers_yesterday_and_today(
    env: dict[str, str], instance: dg.DagsterInstance
) -> None:
    now = datetime.now(MOSCOW)
    request = payments_reconciliation(dg.build_schedule_context(instance=instance, scheduled_execution_time=now))
    assert isinstance(request, dg.RunRequest)
    assert request.tags["dagster/asset_partition_range_start"] == (now.date() - timedelta(days=1)).isoformat()
    assert request.tags["dagster/asset_partition_range_end"] == now.date().isoformat()
