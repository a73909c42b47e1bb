"""A push killed mid-run (SIGKILL, no cleanup) and run again: every user ends with one contact and one deal."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx

from integration_sync_tests.abcp_bitrix24.flow import flow_env, push_metadata, run_flow, stats, today, warehouse
from integration_sync_tests.abcp_bitrix24.test_flow import abcp_users, assert_exactly_one_contact_and_deal
from integration_sync_tests.crash_support import kill_at_held_write

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
    assert (
        kill_at_held_write(control, "bitrix24", drop, CHILD, json.dumps(env), first.isoformat(), today().isoformat())
        == 1
    )
    made = len(control.get("/_sandbox/bitrix24/deals").json())
    assert stats(control)["commands"]["crm.deal.add"] == made  # the held write was committed
    assert 0 < made < len(users), "the kill should land mid-push"

    result = run_flow(env, first_day=first, last_day=today())
    assert result.success
    assert_exactly_one_contact_and_deal(control, env, users)
    meta = push_metadata(result)
    assert meta["rejected"] == 0
    with warehouse(env).connect() as conn:
        states = dict(conn.execute("SELECT status, count(*) FROM sync_state GROUP BY 1").fetchall())
    assert states == {"synced": len(users)}
