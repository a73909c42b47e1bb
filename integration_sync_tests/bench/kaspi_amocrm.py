"""Kaspi → amoCRM benchmarks against the sandbox with amoCRM's real limit (7 requests/s).

- 2,000 new orders (30% repeat customers, about 3 lines each): amoCRM requests per order and wall
  time of the push against the 7 requests/s ideal;
- a minute with no new orders: Kaspi requests (one page per day in the window) and amoCRM requests (0);
- the warehouse lost (a fresh data dir) against the populated amoCRM: requests per order to re-match
  every order to its lead (the pipeline's leads, 250 per page) and in all (plus one notes read per 50
  leads, to tell complete leads from those whose note never arrived); no lead, note or contact is made.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from integration_sync.sandbox.env import sandbox_env
from integration_sync.sandbox.server import SandboxConfig, SandboxServer
from integration_sync_tests.bench.results import Result
from integration_sync_tests.kaspi_amocrm.flow import ASSETS, amo, flow_env, push_metadata, run_flow

FLOW = "kaspi_amocrm"
AMO_RATE = 7.0


def _requests(control: httpx.Client, service: str, counter: str = "requests") -> int:
    return int(control.get("/_sandbox/stats").json()[service][counter])


def push_benchmarks(orders: int = 2_000, days: int = 5) -> list[Result]:
    config = SandboxConfig(
        seed=2, kaspi_orders=orders, days=days, kaspi_rate=200.0, kaspi_burst=200, kaspi_repeat_customers=0.3
    )
    with (
        SandboxServer(config) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as control,
        tempfile.TemporaryDirectory() as tmp,
    ):
        env = flow_env(sandbox_env(server.base_url), Path(tmp), KASPI_RATE_PER_S="150")
        run_flow(env, days=days, selection=ASSETS[:1])  # ingest (Kaspi's speed is not what is measured)
        time.sleep(1.5)  # amoCRM's window starts empty
        before, throttled_before = _requests(control, "amocrm"), _requests(control, "amocrm", "throttled")
        started = time.monotonic()
        meta = push_metadata(run_flow(env, days=days, selection=ASSETS[1:]))
        elapsed = time.monotonic() - started
        requests = _requests(control, "amocrm") - before
        throttled = _requests(control, "amocrm", "throttled") - throttled_before  # 429s: over the limit
        created = int(meta["created"])
        ideal = requests / AMO_RATE
        per = requests / max(created, 1)
        results = [
            Result(
                FLOW,
                f"{orders:,} new orders: requests/order",
                per,
                "req",
                "<= 0.5",
                per <= 0.5 and created == orders,
                f"{requests} requests, {created} leads; seed: about 5",
            ),
            Result(
                FLOW,
                f"{orders:,} new orders: wall / ideal",
                elapsed / ideal,
                "x",
                "<= 1.2",
                elapsed <= 1.2 * ideal and throttled == 0,
                f"{elapsed:.1f} s vs {ideal:.1f} s at 7 req/s; {throttled} answered 429",
            ),
        ]
        kaspi_before, amo_before = _requests(control, "kaspi"), _requests(control, "amocrm")
        run_flow(env, days=1, incremental=True)  # the minute job: yesterday and today, then the push
        kaspi_used = _requests(control, "kaspi") - kaspi_before
        amo_used = _requests(control, "amocrm") - amo_before
        results.append(
            Result(
                FLOW,
                "idle minute: Kaspi requests",
                kaspi_used,
                "req",
                "== 2 (days)",
                kaspi_used == 2,
                "one page per day in the window",
            )
        )
        results.append(Result(FLOW, "idle minute: amoCRM requests", amo_used, "req", "== 0", amo_used == 0, ""))
        results += _lost_warehouse(control, env, Path(tmp), orders, days)
    return results


def _lost_warehouse(control: httpx.Client, env: dict[str, str], data: Path, orders: int, days: int) -> list[Result]:
    counts = {kind: len(amo(control, kind)) for kind in ("leads", "notes", "contacts", "links")}
    shutil.rmtree(data)
    data.mkdir()
    run_flow(env, days=days, selection=ASSETS[:1])
    before = _requests(control, "amocrm")
    meta = push_metadata(run_flow(env, days=days, selection=ASSETS[1:]))
    used = _requests(control, "amocrm") - before
    same = {kind: len(amo(control, kind)) for kind in counts} == counts and int(meta["created"]) == 0
    index_reads = int(meta["lead_index_requests"])
    return [
        Result(
            FLOW,
            "lost warehouse: re-match requests/order",
            index_reads / orders,
            "req",
            "<= 0.02",
            index_reads / orders <= 0.02 and same,
            f"{index_reads} requests: the pipeline's leads, 250 per page (>= {math.ceil(orders / 250)})",
        ),
        Result(
            FLOW,
            "lost warehouse: all requests/order",
            used / orders,
            "req",
            "<= 0.03",
            used / orders <= 0.03 and same,
            f"{used} requests (+ notes read per 50 leads); nothing made twice: {same}",
        ),
    ]
