"""The receiver's receipts (`webhooks.receipts`): `ReceiptLog` and `receipt_stats` on a temp inbox, and
the bitrix order route recording one receipt per answer over real HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from integration_sync.webhooks.app import create_app
from integration_sync.webhooks.inbox import Inbox
from integration_sync.webhooks.receipts import Outcome, ReceiptLog, receipt_stats
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings
from integration_sync_tests.webhooks import test_receiver as payments
from integration_sync_tests.webhooks.test_bitrix_order_route import ORDER, TOKEN, URL, encode, order, post, sign, start

NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
SOURCE = "bitrix_order"
ALMATY = timezone(timedelta(hours=5))


@pytest.fixture
def log(tmp_path: Path) -> Iterator[ReceiptLog]:
    receipts = ReceiptLog(Inbox(tmp_path / "inbox.sqlite"), flush_interval_s=60)
    yield receipts
    receipts.close()


def rows(path: Path) -> list[tuple[int, str, str | None, float | None]]:
    with closing(sqlite3.connect(path)) as conn:
        found = conn.execute("SELECT http_status, outcome, order_id, delivery_lag_s FROM receipts ORDER BY id")
        return [(int(a), str(b), c, d) for a, b, c, d in found.fetchall()]


def test_stats_count_outcomes_and_rate_without_pings(log: ReceiptLog) -> None:
    outcomes: dict[Outcome, tuple[int, int]] = {"accepted": (200, 6), "duplicate": (200, 2), "ping": (200, 5)}
    outcomes |= {
        "refused_auth": (401, 1),
        "refused_size": (413, 1),
        "refused_payload": (422, 3),
        "unavailable": (503, 2),
        "error": (400, 1),
    }
    for outcome, (status, times) in outcomes.items():
        for i in range(times):
            log.record(SOURCE, status, outcome, received_at=NOW + timedelta(seconds=i), latency_ms=1.0)
    log.record("platform_payment", 200, "accepted", received_at=NOW, latency_ms=1.0)  # another route's
    assert log.flush() == 22
    stats = receipt_stats(log.inbox.path, SOURCE, NOW)
    assert (stats.received, stats.accepted, stats.duplicates, stats.pings) == (21, 6, 2, 5)
    assert stats.refused == {"refused_auth": 1, "refused_size": 1, "refused_payload": 3}
    assert stats.errors == 3
    assert stats.success_rate == pytest.approx(8 / 16)  # pings neither succeed nor fail
    assert stats.error_rate == pytest.approx(3 / 16)
    assert stats.as_dict()["success_rate"] == stats.success_rate and stats.as_dict()["refused_size"] == 1


def test_percentiles_are_nearest_rank_and_lag_from_sent_at(log: ReceiptLog) -> None:
    for i in range(1, 201):  # latencies 1..200 ms in shuffled order; lag i seconds for the first 20
        latency = float((i * 37) % 200 + 1)
        sent = NOW - timedelta(seconds=i) if i <= 20 else None
        log.record(SOURCE, 200, "accepted", received_at=NOW, latency_ms=latency, order_id=i, sent_at=sent)
    log.flush()
    stats = receipt_stats(log.inbox.path, SOURCE, NOW - timedelta(minutes=1))
    assert (stats.latency_p50_ms, stats.latency_p95_ms, stats.latency_p99_ms) == (100.0, 190.0, 198.0)
    assert (stats.delivery_lag_p50_s, stats.delivery_lag_p95_s, stats.delivery_lag_max_s) == (10.0, 19.0, 20.0)


def test_window_is_since_inclusive_until_exclusive(log: ReceiptLog) -> None:
    for minute in range(10):
        log.record(SOURCE, 200, "accepted", received_at=NOW + timedelta(minutes=minute), latency_ms=float(minute))
    log.flush()
    stats = receipt_stats(
        log.inbox.path, SOURCE, (NOW + timedelta(minutes=2)).astimezone(ALMATY), NOW + timedelta(minutes=5)
    )
    assert stats.received == 3 and stats.latency_p99_ms == 4.0  # minutes 2, 3 and 4
    assert receipt_stats(log.inbox.path, SOURCE, NOW + timedelta(minutes=9)).received == 1
    with pytest.raises(ValueError, match="timezone-aware"):
        receipt_stats(log.inbox.path, SOURCE, datetime(2026, 12, 1))


def test_nothing_received_gives_no_rates(tmp_path: Path, log: ReceiptLog) -> None:
    for path in (tmp_path / "missing.sqlite", log.inbox.path):  # no file; a file without the table
        stats = receipt_stats(path, SOURCE, NOW)
        assert stats.received == 0 and stats.success_rate is None and stats.error_rate is None
        assert stats.latency_p99_ms is None and stats.delivery_lag_max_s is None
    assert not (tmp_path / "missing.sqlite").exists()  # a read creates nothing
    log.record(SOURCE, 200, "ping", received_at=NOW, latency_ms=1.0)
    log.flush()
    only_pings = receipt_stats(log.inbox.path, SOURCE, NOW)
    assert only_pings.received == 1 and only_pings.success_rate is None


def test_unwritable_file_keeps_receipts_for_the_next_flush(log: ReceiptLog, caplog: pytest.LogCaptureFixture) -> None:
    path = log.inbox.path
    path.unlink()
    path.mkdir()  # a directory where the file was: SQLite cannot open it
    log.record(SOURCE, 503, "unavailable", received_at=NOW, latency_ms=2.0)
    with caplog.at_level(logging.WARNING, logger="integration_sync.webhooks.receipts"):
        assert log.flush() == 0  # logged, not raised
        assert log.flush() == 0
    assert [r.getMessage() for r in caplog.records] == ["webhook receipts not written (1 kept): OperationalError"]
    path.rmdir()
    log.record(SOURCE, 200, "accepted", received_at=NOW, latency_ms=1.0)
    assert log.flush() == 2
    assert [r[1] for r in rows(path)] == ["unavailable", "accepted"]
    log.record(SOURCE, 200, "accepted", received_at=datetime(2026, 12, 1), latency_ms=1.0)
    assert log.flush() == 0  # a naive time is a bug of the caller: logged, not raised into the request


def test_record_writes_nothing_until_the_batch(log: ReceiptLog) -> None:
    for i in range(100):
        log.record(SOURCE, 200, "accepted", received_at=NOW, latency_ms=1.0, order_id=i)
    assert receipt_stats(log.inbox.path, SOURCE, NOW).received == 0  # no write inside a request
    assert log.flush() == 100 and receipt_stats(log.inbox.path, SOURCE, NOW).received == 100


def test_old_receipts_are_pruned(tmp_path: Path) -> None:
    log = ReceiptLog(Inbox(tmp_path / "inbox.sqlite"), flush_interval_s=60, keep_days=30)
    now = datetime.now(UTC)
    log.record(SOURCE, 200, "accepted", received_at=now - timedelta(days=31), latency_ms=1.0, order_id=1)
    log.record(SOURCE, 200, "accepted", received_at=now - timedelta(days=29), latency_ms=1.0, order_id=2)
    log.flush()
    log.close()
    assert [r[2] for r in rows(log.inbox.path)] == ["2"]


def test_background_thread_writes_without_a_flush_call(tmp_path: Path) -> None:
    log = ReceiptLog(Inbox(tmp_path / "inbox.sqlite"), flush_interval_s=0.05)
    started = time.perf_counter()
    for i in range(2000):
        log.record(SOURCE, 200, "accepted", received_at=NOW, latency_ms=1.0, order_id=i)
    per_receipt = (time.perf_counter() - started) / 2000
    assert per_receipt < 0.0005  # an append, not a write: the route's p99 budget is 50 ms
    deadline = time.monotonic() + 10
    while receipt_stats(log.inbox.path, SOURCE, NOW).received < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receipt_stats(log.inbox.path, SOURCE, NOW).received == 2000
    log.close()


# --- through the real route -------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.astimezone(ALMATY).isoformat(timespec="seconds")


def test_route_records_one_receipt_per_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC)
    with start(tmp_path, monkeypatch) as server:
        sent = [
            post(server, {**ORDER, "sent_at": iso(now - timedelta(seconds=5))}),  # accepted
            post(server, {**ORDER, "sent_at": iso(now - timedelta(seconds=5))}),  # duplicate
            post(
                server,
                {
                    **order(ID=77),
                    "sent_at": (now - timedelta(seconds=30)).astimezone(ALMATY).strftime("%d.%m.%Y %H:%M:%S"),
                },
            ),
            post(server, {"event": "test"}),  # the ping
            post(server, ORDER, headers={}),  # unsigned
            post(server, ORDER, headers=sign(b"other")),  # signed another body
            post(server, order(PROPERTIES={"ADDRESS": "x" * 9000})),  # oversize
            post(server, b"{not json"),
            post(server, {**order(PRICE="abc"), "sent_at": "yesterday"}),  # invalid order, unreadable sent_at
        ]
        assert [r.status_code for r in sent] == [200, 200, 200, 200, 401, 401, 413, 422, 422]
        server.app.state.receipts.flush()
        stats = receipt_stats(server.inbox.path, SOURCE, now - timedelta(seconds=1))
        recorded = rows(server.inbox.path)
    assert (stats.received, stats.accepted, stats.duplicates, stats.pings, stats.errors) == (9, 2, 1, 1, 0)
    assert stats.refused == {"refused_auth": 2, "refused_size": 1, "refused_payload": 2}
    assert stats.success_rate == pytest.approx(3 / 8) and stats.error_rate == 0.0
    assert stats.latency_p99_ms is not None and stats.latency_p99_ms > 0
    outcomes = [(status, outcome, order_id) for status, outcome, order_id, _ in recorded]
    assert outcomes == [
        (200, "accepted", "1234"),
        (200, "duplicate", "1234"),
        (200, "accepted", "77"),
        (200, "ping", None),
        (401, "refused_auth", None),
        (401, "refused_auth", None),
        (413, "refused_size", None),
        (422, "refused_payload", None),
        (422, "refused_payload", None),
    ]
    lags = [lag for *_, lag in recorded]
    # 5 s with an offset; 30 s as DD.MM.YYYY in UTC+5 (whole seconds: up to 1 s less); none without a readable sent_at
    assert lags[0] is not None and 5 <= lags[0] < 8 and lags[1] is not None and 5 <= lags[1] < 8
    assert lags[2] is not None and 29 <= lags[2] < 33
    assert lags[3:] == [None] * 6
    assert stats.delivery_lag_max_s == lags[2] and stats.delivery_lag_p50_s == max(lags[0], lags[1])


def test_route_unavailable_inbox_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with start(tmp_path, monkeypatch) as server:
        server.app.state.writer.close()
        server.inbox.path.unlink()
        server.inbox.path.mkdir()  # neither the inbox nor the receipts can be written now
        body = encode(ORDER)
        response = httpx.post(server.url(URL), content=body, headers=sign(body), timeout=10)
        assert response.status_code == 503
        receipts: ReceiptLog = server.app.state.receipts
        assert receipts.flush() == 0
        server.inbox.path.rmdir()  # the disk is back: the kept receipt is written
        assert receipts.flush() == 1
        stats = receipt_stats(server.inbox.path, SOURCE, datetime.now(UTC) - timedelta(minutes=1))
    assert stats.by_outcome == {"unavailable": 1} and stats.error_rate == 1.0 and stats.success_rate == 0.0
    assert TOKEN not in str(rows(server.inbox.path))


def test_receiver_shutdown_writes_queued_receipts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_TOKEN", TOKEN)
    app = create_app(ReceiverSettings(secret="", inbox_path=tmp_path / "inbox.sqlite"))
    body = encode(ORDER)

    async def serve_one() -> int:
        async with app.router.lifespan_context(app):  # startup and shutdown, as uvicorn runs them
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
                return (await client.post(URL, content=body, headers=sign(body))).status_code

    assert asyncio.run(serve_one()) == 200
    assert [row[:3] for row in rows(tmp_path / "inbox.sqlite")] == [(200, "accepted", "1234")]


# --- the payments route ------------------------------------------------------------------------------


def test_payment_route_records_its_receipts(tmp_path: Path) -> None:
    settings = payments.make_settings(tmp_path)
    with ReceiverServer(settings) as server:
        body = json.dumps(payments.payload("pay_lag")).encode()
        answers = [
            payments.post(server, body, headers=payments.sign(body, timestamp=str(int(time.time()) - 2))),
            payments.post(server, payments.payload("pay_p", status="PENDING")),  # skipped by the status rule
            payments.post(server, payments.payload("pay_lag")),  # duplicate
            payments.post(server, payments.payload("pay_x"), headers={"X-Signature": "00"}),
            payments.post(server, payments.payload(code="x" * 10_000)),
            payments.post(server, {"course_order": {}}),
        ]
        assert [a.status_code for a in answers] == [200, 202, 409, 401, 413, 422]
        server.app.state.receipts.flush()
        stats = receipt_stats(server.inbox.path, "platform_payment", datetime.now(UTC) - timedelta(minutes=1))
        recorded = rows(server.inbox.path)
    assert [r[:3] for r in recorded] == [
        (200, "accepted", "pay_lag"),
        (202, "skipped", "pay_p"),
        (409, "duplicate", "pay_lag"),
        (401, "refused_auth", None),
        (413, "refused_size", None),
        (422, "refused_payload", None),
    ]
    lag = recorded[0][3]
    assert lag is not None and 2 <= lag < 5 and [r[3] for r in recorded[1:]] == [None] * 5
    assert stats.success_rate == pytest.approx(3 / 6) and stats.skipped == 1 and stats.error_rate == 0.0
    assert receipt_stats(server.inbox.path, SOURCE, datetime.now(UTC) - timedelta(minutes=1)).received == 0
