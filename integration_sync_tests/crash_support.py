"""A run SIGKILLed at a chosen write, for every flow's `test_crash.py`: the emulator commits the write and
holds its answer (`commit_then_drop` with `hold_ms`), and the child process running the push is killed
while it waits — no cleanup, as a lost machine or the OOM killer would leave it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def held_writes(control: httpx.Client, service: str) -> int:
    """How many writes the service's `commit_then_drop` fault has committed and held so far."""
    state: Any = control.post("/_sandbox/faults", json={}).json()[service]  # {} reads the state only
    return int((state.get("commit_then_drop") or {}).get("fired", 0))


def kill_at_held_write(
    control: httpx.Client,
    service: str,
    fault: Mapping[str, Any],
    script: str,
    *args: str,
    timeout_s: float = 120.0,
) -> int:
    """Run `script` (Python source, with `args`) in a child process and SIGKILL it once `service` holds the
    chosen write's answer; the fault is removed afterwards. Returns the writes held (1)."""
    control.post("/_sandbox/faults", json={service: {"commit_then_drop": dict(fault)}}).raise_for_status()
    child = subprocess.Popen([sys.executable, "-c", script, *args], env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + timeout_s
        while not held_writes(control, service):
            assert child.poll() is None, "the run ended before its write was held"
            assert time.monotonic() < deadline, "the run never reached the chosen write"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    held = held_writes(control, service)
    control.post("/_sandbox/faults", json={service: None}).raise_for_status()
    return held
