"""`make run`'s stack in a subprocess: sandbox, receiver, Dagster webserver and daemon; the code location
loads, and a payment webhook reaches amoCRM through the daemon's sensor."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from integration_sync.sandbox.bitrix24 import UF_ABCP_USER_ID
from integration_sync.sandbox.platform import PLATFORM_WEBHOOK_SECRET
from integration_sync_tests.payments_amocrm.flow import payment, signed

ROOT = Path(__file__).resolve().parents[1]
QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    name location { name }
    assetNodes { assetKey { path } groupName }
    schedules { name cronSchedule executionTimezone scheduleState { status } }
    sensors { name sensorState { status } }
} } } }
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
# its own waits bound it (the stack up 240 s, the payment 120 s, the two pushes 180 s): the global 300 s
# would cut it short on a loaded machine, not catch a hang sooner
@pytest.mark.timeout(560)
def test_up_serves_the_code_location_with_the_flow(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    shutil.copy(ROOT / "workspace.yaml", tmp_path / "workspace.yaml")
    port, sandbox_port, webhook_port = free_port(), free_port(), free_port()
    prefixes = ("ABCP_", "B24_", "UF_B24_", "KASPI_", "AMO_", "PLATFORM_WEBHOOK_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(DAGSTER_HOME=str(home), INTEGRATION_SYNC_DATA_DIR=str(tmp_path / "data"))
    bin_dir = Path(sys.executable).parent
    proc = subprocess.Popen(
        [
            str(bin_dir / "integration-sync"),
            "up",
            "--port",
            str(port),
            "--sandbox-port",
            str(sandbox_port),
            "--webhook-port",
            str(webhook_port),
            "--project-dir",
            str(tmp_path),
        ],
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        body = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"integration-sync up exited with {proc.returncode}"
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": QUERY}, timeout=10)
                nodes = answer.json()["data"]["repositoriesOrError"].get("nodes")
                if nodes:
                    body = nodes
                    break
            except (httpx.HTTPError, KeyError, ValueError, TypeError):
                pass
            time.sleep(1)
        assert body, "the webserver never served the code location"
        repo = body[0]
        assert repo["location"]["name"] == "integration_sync"
        groups = {"/".join(a["assetKey"]["path"]): a["groupName"] for a in repo["assetNodes"]}
        assert groups["abcp/users"] == "abcp_bitrix24"
        assert groups["abcp/user_changes"] == "abcp_bitrix24"
        assert groups["bitrix24/user_deals"] == "abcp_bitrix24"
        assert groups["kaspi/orders"] == "kaspi_amocrm"
        assert groups["amocrm/kaspi_leads"] == "kaspi_amocrm"
        crons = {s["name"]: (s["cronSchedule"], s["scheduleState"]["status"]) for s in repo["schedules"]}
        assert "kaspi_new_orders" not in crons  # a sensor now: an idle minute launches no run
        assert crons["kaspi_reconciliation"] == ("*/10 * * * *", "RUNNING")
        schedule = next(s for s in repo["schedules"] if s["name"] == "abcp_bitrix24_daily")
        assert (schedule["cronSchedule"], schedule["executionTimezone"]) == ("10 2 * * *", "Europe/Moscow")
        assert schedule["scheduleState"]["status"] == "RUNNING"
        # the sandbox answers on its port, so a newcomer can materialize from the UI
        assert httpx.get(f"http://127.0.0.1:{sandbox_port}/_sandbox/stats", timeout=10).status_code == 200
        # and the webhook receiver answers next to Dagster
        health = httpx.get(f"http://127.0.0.1:{webhook_port}/webhook/health", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert groups["platform/payment_events"] == groups["amocrm/payment_leads"] == "payments_amocrm"
        sensors = {s["name"]: s["sensorState"]["status"] for s in repo["sensors"]}
        assert sensors["payment_inbox"] == sensors["kaspi_new_orders"] == "RUNNING"
        # a payment posted to the receiver reaches the amoCRM emulator through the daemon's sensor
        body, headers = signed(payment("stack-1"), PLATFORM_WEBHOOK_SECRET)
        answer = httpx.post(f"http://127.0.0.1:{webhook_port}/webhook/payment", content=body, headers=headers)
        assert answer.status_code == 200
        deadline = time.monotonic() + 120
        while not any(
            "Payment ID: stack-1" in n["params"]["text"]
            for n in httpx.get(f"http://127.0.0.1:{sandbox_port}/_sandbox/amocrm/notes", timeout=10).json()
        ):
            assert time.monotonic() < deadline, "the payment never reached amoCRM"
            time.sleep(0.5)
        two_pushes_launched_from_the_ui(port, sandbox_port, repo["name"])
        redrive_through_the_queue(port, tmp_path, env)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=3)


LAUNCH = """
mutation($params: ExecutionParams!) { launchPipelineExecution(executionParams: $params) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } } ... on PipelineNotFoundError { message }
} }
"""
RUN = """
query($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run {
    status stepStats { stepKey startTime endTime status }
} } }
"""


def graphql(port: int, query: str, **variables: Any) -> dict[str, Any]:
    answer = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables}, timeout=30)
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def launch(port: int, repo: str, asset: list[str], tags: dict[str, str] | None = None) -> str:
    """What the UI's Materialize button sends: the asset job with an asset selection, no run tag of ours."""
    params = {
        "selector": {
            "repositoryLocationName": "integration_sync",
            "repositoryName": repo,
            "pipelineName": "__ASSET_JOB",
            "assetSelection": [{"path": asset}],
        },
        "mode": "default",
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
    }
    answer = graphql(port, LAUNCH, params=params)["launchPipelineExecution"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return str(answer["run"]["runId"])


def wait_done(port: int, run_ids: list[str], timeout_s: float = 180) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        runs = [graphql(port, RUN, runId=run_id)["runOrError"] for run_id in run_ids]
        if all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
            return runs
        assert time.monotonic() < deadline, [r["status"] for r in runs]
        time.sleep(1)


def two_pushes_launched_from_the_ui(port: int, sandbox_port: int, repo: str) -> None:
    """Two Materialize clicks on `bitrix24/user_deals`: the runs carry no push tag, so only the push
    pool (limit 1 in dagster.yaml) keeps their push steps apart, and every user gets one deal."""
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    ingest = launch(
        port,
        repo,
        ["abcp", "users"],
        {
            "dagster/asset_partition_range_start": (today - timedelta(days=4)).isoformat(),
            "dagster/asset_partition_range_end": today.isoformat(),
        },
    )
    assert [r["status"] for r in wait_done(port, [ingest])] == ["SUCCESS"]
    httpx.post(f"{sandbox}/_sandbox/faults", json={"bitrix24": {"latency_ms": 250}}, timeout=10).raise_for_status()
    runs = wait_done(port, [launch(port, repo, ["bitrix24", "user_deals"]) for _ in range(2)])
    assert [r["status"] for r in runs] == ["SUCCESS", "SUCCESS"]
    steps = sorted(
        (s["startTime"], s["endTime"]) for r in runs for s in r["stepStats"] if s["stepKey"] == "bitrix24__user_deals"
    )
    assert len(steps) == 2 and steps[0][1] <= steps[1][0], f"the two push steps overlapped: {steps}"
    deals = httpx.get(f"{sandbox}/_sandbox/bitrix24/deals", timeout=10).json()
    per_user = Counter(str(d.get(UF_ABCP_USER_ID)) for d in deals)
    assert len(per_user) > 5 and max(per_user.values()) == 1, per_user.most_common(3)


REDRIVEN = """
query($runId: ID!) { runOrError(runId: $runId) { ... on Run { runConfigYaml tags { key value } } }
  assetOrError(assetKey: {path: ["amocrm", "payment_leads"]}) { ... on Asset {
    assetMaterializations(limit: 1) { runId metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }
"""


def redrive_through_the_queue(port: int, project: Path, env: dict[str, str]) -> None:
    """`integration-sync redrive` submits the flow's push to the running webserver: the run carries the
    flow's push tag (queued behind any run of the flow), its config the keys, and run_push re-drives them."""
    tool = str(Path(sys.executable).parent / "integration-sync")
    done = subprocess.run(
        [tool, "redrive", "payments_amocrm", "stack-1", "--wait", "120"],
        env={**env, "DAGSTER_PORT": str(port)},
        cwd=project,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = done.stdout.split("submitted run ")[1].split()[0]
    data = graphql(port, REDRIVEN, runId=run_id)
    tags = {t["key"]: t["value"] for t in data["runOrError"]["tags"]}
    assert tags["integration_sync/push"] == "payments_amocrm"
    assert "redrive_keys" in data["runOrError"]["runConfigYaml"] and "stack-1" in data["runOrError"]["runConfigYaml"]
    (event,) = data["assetOrError"]["assetMaterializations"]
    assert event["runId"] == run_id
    metadata = {m["label"]: m.get("intValue") for m in event["metadataEntries"]}
    assert metadata["redriven"] == 0  # stack-1 landed: nothing failed to re-drive, and nothing was pushed twice
