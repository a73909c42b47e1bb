"""The inbox: cursor order, duplicate keys, concurrent writers (threads and processes)."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from integration_sync.webhooks.inbox import Inbox


def test_add_and_read_after_in_cursor_order(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox.sqlite")
    for n in range(5):
        assert inbox.add("platform_payment", f"payment:{n}", "2025-01-20", f'{{"n": {n}}}', "accepted", None)
    assert inbox.count() == 5
    first = inbox.read_after(0, 2)
    assert [e.event_key for e in first] == ["payment:0", "payment:1"]
    rest = inbox.read_after(first[-1].id, 100)
    assert [e.event_key for e in rest] == ["payment:2", "payment:3", "payment:4"]
    assert inbox.read_after(rest[-1].id, 100) == []
    assert rest[0].payload == '{"n": 2}' and rest[0].event_date == "2025-01-20" and rest[0].status == "accepted"
    journal = __import__("sqlite3").connect(tmp_path / "inbox.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"


def test_duplicate_key_returns_false_and_keeps_the_original(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox.sqlite")
    assert inbox.add("s", "payment:1", "2025-01-20", "original", "skipped", "status PENDING")
    assert not inbox.add("s", "payment:1", "2025-01-21", "second", "accepted", None)
    event = inbox.get("payment:1")
    assert event is not None and event.payload == "original" and event.status == "skipped"
    assert event.reason == "status PENDING"
    assert inbox.count() == 1 and inbox.count("skipped") == 1
    assert event.redeliveries == 1  # counted, for the event log


def test_a_sensor_reads_ids_and_days_and_a_load_reads_days_with_their_edges(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox.sqlite")
    for n, day in enumerate(["2025-01-19", "2025-01-20", "2025-01-21", "2025-01-22"]):
        inbox.add("s", f"payment:{n}", day, "{}")
    assert inbox.ids_after(1, 2) == [(2, "2025-01-20"), (3, "2025-01-21")]
    assert [e.event_date for e in inbox.read_dates("2025-01-20", "2025-01-21")] == ["2025-01-20", "2025-01-21"]
    edges = inbox.read_dates("2025-01-20", "2025-01-20", before="2025-01-20", after="2025-01-20")
    assert [e.event_date for e in edges] == ["2025-01-19", "2025-01-20", "2025-01-21", "2025-01-22"]
    assert inbox.keys_until(2) == [(1, "payment:0"), (2, "payment:1")]


def test_an_inbox_from_before_the_redelivery_counter_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "inbox.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, source TEXT NOT NULL, event_key TEXT NOT NULL UNIQUE,"
            " received_at TEXT NOT NULL, event_date TEXT NOT NULL, status TEXT NOT NULL, reason TEXT,"
            " payload TEXT NOT NULL)"
        )
        conn.execute("INSERT INTO events VALUES (1, 's', 'payment:1', 'now', '2025-01-20', 'accepted', NULL, '{}')")
    inbox = Inbox(path)
    assert not inbox.add("s", "payment:1", "2025-01-20", "{}")
    assert [e.redeliveries for e in inbox.read_after(0)] == [1]


def test_threads_adding_the_same_keys(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox.sqlite")
    keys = [f"payment:{n % 20}" for n in range(200)]
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda k: inbox.add("s", k, "2025-01-20", "{}"), keys))
    assert sum(results) == 20 and inbox.count() == 20


WRITER = """
import sys
from integration_sync.webhooks.inbox import Inbox
inbox = Inbox(sys.argv[1])
added = sum(inbox.add("s", f"payment:{n}", "2025-01-20", "{}") for n in range(int(sys.argv[2]), int(sys.argv[3])))
print(added)
"""


def test_two_processes_adding_concurrently(tmp_path: Path) -> None:
    path = str(tmp_path / "inbox.sqlite")
    Inbox(path)
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, path, lo, hi], stdout=subprocess.PIPE, text=True)
        for lo, hi in (("0", "300"), ("150", "450"))
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(int(o) for o in outputs) == 450
    inbox = Inbox(path)
    assert inbox.count() == 450
    events = inbox.read_after(0, 1000)
    assert len({e.event_key for e in events}) == 450
    assert [e.id for e in events] == sorted(e.id for e in events)


def test_the_writer_commits_batches_with_one_answer_per_event(tmp_path: Path) -> None:
    from integration_sync.webhooks.inbox import InboxWriter

    inbox = Inbox(tmp_path / "inbox.sqlite")
    writer = InboxWriter(inbox, max_batch=50)
    try:
        keys = [f"payment:{n % 150}" for n in range(300)]
        with ThreadPoolExecutor(32) as pool:
            futures = list(pool.map(lambda k: writer.submit("s", k, "2025-01-20", "{}"), keys))
        ids = [f.result(timeout=30) for f in futures]
    finally:
        writer.close()
    new = [i for i in ids if i is not None]
    assert len(new) == 150 and len(set(new)) == 150  # each key stored once, whatever the batch
    assert inbox.count() == 150 and sum(e.redeliveries for e in inbox.read_after(0, 1000)) == 150


def test_a_writer_that_cannot_write_fails_the_callers_and_recovers(tmp_path: Path) -> None:
    import sqlite3

    import pytest

    from integration_sync.webhooks.inbox import InboxWriter

    inbox = Inbox(tmp_path / "inbox.sqlite")
    good = inbox.path
    inbox.path = tmp_path / "missing" / "dir" / "inbox.sqlite"
    writer = InboxWriter(inbox)
    try:
        with pytest.raises(sqlite3.Error):
            writer.submit("s", "payment:1", "2025-01-20", "{}").result(timeout=10)
        inbox.path = good  # the disk is back: the next event goes in
        assert writer.submit("s", "payment:1", "2025-01-20", "{}").result(timeout=10) == 1
    finally:
        writer.close()
