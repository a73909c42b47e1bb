"""The shop's order webhook receiver at 200 orders/s: the real ``integration-sync webhooks serve``
process (WEBHOOK_TOKEN set), signed bodies of a realistic size (three basket lines, Cyrillic names and
addresses), sent on a fixed schedule from this process over a few keep-alive connections; latency of
every answer client-side, and the receiver's own receipts (`receipt_stats`) beside it.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil

from integration_sync.sandbox.bitrix_shop import SHOP_WEBHOOK_TOKEN, sign
from integration_sync.webhooks.bitrix_order import SOURCE
from integration_sync.webhooks.receipts import receipt_stats
from integration_sync_tests.bench.cms_orders import FLOW
from integration_sync_tests.bench.receiver_process import serve_receiver
from integration_sync_tests.bench.results import Result

PATH = "/webhooks/bitrix/order"
CONNECTIONS = 8
KZ = "+05:00"
NAMES = ("Айгерим Жақсыбекова", "Нұрлан Сәрсенбаев", "Ольга Ким", "Дәурен Төлеуов", "Анна Иванова")
LINES = (
    (101, "Букет «Нежность»", "15000.00"),
    (102, "Розы красные, 25 шт.", "27500.00"),
    (103, "Открытка «С днём рождения»", "1500.00"),
    (104, "Тюльпаны, 15 шт.", "12000.00"),
)


def order_body(order_id: int, at: datetime) -> bytes:
    """A new order as the shop's module sends it: about 1 KB of UTF-8 JSON."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S") + KZ
    lines = [(pid, name, price, 1 + (order_id + i) % 3) for i, (pid, name, price) in enumerate(LINES[order_id % 2 :])]
    basket = [{"PRODUCT_ID": p, "NAME": n, "QUANTITY": q, "PRICE": price} for p, n, price, q in lines[:3]]
    total = sum(float(price) * q for _, _, price, q in lines[:3])
    order = {
        "ID": order_id,
        "ACCOUNT_NUMBER": str(order_id),
        "STATUS_ID": "N",
        "OLD_STATUS_ID": None,
        "PRICE": f"{total:.2f}",
        "CURRENCY": "KZT",
        "USER_ID": 50 + order_id % 400,
        "PAYED": "N",
        "CANCELED": "N",
        "DATE_INSERT": stamp,
        "DATE_UPDATE": stamp,
        "DATE_STATUS": stamp,
        "PROPERTIES": {
            "NAME": NAMES[order_id % len(NAMES)],
            "PHONE": f"+7 701 {order_id % 1000:03d} {order_id % 100:02d} {(order_id // 100) % 100:02d}",
            "EMAIL": f"buyer{order_id}@mail.kz",
            "ADDRESS": "Алматы, мкр. Самал-2, д. 15, кв. 7",
            "DELIVERY": "Курьер",
            "DELIVERY_DATE": (at + timedelta(days=1)).date().isoformat(),
        },
        "BASKET": basket,
    }
    payload = {"event": "order.saved", "is_new": True, "sent_at": stamp, "order": order}
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def _send(url: str, bodies: list[bytes], rate: float) -> tuple[list[float], Counter[int], float, float]:
    """Each body at its slot (i / rate s from the start); latencies in ms, answers by status, the worst
    lag behind the schedule (ms) and the elapsed time (s)."""
    signed = [(body, {"X-Signature": sign(body), "Content-Type": "application/json"}) for body in bodies]
    latencies: list[float] = [0.0] * len(bodies)
    codes: list[int] = [0] * len(bodies)
    lags: list[float] = [0.0] * len(bodies)
    cursor = iter(range(len(bodies)))
    lock = threading.Lock()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.Client(timeout=10, limits=limits) for _ in range(CONNECTIONS)]
    start = time.monotonic() + 0.5

    def work(http: httpx.Client) -> None:
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            slot = start + index / rate
            time.sleep(max(0.0, slot - time.monotonic()))
            sent = time.monotonic()
            lags[index] = (sent - slot) * 1000
            body, headers = signed[index]
            try:
                codes[index] = http.post(url, content=body, headers=headers).status_code
            except httpx.HTTPError:
                codes[index] = -1
            latencies[index] = (time.monotonic() - sent) * 1000

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    for client in clients:
        client.close()
    return latencies, Counter(codes), max(lags), elapsed


def _percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered) + 0.5) - 1))]


def receiver_benchmarks(seconds: float = 10, rate: float = 200) -> list[Result]:
    now = datetime.now(UTC) + timedelta(hours=5)
    count = round(seconds * rate)
    warm = [order_body(500_000 + i, now) for i in range(100)]
    bodies = [order_body(600_000 + i, now) for i in range(count)]
    settings = {"WEBHOOK_TOKEN": SHOP_WEBHOOK_TOKEN}
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve_receiver(Path(tmp), settings, unset=("PLATFORM_WEBHOOK_SECRET",)) as receiver,
    ):
        url, inbox, proc = receiver.base + PATH, receiver.inbox, receiver.process
        _send(url, warm, rate=100)
        since = datetime.now(UTC)
        server = psutil.Process(proc.pid)
        server_cpu, own_cpu = sum(server.cpu_times()[:2]), time.process_time()
        latencies, codes, lag, elapsed = _send(url, bodies, rate)
        server_cpu = sum(server.cpu_times()[:2]) - server_cpu
        own_cpu = time.process_time() - own_cpu
        time.sleep(1.0)  # the receipts are written after the answer
        stats = receipt_stats(inbox, SOURCE, since)
    p50, p95, p99 = (_percentile(latencies, p) for p in (50, 95, 99))
    answers = ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()))
    success = stats.success_rate if stats.success_rate is not None else 0.0
    size = sum(map(len, bodies)) / len(bodies)
    cpu = f"CPU: receiver {server_cpu / elapsed:.2f} core, sender {own_cpu / elapsed:.2f} core"
    return [
        Result(
            FLOW,
            f"receiver at {rate:.0f} orders/s: p99 latency",
            p99,
            "ms",
            "<= 50 ms",
            p99 <= 50 and codes.get(200, 0) == count,
            f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(latencies):.1f} ms; {count} signed orders of"
            f" {size:.0f} B over {CONNECTIONS} connections in {elapsed:.1f} s ({answers}); lag behind schedule"
            f" up to {lag:.0f} ms; {cpu}",
        ),
        Result(
            FLOW,
            "receiver: receipts' success rate",
            success * 100,
            "%",
            "== 100%",
            stats.received == count and success == 1.0,
            f"receipt_stats: {stats.received} received, {stats.accepted} accepted, {stats.duplicates} duplicates,"
            f" {stats.errors} errors; its p99 {stats.latency_p99_ms} ms (in the route, before the answer is sent)",
        ),
    ]
