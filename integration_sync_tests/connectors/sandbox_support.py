"""Helpers shared by the connector tests that run against the sandbox emulators."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from integration_sync.connectors.http import HttpPolicy

# real retry semantics, test-sized waits
FAST_POLICY = HttpPolicy(timeout=10.0, connect_timeout=5.0, max_attempts=5, backoff_base=0.01, backoff_max=0.05)


@dataclass
class Sandbox:
    base_url: str
    env: dict[str, str]

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.base_url}/_sandbox/{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json() if response.content else None

    def stats(self, service: str) -> dict[str, Any]:
        data = self.control("GET", "stats")
        if isinstance(data, dict) and isinstance(data.get("services"), dict):
            data = data["services"]
        assert isinstance(data, dict) and service in data, data
        result: dict[str, Any] = data[service]
        return result

    def faults(self, spec: dict[str, Any]) -> None:
        self.control("POST", "faults", spec)

    def reset(self) -> None:
        self.control("POST", "reset", {})


@contextmanager
def running_sandbox(**config: Any) -> Iterator[Sandbox]:
    from integration_sync.sandbox.env import sandbox_env
    from integration_sync.sandbox.server import SandboxConfig, SandboxServer

    with SandboxServer(SandboxConfig(**config)) as server:
        base = str(server.base_url).rstrip("/")
        yield Sandbox(base, dict(sandbox_env(base)))
