"""Payment webhook receiver benchmarks: the real ``integration-sync webhooks serve`` process driven by the
platform emulator from this process at a target rate (a few re-sends included).

- sustained accepted requests/s and p99 latency of every answer;
- lost: payments answered 200 that are not in the inbox; duplicated: inbox rows beyond one per payment.

The load generator and the receiver share the machine: the notes give each one's CPU use.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path

import psutil

from integration_sync.sandbox.platform import PLATFORM_WEBHOOK_SECRET, run_sends, send_payments
from integration_sync_tests.bench.receiver_process import serve_receiver
from integration_sync_tests.bench.results import Result

FLOW = "payments_amocrm"
DUPLICATES = 0.02
WARMUP = 200
# Enough connections for 600/s at ~25 ms each; more sender threads mostly measure the sender's own
# GIL contention (32 threads added tens of ms to every latency on the 2-core bench machine).
CONNECTIONS = 16


def _stored_keys(inbox: Path) -> list[str]:
    with closing(sqlite3.connect(inbox)) as conn:
        return [row[0] for row in conn.execute("SELECT event_key FROM events")]


def receiver_benchmarks(seconds: float = 10, rate: float = 600) -> list[Result]:
    settings = {"PLATFORM_WEBHOOK_SECRET": PLATFORM_WEBHOOK_SECRET}
    with tempfile.TemporaryDirectory() as tmp, serve_receiver(Path(tmp), settings) as receiver:
        url = f"{receiver.base}/webhook/payment"
        warm = send_payments(url, PLATFORM_WEBHOOK_SECRET, WARMUP, concurrency=8, seed=1)
        server = psutil.Process(receiver.process.pid)
        server_cpu, own_cpu = sum(server.cpu_times()[:2]), time.process_time()
        report = run_sends(
            url,
            PLATFORM_WEBHOOK_SECRET,
            round(seconds * rate),
            rate=rate,
            duplicates=DUPLICATES,
            concurrency=CONNECTIONS,
            seed=2,
        )
        server_cpu = sum(server.cpu_times()[:2]) - server_cpu
        own_cpu = time.process_time() - own_cpu
        keys = _stored_keys(receiver.inbox)
    summary = report.summary()
    valid = {f"payment:{p.payment_id}" for p in report.payments}
    accepted = {f"payment:{pid}" for pid in report.accepted_ids}
    stored = set(keys)
    lost = len(accepted - stored)
    # rows that are not the one copy of a payment sent validly (warm-up or this run)
    duplicated = len(keys) - len(stored & valid) - int(warm["unique_accepted"])
    elapsed = report.elapsed_s
    latency = summary["latency_ms"]
    answers = ", ".join(f"{code}: {n}" for code, n in summary["status_counts"].items())
    cpu = f"CPU: receiver {server_cpu / elapsed:.2f} core, sender {own_cpu / elapsed:.2f} core"
    accepted_rate = float(summary["accepted_per_s"])
    p99 = float(latency["p99"] or 0.0)
    return [
        Result(
            FLOW,
            "receiver: accepted/s",
            accepted_rate,
            "/s",
            ">= 500/s",
            accepted_rate >= 500,
            f"{rate:.0f}/s offered for {seconds:g} s over {CONNECTIONS} connections ({DUPLICATES:.0%} re-sends); "
            f"{answers}; "
            f"{summary['transport_errors']} transport errors; lag behind schedule up to "
            f"{summary.get('schedule_lag_ms_max', 0):.0f} ms; {cpu}",
        ),
        Result(
            FLOW,
            "receiver: p99 latency",
            p99,
            "ms",
            "<= 50 ms",
            latency["p99"] is not None and p99 <= 50,
            f"p50 {latency['p50']} ms, p90 {latency['p90']} ms, max {latency['max']} ms",
        ),
        Result(
            FLOW,
            "receiver: lost payments",
            lost,
            "",
            "== 0",
            lost == 0,
            f"{len(accepted)} answered 200, {len(stored & accepted)} of them in the inbox",
        ),
        Result(
            FLOW,
            "receiver: duplicated rows",
            duplicated,
            "",
            "== 0",
            duplicated == 0,
            f"{len(keys)} inbox rows for {len(valid)} payments (+{warm['unique_accepted']} warm-up)",
        ),
    ]
