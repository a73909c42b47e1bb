"""`integration-sync webhooks serve` with a bad setting: one line naming the variable, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "integration-sync"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WEBHOOK_PORT": "eighty"}, "WEBHOOK_PORT"),
        ({"WEBHOOK_MAX_BODY_BYTES": "abc", "PLATFORM_WEBHOOK_SECRET": "s3cret-value"}, "WEBHOOK_MAX_BODY_BYTES"),
        ({"PLATFORM_WEBHOOK_SECRET": ""}, "PLATFORM_WEBHOOK_SECRET"),
    ],
)
def test_a_bad_receiver_setting_is_named(env: dict[str, str], named: str, tmp_path: Path) -> None:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBHOOK_", "PLATFORM_"))}
    run_env.update(env, INTEGRATION_SYNC_DATA_DIR=str(tmp_path))
    done = subprocess.run(
        [str(BIN), "webhooks", "serve", "--port", "0"] if named != "WEBHOOK_PORT" else [str(BIN), "webhooks", "serve"],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert named in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "s3cret-value" not in done.stderr
