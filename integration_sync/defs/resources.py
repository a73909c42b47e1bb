"""Dagster resources shared by the flows: the warehouse and one resource per external system.

Small `ConfigurableResource`s whose secrets come from `EnvVar`, so they never show in the UI or in
run config; each hands out a connector client and knows nothing of any flow.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
from dagster_duckdb import DuckDBResource

from integration_sync.connectors.abcp import AbcpClient
from integration_sync.connectors.bitrix24 import Bitrix24Client
from integration_sync.connectors.http import HttpPolicy
from integration_sync.connectors.ratelimit import RateLimiter
from integration_sync.defs.migrations import MIGRATIONS
from integration_sync.sync.warehouse import Warehouse


def data_dir() -> Path:
    """Where the warehouse and shared client state live (INTEGRATION_SYNC_DATA_DIR, default ./data)."""
    return Path(os.environ.get("INTEGRATION_SYNC_DATA_DIR", "data"))


def env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


class WarehouseResource(DuckDBResource):
    """The project's DuckDB file (dagster-duckdb's resource), opened briefly under a file lock."""

    memory_limit: str = "512MB"

    def warehouse(self) -> Warehouse:
        return Warehouse(self.database, MIGRATIONS, memory_limit=self.memory_limit)


class AbcpResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """ABCP admin API: cp/users with the API login and password (sent as its md5)."""

    base_url: str
    userlogin: str
    password: str
    page_size: int = 500
    max_pages: int | None = None
    timeout_s: float = 20.0

    def client(self) -> AbcpClient:
        return AbcpClient(
            self.base_url,
            self.userlogin,
            self.password,
            page_size=self.page_size,
            max_pages=self.max_pages,
            policy=HttpPolicy(timeout=self.timeout_s),
        )


class Bitrix24Resource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """A Bitrix24 portal through an inbound webhook; the request budget is shared by every process."""

    webhook_url: str
    rate_per_s: float = 2.0
    burst: int = 50
    state_dir: str = "data/state"

    def client(self) -> Bitrix24Client:
        portal = urlsplit(self.webhook_url).netloc
        name = "bitrix24-" + hashlib.sha256(portal.encode()).hexdigest()[:12]
        limiter = RateLimiter(self.rate_per_s, self.burst, state_path=Path(self.state_dir) / f"{name}.json", name=name)
        return Bitrix24Client(self.webhook_url, limiter=limiter)


def warehouse_resource() -> WarehouseResource:
    path = os.environ.get("WAREHOUSE_PATH") or str(data_dir() / "warehouse.duckdb")
    return WarehouseResource(database=path, memory_limit=os.environ.get("WAREHOUSE_MEMORY_LIMIT") or "512MB")


def abcp_resource() -> AbcpResource:
    return AbcpResource(
        base_url=dg.EnvVar("ABCP_BASE_URL"),
        userlogin=dg.EnvVar("ABCP_USERLOGIN"),
        password=dg.EnvVar("ABCP_USERPSW"),
        page_size=env_int("ABCP_LIMIT", 500) or 500,
        max_pages=env_int("ABCP_MAX_PAGES", None),
        timeout_s=env_float("REQUESTS_TIMEOUT", 20.0),
    )


def bitrix24_resource() -> Bitrix24Resource:
    return Bitrix24Resource(
        webhook_url=dg.EnvVar("B24_WEBHOOK_URL"),
        rate_per_s=env_float("B24_RATE_PER_S", 2.0),
        burst=env_int("B24_BURST", 50) or 50,
        state_dir=str(data_dir() / "state"),
    )
