"""The real receiver process (`integration-sync webhooks serve`) for the receiver benchmarks: started on a
free port with the given settings, waited for until it answers, stopped with SIGINT as an operator would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class ReceiverProcess:
    base: str
    inbox: Path
    log: Path
    process: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_receiver(tmp: Path, settings: Mapping[str, str], unset: Sequence[str] = ()) -> Iterator[ReceiverProcess]:
    """The receiver with `settings` (its inbox in `tmp`), without the variables of `unset`."""
    port = free_port()
    inbox, log = tmp / "inbox.sqlite", tmp / "receiver.log"
    env = {**os.environ, **settings, "WEBHOOK_INBOX_PATH": str(inbox)}
    for name in unset:
        env.pop(name, None)
    command = [str(Path(sys.executable).parent / "integration-sync"), "webhooks", "serve", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the receiver did not start:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/webhook/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield ReceiverProcess(base, inbox, log, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
