"""A manager's deal move → the shop's order status, as production does it without a daemon: the
`deal_stage_moves` sensor evaluated on its own interval (15 s), and when it asks for a run,
`cms_status_job`'s selection (history, then statuses to the shop) run in process. A watcher polls the
shop for each moved order; the latency is move → the shop showing the mapped status.

Not counted: the daemon's run launch (a new process, a few seconds on the bench machine).
"""

from __future__ import annotations

import gc
import random
import statistics
import threading
import time
from contextlib import ExitStack
from typing import Any

import dagster as dg
import httpx

from integration_sync.defs.cms_orders.automation import deal_stage_moves
from integration_sync_tests.bench.cms_orders import FLOW, shop_sandbox
from integration_sync_tests.bench.results import Result
from integration_sync_tests.cms_orders import flow
from integration_sync_tests.dagster_support import environment

INTERVAL_S = 15.0  # deal_stage_moves' minimum_interval_seconds
STAGE_STATUS = {"C3:FINAL_INVOICE": "S", "C3:WON": "F", "C3:LOSE": "D"}  # CMS_STAGE_STATUS_MAP default


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


class _Watcher:
    """Polls the shop for moved orders; records when each shows its expected status."""

    def __init__(self, control_url: str) -> None:
        self.http = httpx.Client(base_url=control_url, timeout=30)
        self.pending: dict[int, tuple[str, float]] = {}  # order -> (status, moved at)
        self.latencies: dict[int, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def expect(self, order_id: int, status: str, moved_at: float) -> None:
        with self.lock:
            self.pending[order_id] = (status, moved_at)

    def _run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                pending = dict(self.pending)
            for order_id, (status, moved_at) in pending.items():
                if flow.shop_order(self.http, order_id)["STATUS_ID"] == status:
                    with self.lock:
                        self.latencies[order_id] = time.monotonic() - moved_at
                        del self.pending[order_id]
            time.sleep(0.25)

    def __enter__(self) -> _Watcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.http.close()


def _mover(control_url: str, moves: list[tuple[float, str, int, str]], watcher: _Watcher) -> None:
    """Managers: each move at its offset from now (deal id, order id, stage)."""
    started = time.monotonic()
    with httpx.Client(base_url=control_url, timeout=30) as http:
        for offset, deal_id, order_id, stage in moves:
            time.sleep(max(0.0, started + offset - time.monotonic()))
            http.post(f"/_sandbox/bitrix24-shop/deals/{deal_id}/stage", json={"stage_id": stage}).raise_for_status()
            watcher.expect(order_id, STAGE_STATUS[stage], time.monotonic())


def status_latency(moves: int = 20, spread_s: float = 150.0) -> list[Result]:
    rng = random.Random(11)
    runs = 0
    run_seconds: list[float] = []
    with ExitStack() as stack:
        server, control, env = stack.enter_context(shop_sandbox(orders=max(120, moves * 6), days=2, seed=21))
        flow.run(env, flow.EVERYTHING, days=4)
        deals = {int(d["ORIGIN_ID"]): str(d["ID"]) for d in flow.deals(control) if d.get("ORIGINATOR_ID")}
        open_orders = [
            o
            for o in sorted(deals)
            if (order := flow.shop_order(control, o))["STATUS_ID"] == "N" and order["CANCELED"] == "N"
        ]
        if len(open_orders) < moves:
            raise RuntimeError(f"only {len(open_orders)} open orders with deals for {moves} moves")
        chosen = rng.sample(open_orders, moves)
        offsets = sorted(rng.uniform(2, spread_s) for _ in range(moves))
        plan = [(t, deals[o], o, rng.choice(list(STAGE_STATUS))) for t, o in zip(offsets, chosen, strict=True)]
        instance = stack.enter_context(dg.DagsterInstance.ephemeral())
        with environment(env):
            resources: dict[str, Any] = {"bitrix24_shop": flow.resources()["bitrix24_shop"]}
        cursor: str | None = None

        def tick() -> bool:
            nonlocal cursor
            with environment(env):
                context = dg.build_sensor_context(cursor=cursor, resources=resources, instance=instance)
                result = deal_stage_moves.evaluate_tick(context)  # as the daemon does: the cursor kept
            cursor = result.cursor
            return bool(result.run_requests)

        if tick():  # the first look (no cursor): the setup's own history rows
            flow.run(env, flow.BACK)
        gc.collect()
        with _Watcher(server.base_url) as watcher:
            mover = threading.Thread(target=_mover, args=(server.base_url, plan, watcher), daemon=True)
            mover.start()
            deadline = time.monotonic() + spread_s + 240
            next_tick = time.monotonic()
            while time.monotonic() < deadline and (mover.is_alive() or watcher.pending):
                time.sleep(max(0.0, next_tick - time.monotonic()))
                next_tick = time.monotonic() + INTERVAL_S
                if tick():
                    started = time.monotonic()
                    flow.run(env, flow.BACK)
                    run_seconds.append(time.monotonic() - started)
                    gc.collect()  # the run's instance freed here, not in the watcher's thread (SQLite objects)
                    runs += 1
            mover.join(timeout=5)
            time.sleep(0.5)
            latencies = list(watcher.latencies.values())
    missed = moves - len(latencies)
    p95 = _p95(latencies) if latencies else float("inf")
    return [
        Result(
            FLOW,
            "deal moved in Bitrix24 → shop status: p95",
            p95,
            "s",
            "<= 60",
            p95 <= 60 and missed == 0,
            f"p50 {statistics.median(latencies or [0]):.1f} s, max {max(latencies or [0]):.1f} s over {moves} moves"
            f" in {spread_s:.0f} s ({missed} never arrived); sensor every {INTERVAL_S:g} s, {runs} status runs of"
            f" median {statistics.median(run_seconds or [0]):.1f} s (in process: no run launch)",
        )
    ]
