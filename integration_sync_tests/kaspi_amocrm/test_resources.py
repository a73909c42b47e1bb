"""The flow's resources: the Kaspi budget shared by every process, and a bad KASPI_STATUS_MAP named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from integration_sync.connectors.errors import ConfigError
from integration_sync.defs.kaspi_amocrm.resources import KaspiLeadsResource, KaspiResource, parse_status_map
from integration_sync_tests.kaspi_amocrm.flow import ASSETS, flow_env, run_flow

# two processes each take `count` Kaspi tokens at 5/s from the same merchant's bucket
WORKER = r"""
import json, sys, time
from integration_sync.defs.kaspi_amocrm.resources import KaspiResource
state_dir, start_at, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
resource = KaspiResource(base_url="http://127.0.0.1:9", token="merchant-token", rate_per_s=5.0, state_dir=state_dir)
with resource.client() as client:
    time.sleep(max(0.0, start_at - time.time()))
    stamps = []
    for _ in range(count):
        client.limiter.acquire()
        stamps.append(time.time())
print(json.dumps(stamps))
"""


def test_two_processes_share_one_kaspi_budget(tmp_path: Path) -> None:
    start_at = time.time() + 3.0  # both interpreters are up by then
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path), str(start_at), "6"], stdout=subprocess.PIPE, env=env
        )
        for _ in range(2)
    ]
    stamps = sorted(s for w in workers for s in json.loads(w.communicate(timeout=60)[0]))
    # 12 tokens at 5/s with a burst of 1: at least 11 intervals of 0.2 s between the first and last;
    # two unshared buckets would finish in about half that
    assert stamps[-1] - stamps[0] >= 11 / 5.0 * 0.9, stamps[-1] - stamps[0]


def test_the_budget_file_is_per_merchant_and_carries_no_token(tmp_path: Path) -> None:
    one = KaspiResource(base_url="http://x", token="token-one", state_dir=str(tmp_path)).rate_state_path()
    two = KaspiResource(base_url="http://x", token="token-two", state_dir=str(tmp_path)).rate_state_path()
    assert one != two and one.parent == tmp_path and "token" not in one.name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{bad", "KASPI_STATUS_MAP is not valid JSON"),
        ("[142]", "KASPI_STATUS_MAP must be a JSON object"),
        ('{"COMPLETED": "won"}', "KASPI_STATUS_MAP: the status id of 'COMPLETED' must be an integer"),
        ('{"COMPLETED": true}', "KASPI_STATUS_MAP: the status id of 'COMPLETED' must be an integer"),
    ],
)
def test_a_bad_status_map_is_a_config_error_naming_the_variable(text: str, message: str) -> None:
    resource = KaspiLeadsResource(pipeline_id=1, status_id=2, responsible_user_id=3, catalog_id=4, status_map_json=text)
    with pytest.raises(ConfigError, match=message):
        resource.settings()


def test_a_good_status_map_overrides_the_default() -> None:
    assert parse_status_map('{"COMPLETED": "142", "ARRIVED": 70000013}') == {"COMPLETED": 142, "ARRIVED": 70000013}


def test_the_run_fails_with_the_variable_named(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client
) -> None:
    control.post("/_sandbox/reset", json={"seed": 5, "kaspi_orders": 3, "days": 1}).raise_for_status()
    env = flow_env(sandbox_env, data_dir, KASPI_STATUS_MAP="{bad")
    result = run_flow(env, days=1, selection=ASSETS[1:], raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = str(failure.event_specific_data)
    assert "KASPI_STATUS_MAP is not valid JSON" in text and "JSONDecodeError" not in text
