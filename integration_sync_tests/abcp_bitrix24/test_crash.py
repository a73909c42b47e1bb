"""A push killed mid-run (SIGKILL, no cleanup) and run again: every user ends with one contact and one deal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx

from integration_sync_tests.abcp_bitrix24.flow import flow_env, push_metadata, run_flow, stats, today, warehouse
from integration_sync_tests.abcp_bitrix24.test_flow import abcp_users, assert_exactly_one_contact_and_deal

CHILD = """
import json, sys
from datetime import date
from integration_sync_tests.abcp_bitrix24.flow import run_flow
env = json.loads(sys.argv[1])
run_flow(env, first_day=date.fromisoformat(sys.argv[2]), last_day=date.fromisoformat(sys.argv[3]))
"""


def test_push_killed_mid_run_then_rerun(sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client) -> None:
    control.post("/_sandbox/reset", json={"seed": 11, "abcp_users": 150, "days": 3}).raise_for_status()
    env = flow_env(sandbox_env, data_dir)
    users = {u["userId"] for u in abcp_users(env) if isinstance(u, dict)}
    first = today() - timedelta(days=3)
    # The push's first three batches are reads (match by UF/ORIGIN_ID, findbycomm, the hits); the
    # fifth batch is its second write: it is committed, its answer held, and the run killed there.
    drop = {"count": 1, "methods": ["batch"], "skip": 4, "hold_ms": 20_000}
    control.post("/_sandbox/faults", json={"bitrix24": {"commit_then_drop": drop}}).raise_for_status()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(env), first.isoformat(), today().isoformat()],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        deadline = time.monotonic() + 120
        while _fired(control) == 0:
            assert child.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the push never reached the chosen write"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert _fired(control) == 1
    made = len(control.get("/_sandbox/bitrix24/deals").json())
    assert stats(control)["commands"]["crm.deal.add"] == made  # the held write was committed
    assert 0 < made < len(users), "the kill should land mid-push"
    control.post("/_sandbox/faults", json={"bitrix24": None}).raise_for_status()

    result = run_flow(env, first_day=first, last_day=today())
    assert result.success
    assert_exactly_one_contact_and_deal(control, env, users)
    meta = push_metadata(result)
    assert meta["rejected"] == 0
    with warehouse(env).connect() as conn:
        states = dict(conn.execute("SELECT status, count(*) FROM sync_state GROUP BY 1").fetchall())
    assert states == {"synced": len(users)}


def _fired(control: httpx.Client) -> int:
    state = control.post("/_sandbox/faults", json={}).json()["bitrix24"]  # {} reads the state only
    return int(state.get("commit_then_drop", {}).get("fired", 0))
