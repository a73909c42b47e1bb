"""Bitrix CMS shop → Bitrix24 (cms_orders) benchmarks against the sandbox with Bitrix24's real limits
(the shop's portal: 2 req/s, burst 50, read from the emulator and the connector's settings):

- a fresh shop through the FORWARD selection: Bitrix24 requests of the deals push per new order;
- the migration (the export's orders, broken ones included, over all its days): wall time against the
  rate-limit ideal, every order a deal or quarantined with its reason, then a re-run that costs nothing;
- a manager's deal move → the shop's status, through the `deal_stage_moves` sensor on its interval and
  `cms_status_job`'s selection (`cms_orders_latency`);
- the order webhook receiver at 200 orders/s (`cms_orders_receiver`).
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import httpx

from integration_sync.sandbox.env import sandbox_env
from integration_sync.sandbox.server import SandboxConfig, SandboxServer
from integration_sync_tests.bench.results import Result
from integration_sync_tests.cms_orders import flow
from integration_sync_tests.dagster_support import asset_metadata, environment

FLOW = "cms_orders"
PORTAL = "bitrix24-shop"
DEALS = "bitrix24__shop_deals"
PUSHES = ("bitrix24__shop_products", "bitrix24__shop_contacts", DEALS)
MIN_IDEAL_S = 60.0


@contextmanager
def shop_sandbox(orders: int, days: int, seed: int = 3) -> Iterator[tuple[SandboxServer, httpx.Client, dict[str, str]]]:
    """A sandbox whose shop holds `orders` orders over `days` days, and the flow's env on a fresh data dir."""
    config = SandboxConfig(seed=seed, shop_orders=orders, days=days, abcp_users=0, kaspi_orders=0)
    with (
        SandboxServer(config) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as control,
        tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp,
    ):
        data = Path(tmp) / "data"
        data.mkdir()
        yield server, control, flow.flow_env(sandbox_env(server.base_url), data)


def portal_requests(control: httpx.Client) -> int:
    return int(control.get("/_sandbox/stats").json()[PORTAL]["requests"])


def portal_limits(control: httpx.Client, env: dict[str, str]) -> tuple[float, int]:
    """The slower of the emulator's limits and the connector's own limiter (they agree by default)."""
    config = control.get("/_sandbox/config").json()
    rate = float(config["bitrix24_shop_rate"] or config["bitrix24_rate"])
    burst = int(config["bitrix24_shop_burst"] or config["bitrix24_burst"])
    with environment(env):
        resource = flow.resources()["bitrix24_shop"]
    return min(rate, float(resource.rate_per_s)), min(burst, int(resource.burst))


def _days(config_days: int) -> int:
    return config_days + 2  # every Kazakhstan day of the sandbox's data, both edges included


def forward(env: dict[str, str], days: int) -> dg.ExecuteInProcessResult:
    """FORWARD over the sandbox's days; its ephemeral instance freed now, in this thread (freed in a
    server thread later, its SQLite connections log errors)."""
    result = flow.run(env, flow.FORWARD, days=_days(days))
    gc.collect()
    return result


def requests_per_order(orders: int = 2_000, days: int = 5) -> list[Result]:
    with shop_sandbox(orders, days) as (_, control, env):
        before = portal_requests(control)
        result = forward(env, days)
        total = portal_requests(control) - before
    deals = asset_metadata(result, DEALS)
    created = int(deals["created"])
    per = int(deals["api_requests"]) / max(created, 1)
    parts = ", ".join(f"{node.split('__')[1]} {asset_metadata(result, node)['api_requests']}" for node in PUSHES)
    return [
        Result(
            FLOW,
            f"{orders:,} new orders: deal-push requests/order",
            per,
            "req",
            "<= 0.1",
            per <= 0.1 and created > 0,
            f"{deals['api_requests']} requests for {created} deals ({deals['orders_quarantined']} quarantined)",
        ),
        Result(
            FLOW,
            f"{orders:,} new orders: all Bitrix24 requests/order",
            total / orders,
            "req",
            "",
            True,
            f"{total} requests in the forward run ({parts}; the rest: preflight and stage reads)",
        ),
    ]


def migration(orders: int = 10_000, days: int = 30, profile: bool = False) -> list[Result]:
    """The export's orders over all its days in one FORWARD run; then the same again."""
    with shop_sandbox(orders, days) as (_, control, env):
        rate, burst = portal_limits(control, env)
        before = portal_requests(control)
        profiler = cProfile.Profile() if profile else None
        started = time.monotonic()
        if profiler:
            profiler.enable()
        result = forward(env, days)
        if profiler:
            profiler.disable()
        elapsed = time.monotonic() - started
        requests = portal_requests(control) - before
        again_started = time.monotonic()
        again = forward(env, days)
        again_s = time.monotonic() - again_started
        again_requests = portal_requests(control) - before - requests
    meta = asset_metadata(result, DEALS)
    loaded = asset_metadata(result, "bitrix_cms__shop_orders")
    ideal = max(requests - burst, 0) / rate
    ratio = elapsed / max(ideal, 1e-9)
    # with a minute or less of waiting on the limit (quick volumes) the run's fixed cost is the ratio
    applied = ideal >= MIN_IDEAL_S
    unaccounted = int(meta["orders_unaccounted"])
    rerun = {node: asset_metadata(again, node)["api_requests"] for node in PUSHES}
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
        print(out.getvalue())
    return [
        Result(
            FLOW,
            f"migration of {orders:,} orders: wall / ideal",
            ratio,
            "x",
            "<= 1.15",
            ratio <= 1.15 or not applied,
            f"{elapsed:.1f} s for {requests} requests vs {ideal:.1f} s at {rate:g} req/s after a burst of {burst}"
            + ("" if applied else f"; goal not applied: ideal under {MIN_IDEAL_S:g} s"),
        ),
        Result(
            FLOW,
            "migration: orders neither in Bitrix24 nor quarantined",
            unaccounted,
            "",
            "== 0",
            unaccounted == 0 and int(meta["orders"]) == orders,
            f"{meta['orders']} stored ({loaded.get('turned_away', 0)} turned away), {meta['orders_in_crm']} deals,"
            f" {meta['orders_quarantined']} quarantined with a reason",
        ),
        Result(
            FLOW,
            "migration again, nothing fixed: requests",
            again_requests,
            "req",
            "== 0",
            again_requests == 0,
            f"{again_s:.1f} s; pushes' api_requests {rerun}",
        ),
    ]


def cms_benchmarks(quick: bool = False) -> list[Result]:
    from integration_sync_tests.bench.cms_orders_latency import status_latency
    from integration_sync_tests.bench.cms_orders_receiver import receiver_benchmarks

    results = requests_per_order(orders=300 if quick else 2_000)
    results += migration(orders=1_000 if quick else 10_000)
    results += status_latency(moves=6 if quick else 20, spread_s=45 if quick else 150)
    results += receiver_benchmarks(seconds=3 if quick else 10)
    return results


def main(argv: list[str] | None = None) -> None:
    """`python -m integration_sync_tests.bench.cms_orders [orders]`: the migration alone, profiled."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    for result in migration(orders=int(args[0]) if args else 1_000, profile=True):
        print(result)


if __name__ == "__main__":
    main()
