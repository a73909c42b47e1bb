"""Token-bucket limiter: waits computed (not spun), penalties, threads and several processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.connectors.amocrm_auth import AmoAuth
from integration_sync.connectors.ratelimit import RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_burst_is_free_then_each_token_waits_the_computed_time() -> None:
    fake = FakeTime()
    limiter = RateLimiter(2.0, 3, name="t", clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        assert limiter.acquire() == 0.0
    assert fake.sleeps == []
    assert limiter.acquire() == pytest.approx(0.5)
    assert limiter.acquire() == pytest.approx(0.5)
    assert fake.sleeps == [pytest.approx(0.5), pytest.approx(0.5)]  # one sleep per wait: no spinning


def test_tokens_refill_with_time_up_to_burst() -> None:
    fake = FakeTime()
    limiter = RateLimiter(10.0, 5, name="t", clock=fake.clock, sleep=fake.sleep)
    for _ in range(5):
        limiter.acquire()
    fake.now += 100  # a long idle period refills only up to the burst
    assert limiter.available() == pytest.approx(5)
    for _ in range(5):
        limiter.acquire()
    assert fake.sleeps == []
    limiter.acquire()
    assert fake.sleeps == [pytest.approx(0.1)]


def test_penalize_blocks_and_drains_the_bucket() -> None:
    fake = FakeTime()
    limiter = RateLimiter(2.0, 10, name="t", clock=fake.clock, sleep=fake.sleep)
    limiter.penalize(3.0)
    assert limiter.blocked_for() == pytest.approx(3.0)
    assert limiter.acquire() == pytest.approx(3.0)
    assert limiter.blocked_for() == 0.0


def test_a_penalty_imposed_while_waiting_is_honoured() -> None:
    fake = FakeTime()
    calls: list[float] = []
    limiters: list[RateLimiter] = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        fake.now += seconds
        if len(calls) == 1:  # another holder got throttled while we slept
            limiters[0].penalize(5.0)

    limiter = RateLimiter(1.0, 1, name="t", clock=fake.clock, sleep=sleep)
    limiters.append(limiter)
    limiter.acquire()
    waited = limiter.acquire()
    assert calls[0] == pytest.approx(1.0)
    assert calls[1] == pytest.approx(5.0)
    assert waited == pytest.approx(6.0)


# -- the service's window (amoCRM: at most 7 requests in any second, as amoCRM counts them) --------


def test_window_counts_a_request_until_its_answer_plus_the_window() -> None:
    fake = FakeTime()
    limiter = RateLimiter(100.0, 10, name="t", clock=fake.clock, sleep=fake.sleep, window=(2, 1.0))
    start = fake.now
    limiter.acquire()
    fake.now += 0.4  # a slow answer: the service may have counted it as late as now
    limiter.finished()
    limiter.acquire()
    fake.now += 0.1
    limiter.finished()
    # the third may not share a second with the first as the service saw it: 1 s after its answer,
    # not 1 s after it was sent (start + 1.0), which the token bucket alone would allow
    assert limiter.acquire() == pytest.approx(1.4 - 0.5)
    assert fake.now == pytest.approx(start + 1.4)


def test_window_a_request_never_reported_finished_counts_for_hold_s() -> None:
    fake = FakeTime()
    limiter = RateLimiter(100.0, 10, name="t", clock=fake.clock, sleep=fake.sleep, window=(1, 1.0), hold_s=5.0)
    start = fake.now
    limiter.acquire()  # its caller crashed before the answer: it still counts, for hold_s at most
    limiter.acquire()
    assert fake.now == pytest.approx(start + 5.0)


def test_window_is_shared_through_the_state_file(tmp_path: Path) -> None:
    fake = FakeTime()
    path = tmp_path / "amo-rate.json"
    first, second = (
        RateLimiter(100.0, 10, name=name, state_path=path, clock=fake.clock, sleep=fake.sleep, window=(1, 1.0))
        for name in ("a", "b")
    )
    start = fake.now
    first.acquire()
    fake.now += 0.2
    first.finished()
    second.acquire()  # another process: waits for the first's request to leave the window
    assert fake.now == pytest.approx(start + 1.2)
    # the first has left the window; the second is held until its answer (hold_s at most)
    assert [until for _, until in json.loads(path.read_text())["recent"]] == [pytest.approx(fake.now + 60.0)]


def test_the_amocrm_client_keeps_amocrms_window(tmp_path: Path) -> None:
    base = "https://example.amocrm.ru"
    with AmoCrmClient(base, auth=AmoAuth(base, long_lived_token="t0ken"), rate_state_path=tmp_path / "r.json") as amo:
        assert amo.limiter.window == (7, 1.0)  # amoCRM's limit: 7 requests in any second


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 1, name="t")
    with pytest.raises(ValueError):
        RateLimiter(1, 0, name="t")
    with pytest.raises(ValueError):
        RateLimiter(1, 1, name="t", window=(0, 1.0))


def _assert_within_rate(stamps: list[float], rate: float, burst: int, slack: float = 1.0) -> None:
    """In any window [t_i, t_j] at most burst + rate * (t_j - t_i) acquisitions (+ slack)."""
    stamps = sorted(stamps)
    for i in range(len(stamps)):
        for j in range(i, len(stamps)):
            allowed = burst + rate * (stamps[j] - stamps[i]) + slack
            assert j - i + 1 <= allowed, f"{j - i + 1} acquisitions in {stamps[j] - stamps[i]:.3f} s"


def test_threads_sharing_one_limiter_stay_within_rate() -> None:
    limiter = RateLimiter(50.0, 2, name="t")
    stamps: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(6):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started >= (24 - 2) / 50 - 0.02
    _assert_within_rate(stamps, 50.0, 2)


WORKER = textwrap.dedent(
    """
    import json, sys, time
    from integration_sync.connectors.ratelimit import RateLimiter
    state, out, start_at, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    limiter = RateLimiter(20.0, 2, state_path=state, name="shared")
    time.sleep(max(0.0, start_at - time.time()))
    stamps = []
    for _ in range(count):
        limiter.acquire()
        stamps.append(time.time())
    with open(out, "w") as f:
        json.dump(stamps, f)
    """
)


def test_two_processes_share_one_budget_through_the_state_file(tmp_path: Path) -> None:
    state = tmp_path / "budget" / "amocrm.json"
    count, rate, burst = 15, 20.0, 2
    start_at = time.time() + 1.5  # both processes start acquiring at the same moment
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(state), str(tmp_path / f"out{n}.json"), str(start_at), str(count)]
        )
        for n in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=30) == 0
    per_process = [json.loads((tmp_path / f"out{n}.json").read_text()) for n in range(2)]
    stamps = sorted(per_process[0] + per_process[1])
    assert len(stamps) == 2 * count
    # the processes really ran at the same time (their acquisitions interleave)...
    assert min(per_process[0]) < max(per_process[1]) and min(per_process[1]) < max(per_process[0])
    # ...and together stayed within one budget: alone each would finish in (15 - 2) / 20 s
    assert stamps[-1] - start_at >= (2 * count - burst) / rate - 0.05
    _assert_within_rate(stamps, rate, burst)
