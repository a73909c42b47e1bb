"""amoCRM ↔ sheet latency with a real `dagster-daemon` (temp DAGSTER_HOME) and the webhook receiver, the
seller's status hook registered to it:

- a lead moved in amoCRM (an operator's move: amoCRM posts the hook) → its row's «Статус» shows the new
  display (p95 ≤ 10 s);
- «Заказ №» typed in a row → the lead has the number in amoCRM (p95 ≤ SYNC_POLL_SECONDS + 10 s).
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import httpx

from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.webhook_register import on_start
from integration_sync.defs.runs import ACTIVE
from integration_sync.sandbox.env import sandbox_env
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings
from integration_sync_tests.amocrm_sheets.flow import AMO_TO_SHEET, cells, edit, flow_env, run
from integration_sync_tests.bench.amocrm_sheets import (
    FLOW,
    SENT,
    STATUS_COL,
    _all_to_trigger,
    _in_progress_rows,
    _sandbox,
    order_no,
)
from integration_sync_tests.bench.payments_push import _start_daemon
from integration_sync_tests.bench.results import Result
from integration_sync_tests.dagster_support import environment

POLL_SECONDS = 10
TIMEOUT_S = 120.0
ACTIVE_STATUSES = {status.value for status in ACTIVE}


def _wait(done: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> float | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return time.monotonic()
        time.sleep(0.2)
    return None


def _runs(home: Path, query: str, *args: object) -> list[tuple[str, str]]:
    """(job, status) of the daemon's runs, read from its run storage (SQLite under DAGSTER_HOME)."""
    path = home / "history" / "runs.db"
    if not path.exists():
        return []
    with closing(sqlite3.connect(path, timeout=30)) as conn:
        return [(str(job), str(status)) for job, status in conn.execute(query, args)]


def _wait_idle(home: Path, timeout_s: float = 180) -> None:
    """Until the daemon has no queued or running run (twice in a row)."""
    quiet = 0
    deadline = time.monotonic() + timeout_s
    while quiet < 2 and time.monotonic() < deadline:
        runs = _runs(home, "SELECT pipeline_name, status FROM runs")
        busy = [r for r in runs if r[1] in ACTIVE_STATUSES]
        quiet = 0 if busy or not runs else quiet + 1
        time.sleep(0.5)


def _runs_since(home: Path, since: float) -> tuple[Counter[str], float, float]:
    """The runs the daemon launched since `since` (Unix time) by job, and their median wait (created →
    started: the queue and the run process's start) and duration (started → ended), in seconds."""
    path = home / "history" / "runs.db"
    created_after = datetime.fromtimestamp(since, UTC).replace(tzinfo=None)
    with closing(sqlite3.connect(path, timeout=30)) as conn:
        rows = conn.execute("SELECT pipeline_name, create_timestamp, start_time, end_time FROM runs").fetchall()
    jobs: Counter[str] = Counter()
    waits, durations = [], []
    for job, created_at, start, end in rows:
        created = datetime.fromisoformat(str(created_at)).replace(tzinfo=UTC)
        if created.replace(tzinfo=None) < created_after:
            continue
        jobs[str(job)] += 1
        if start:
            waits.append(float(start) - created.timestamp())
        if start and end:
            durations.append(float(end) - float(start))
    return jobs, statistics.median(waits or [0.0]), statistics.median(durations or [0.0])


def _status_of(control: httpx.Client, lead_id: int) -> str:
    for row in cells(control)[1:]:
        if row and row[0] == str(lead_id):
            return row[STATUS_COL] if len(row) > STATUS_COL else ""
    return ""


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def latency_benchmarks(count: int = 8, gap_s: float = 2.0) -> list[Result]:
    moves: list[float] = []
    typed: list[float] = []
    with (
        _sandbox(leads=120, days=4) as (server, control),
        tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp,
    ):
        data, home = Path(tmp) / "data", Path(tmp) / "dagster_home"
        data.mkdir()
        home.mkdir()
        # the initial rows are materialized here, before the daemon starts: no initial_sync run
        env = flow_env(
            sandbox_env(server.base_url), data, SYNC_POLL_SECONDS=str(POLL_SECONDS), INITIAL_SYNC_DATE_FROM=""
        )
        _all_to_trigger(server, control)
        run(env, AMO_TO_SHEET, days=6)  # the initial rows, before the daemon starts
        free = _in_progress_rows(cells(control))
        amo = server.sandbox.amocrm_seller.account.leads
        with environment(env), ReceiverServer(ReceiverSettings.from_env(env)) as receiver:  # routes read os.environ
            env["SHEETS_WEBHOOK_BASE_URL"] = receiver.base_url
            registered = on_start(env)
            assert registered and "not registered" not in registered[0], registered
            daemon = _start_daemon(env, home)
            try:

                def move(lead_id: int) -> float | None:
                    body = {"status_id": SENT[amo[lead_id].pipeline_id]}
                    control.post(f"/_sandbox/amocrm-seller/leads/{lead_id}/status", json=body).raise_for_status()
                    return _wait(lambda: _status_of(control, lead_id) == layout.AT_COURIER)

                def type_order(row: int, lead_id: int) -> float | None:
                    edit(control, cell=f"{layout.letter(layout.ORDER_NO)}{row}", value=f"L-{lead_id}")
                    return _wait(lambda: order_no(server, lead_id) == f"L-{lead_id}")

                # warm-up: the daemon's first ticks, its first runs (the sheet's first poll launches one)
                if move(free.pop()[1]) is None or type_order(*free.pop()) is None:
                    raise RuntimeError("the daemon never synced the warm-up lead and edit")
                _wait_idle(home)  # the first polls' catch-up runs (leads updated in the last hour) done
                measured_from = time.time()
                for _ in range(count):
                    time.sleep(gap_s)
                    sent = time.monotonic()
                    moves.append((move(free.pop()[1]) or sent + 999) - sent)
                for _ in range(count):
                    time.sleep(gap_s)
                    sent = time.monotonic()
                    typed.append((type_order(*free.pop()) or sent + 999) - sent)
                runs, wait_s, run_s = _runs_since(home, measured_from)
            finally:
                daemon.terminate()
                daemon.wait(timeout=60)
    move_p95, typed_p95 = _p95(moves), _p95(typed)
    launched = ", ".join(f"{n} {job}" for job, n in sorted(runs.items()))
    return [
        Result(
            FLOW,
            "lead moved in amoCRM → row's status, daemon running: p95",
            move_p95,
            "s",
            "<= 10",
            move_p95 <= 10,
            f"p50 {statistics.median(moves):.1f} s, max {max(moves):.1f} s over {count} moves, "
            f"{gap_s:g} s apart; runs while measuring: {launched} (one at a time per flow), median "
            f"{wait_s:.1f} s from created to started (queue + the run's own process), {run_s:.1f} s running",
        ),
        Result(
            FLOW,
            "«Заказ №» typed → lead in amoCRM, daemon running: p95",
            typed_p95,
            "s",
            f"<= {POLL_SECONDS + 10}",
            typed_p95 <= POLL_SECONDS + 10,
            f"p50 {statistics.median(typed):.1f} s, max {max(typed):.1f} s over {count} edits "
            f"(SYNC_POLL_SECONDS={POLL_SECONDS})",
        ),
    ]
