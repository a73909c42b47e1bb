"""Shared fixtures: a real sandbox on loopback, a warehouse in a temp dir, Dagster resources for them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("DAGSTER_HOME", "")  # tests use ephemeral instances
os.environ.pop("DAGSTER_HOME", None)


@pytest.fixture()
def sandbox() -> Iterator[Any]:
    from integration_sync.sandbox.server import SandboxConfig, SandboxServer

    with SandboxServer(SandboxConfig(seed=7, abcp_users=40, days=5)) as server:
        yield server


@pytest.fixture()
def sandbox_env(sandbox: Any) -> dict[str, str]:
    from integration_sync.sandbox.env import sandbox_env as build

    return build(sandbox.base_url)


@pytest.fixture()
def control(sandbox: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.base_url, timeout=30) as client:
        yield client


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
