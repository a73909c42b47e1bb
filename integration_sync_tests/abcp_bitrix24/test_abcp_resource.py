"""The ABCP resource builds its client from the seed's HTTP settings (REQUESTS_RETRIES,
REQUESTS_RETRY_BACKOFF, RATE_LIMIT_SLEEP) on top of the ABCP retry policy."""

from __future__ import annotations

import time

import dagster as dg
import httpx
import pytest

from integration_sync.connectors.abcp import DEFAULT_POLICY
from integration_sync.connectors.errors import ApiError
from integration_sync.defs.resources import abcp_resource
from integration_sync_tests.dagster_support import environment


def _fetch_with_faults(sandbox_env: dict[str, str], control: httpx.Client, **env: str) -> tuple[int, float, bool]:
    control.post("/_sandbox/faults", json={"abcp": {"error_burst": {"count": 2, "status": 502}}}).raise_for_status()
    before = control.get("/_sandbox/stats").json()["abcp"]["requests"]
    started = time.monotonic()
    with (
        environment({**sandbox_env, **env}),
        dg.build_resources({"abcp": abcp_resource()}) as built,
        built.abcp.client() as client,
    ):
        try:
            list(client.fetch_users())
            ok = True
        except ApiError:
            ok = False
    elapsed = time.monotonic() - started
    sent = control.get("/_sandbox/stats").json()["abcp"]["requests"] - before
    return sent, elapsed, ok


def test_the_configured_retry_count_and_pause_are_used(sandbox_env: dict[str, str], control: httpx.Client) -> None:
    """Guards AbcpResource.client(): the policy from REQUESTS_RETRIES / REQUESTS_RETRY_BACKOFF, the
    limiter from RATE_LIMIT_SLEEP."""
    sent, _, ok = _fetch_with_faults(
        sandbox_env, control, REQUESTS_RETRIES="1", REQUESTS_RETRY_BACKOFF="0.01", RATE_LIMIT_SLEEP="0"
    )
    assert (sent, ok) == (2, False)  # one retry, then the 502 stands
    state = control.post("/_sandbox/faults", json={}).json()["abcp"]
    assert state["error_burst"]["count"] == 0  # both injected errors fired

    sent, elapsed, ok = _fetch_with_faults(
        sandbox_env, control, REQUESTS_RETRIES="2", REQUESTS_RETRY_BACKOFF="0.01", RATE_LIMIT_SLEEP="0.3"
    )
    assert ok and sent == 3  # 502, 502, then the page (40 users: one page)
    assert elapsed >= 0.55  # three requests at least 0.3 s apart


@pytest.mark.parametrize("name", ["max_attempts", "backoff_base", "timeout"])
def test_defaults_keep_the_abcp_policy(sandbox_env: dict[str, str], name: str) -> None:
    with environment(sandbox_env), dg.build_resources({"abcp": abcp_resource()}) as built:
        client = built.abcp.client()
    policy = client._api.policy  # the policy the client really uses
    assert getattr(policy, name) == getattr(DEFAULT_POLICY, name)
    assert policy.connect_timeout == DEFAULT_POLICY.connect_timeout
