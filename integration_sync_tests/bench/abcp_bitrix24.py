"""ABCP → Bitrix24 benchmarks against the sandbox with Bitrix24's real limits (2 req/s, burst 50).

- 10,000 new users: Bitrix24 requests per user and wall time against the rate-limit ideal;
- the same users again, unchanged: requests (goal 0);
- 1,000 of them changed: requests per changed user;
- the warehouse lost (a fresh data dir, the same portal): requests per user to re-match them all
  (goal <= 0.02) and new contacts/deals (goal 0);
- 1,000,000 generated users ingested into DuckDB: time and peak RSS, beside a row-by-row baseline.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from integration_sync.sandbox.server import SandboxConfig, SandboxServer
from integration_sync_tests.abcp_bitrix24.flow import ASSETS, flow_env, push_metadata, run_flow, today
from integration_sync_tests.bench.results import Result

FLOW = "abcp_bitrix24"
RATE, BURST = 2.0, 50


def _push(env: dict[str, str], control: httpx.Client, first: date) -> tuple[dict[str, Any], float, int]:
    before = control.get("/_sandbox/stats").json()["bitrix24"]["requests"]
    started = time.monotonic()
    meta = push_metadata(run_flow(env, first_day=first, last_day=today(), selection=ASSETS[2:]))
    elapsed = time.monotonic() - started
    requests = control.get("/_sandbox/stats").json()["bitrix24"]["requests"] - before
    return meta, elapsed, requests


def _drain_bucket(seconds: float = BURST / RATE + 1) -> None:
    """Let the portal's bucket empty so each phase starts from the same full burst."""
    time.sleep(seconds)


def push_benchmarks(users: int = 10_000, changed: int = 1_000) -> list[Result]:
    results: list[Result] = []
    days = 30
    config = SandboxConfig(seed=1, abcp_users=users, days=days, bitrix24_contacts=0)
    with (
        SandboxServer(config) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as control,
        tempfile.TemporaryDirectory() as tmp,
    ):
        from integration_sync.sandbox.env import sandbox_env

        env = flow_env(sandbox_env(server.base_url), Path(tmp))
        first = today() - timedelta(days=days)
        run_flow(env, first_day=first, last_day=today(), selection=ASSETS[:2])

        meta, elapsed, requests = _push(env, control, first)
        created = int(meta["created"])
        ideal = max(requests - BURST, 0) / RATE
        results.append(
            Result(
                FLOW,
                f"{users:,} new users: requests/user",
                requests / max(created, 1),
                "req",
                "<= 0.05",
                requests / max(created, 1) <= 0.05 and created == users,
                f"{requests} requests, {created} created; seed: 2 + 0.2 s sleep per user",
            )
        )
        results.append(
            Result(
                FLOW,
                f"{users:,} new users: wall / ideal",
                elapsed / max(ideal, 1e-9),
                "x",
                "<= 1.15",
                elapsed <= 1.15 * ideal,
                f"{elapsed:.1f} s vs {ideal:.1f} s at 2 req/s",
            )
        )

        meta, elapsed, requests = _push(env, control, first)
        results.append(
            Result(
                FLOW,
                "same users unchanged: requests",
                requests,
                "req",
                "== 0",
                requests == 0,
                f"{meta['unchanged']} unchanged in {elapsed:.1f} s",
            )
        )

        rng = random.Random(5)
        ids = [str(u) for u in _user_ids(env)]
        for user_id in rng.sample(ids, changed):
            control.post(f"/_sandbox/abcp/users/{user_id}", json={"saldo": f"{rng.randint(-9999, 9999)},00"})
        run_flow(env, first_day=today(), selection=ASSETS[1:2])
        _drain_bucket()
        meta, elapsed, requests = _push(env, control, first)
        updated = int(meta["updated"])
        per = requests / max(updated, 1)
        results.append(
            Result(
                FLOW,
                f"{changed:,} changed users: requests/user",
                per,
                "req",
                "<= 0.03",
                per <= 0.03 and updated == changed,
                f"{requests} requests, {updated} updated",
            )
        )
        results.extend(_lost_warehouse(server.base_url, control, first, users))
    return results


def _lost_warehouse(base_url: str, control: httpx.Client, first: date, users: int) -> list[Result]:
    """The same portal, a warehouse that knows nothing: every user must be matched, none created."""
    from integration_sync.sandbox.env import sandbox_env

    with tempfile.TemporaryDirectory() as tmp:
        env = flow_env(sandbox_env(base_url), Path(tmp))
        run_flow(env, first_day=first, last_day=today(), selection=ASSETS[:2])
        entities_before = control.get("/_sandbox/stats").json()["bitrix24"]["entities"]
        _drain_bucket()
        meta, elapsed, requests = _push(env, control, first)
        entities_after = control.get("/_sandbox/stats").json()["bitrix24"]["entities"]
    new = sum(entities_after[k] - entities_before[k] for k in ("contacts", "deals"))
    per = requests / max(users, 1)
    return [
        Result(
            FLOW,
            f"warehouse lost, {users:,} users re-matched: requests/user",
            per,
            "req",
            "<= 0.02",
            per <= 0.02,
            f"{requests} requests in {elapsed:.1f} s; {meta['updated']} updated, {meta['created']} created",
        ),
        Result(FLOW, "warehouse lost: new contacts + deals", new, "", "== 0", new == 0, str(entities_after)),
    ]


def _user_ids(env: dict[str, str]) -> list[str]:
    from integration_sync_tests.abcp_bitrix24.flow import warehouse

    with warehouse(env).connect() as conn:
        return [row[0] for row in conn.execute("SELECT user_id FROM abcp_users").fetchall()]


INGEST_CHILD = """
import json, resource, sys, time
from datetime import date
from pathlib import Path
from integration_sync_tests.bench.abcp_bitrix24 import generated_users, store_rowwise
from integration_sync.defs.migrations import MIGRATIONS
from integration_sync.defs.abcp_bitrix24.tables import store_users
from integration_sync.sync.warehouse import Warehouse
mode, count, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
store = Warehouse(path, MIGRATIONS)
store.migrate()
started = time.monotonic()
if mode == "bulk":
    days = dict(first_day=date(2000, 1, 1), last_day=date(2100, 1, 1))
    report = store_users(store, generated_users(count), run_id="bench", **days)
    stored = report.stored
else:
    stored = store_rowwise(store, generated_users(count))
elapsed = time.monotonic() - started
rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"elapsed": elapsed, "stored": stored, "maxrss_kb": rss_kb}))
"""


def generated_users(count: int, pool_size: int = 2_000) -> Any:
    """`count` ABCP users, streamed: the sandbox generator's users as templates, each with its own
    userId and registration time (never all in memory; about 1 µs per user)."""
    from integration_sync.sandbox.abcp import make_user

    rng = random.Random(42)
    start = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    pool = [make_user(rng, i, start, start + 60) for i in range(pool_size)]
    stamps = [
        datetime.fromtimestamp(start + minute * 3_600, UTC).strftime("%Y-%m-%d %H:%M:%S") for minute in range(5_000)
    ]
    for i in range(count):
        user = dict(pool[i % pool_size])
        user["userId"] = str(1_000_000 + i)
        user["registrationDate"] = user["updateTime"] = stamps[i % len(stamps)]
        yield user


def store_rowwise(store: Any, users: Any) -> int:
    """The baseline: one INSERT per user, as the seed's ORM does."""
    from integration_sync.defs.abcp_bitrix24.mapping import registration_day

    stored = 0
    with store.transaction() as conn:
        for user in users:
            conn.execute(
                "INSERT INTO abcp_users (user_id, partition_date, email, name, registration_date, raw,"
                " fetched_at) VALUES (?, ?, ?, ?, ?, ?, now())",
                [
                    user["userId"],
                    registration_day(user),
                    user.get("email"),
                    user.get("name"),
                    user.get("registrationDate"),
                    json.dumps(user, ensure_ascii=False),
                ],
            )
            stored += 1
    return stored


def _ingest(mode: str, count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", INGEST_CHILD, mode, str(count), str(Path(tmp) / "w.duckdb")],
            capture_output=True,
            text=True,
            check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(f"ingest child failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def ingest_benchmarks(count: int = 1_000_000, baseline_count: int = 20_000) -> list[Result]:
    bulk = _ingest("bulk", count)
    rowwise = _ingest("rowwise", baseline_count)
    per_row = rowwise["elapsed"] / baseline_count
    baseline_full = per_row * count
    speedup = baseline_full / bulk["elapsed"]
    rss_mb = bulk["maxrss_kb"] / 1024
    return [
        Result(
            FLOW,
            f"{count:,} users ingested: time",
            bulk["elapsed"],
            "s",
            "",
            True,
            f"{count / bulk['elapsed']:,.0f} users/s, {bulk['stored']:,} stored",
        ),
        Result(
            FLOW,
            "ingest vs row-by-row",
            speedup,
            "x",
            ">= 50",
            speedup >= 50,
            f"baseline {per_row * 1e3:.2f} ms/row over {baseline_count:,} rows -> {baseline_full:,.0f} s for {count:,}",
        ),
        Result(FLOW, "ingest peak RSS", rss_mb, "MB", "< 1024", rss_mb < 1024, "child process ru_maxrss"),
    ]
