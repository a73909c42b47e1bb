"""Fixtures of the amocrm_sheets tests that need only a small sandbox (one per module, reset per test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from integration_sync.sandbox.server import SandboxConfig, SandboxServer

SMALL: dict[str, Any] = {"seed": 7, "abcp_users": 5, "kaspi_orders": 5, "days": 5, "amocrm_contacts": 5}


@pytest.fixture(scope="module")
def small_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(**SMALL)) as srv:
        yield srv


@pytest.fixture()
def fresh_small_sandbox(small_sandbox: SandboxServer) -> SandboxServer:
    """The module's small sandbox, reset to its seed for this test."""
    assert httpx.post(f"{small_sandbox.base_url}/_sandbox/reset", json=SMALL, timeout=30).status_code == 200
    return small_sandbox
