"""The receiver as operators run it (``python -m integration_sync.webhooks.server``): one log line per
request on stderr, and a bad setting ends with a message that names its variable."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from integration_sync.sandbox.platform import sign
from integration_sync_tests.webhooks.test_receiver import payload

SECRET = "process-secret-key-42"
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "PLATFORM_WEBHOOK_SECRET": SECRET,
            "WEBHOOK_INBOX_PATH": str(tmp_path / "inbox.sqlite"),
            **extra,
        }
    )
    return env


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "integration_sync.webhooks.server"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_each_request_is_logged_without_body_or_secret(tmp_path: Path) -> None:
    port = _free_port()
    proc = _start(_env(tmp_path, WEBHOOK_PORT=str(port)))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/webhook/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.1)
        body = json.dumps(payload("pay_logged_1")).encode()
        assert httpx.post(f"{url}/webhook/payment", content=body, headers=sign(body, SECRET)).status_code == 200
        bad = httpx.post(f"{url}/webhook/payment", content=body, headers={"X-Signature": "ab" * 32})
        assert bad.status_code == 401
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = [line for line in err.splitlines() if "webhook payment" in line]
    assert any("status=200" in x and "payment_id='pay_logged_1'" in x and "latency_ms=" in x for x in lines), err
    assert any("status=401" in x and "latency_ms=" in x for x in lines), err
    assert SECRET not in err and "ivan@example.com" not in err and "course_order" not in err
    assert sign(body, SECRET)["X-Signature"] not in err


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEBHOOK_MAX_BODY_BYTES", "abc"),
        ("WEBHOOK_MAX_BODY_BYTES", "0"),
        ("WEBHOOK_TIMESTAMP_TOLERANCE_S", "5m"),
        ("WEBHOOK_PORT", "http"),
        ("PLATFORM_WEBHOOK_SECRET", ""),
    ],
)
def test_a_bad_setting_names_its_variable(tmp_path: Path, name: str, value: str) -> None:
    proc = _start(_env(tmp_path, **{name: value}))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert name in err and "Traceback" not in err, err
