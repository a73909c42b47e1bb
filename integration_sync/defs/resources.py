"""Dagster resources shared by the flows: the warehouse and one resource per external system.

Small `ConfigurableResource`s whose secrets come from `EnvVar`, so they never show in the UI or in
run config; each hands out a connector client and knows nothing of any flow.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from integration_sync.connectors.abcp import DEFAULT_POLICY as ABCP_POLICY
from integration_sync.connectors.abcp import AbcpClient
from integration_sync.connectors.amocrm import DEFAULT_POLICY as AMOCRM_POLICY
from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.connectors.amocrm_auth import AmoAuth, TokenStore, account_root
from integration_sync.connectors.bitrix24 import Bitrix24Client
from integration_sync.connectors.ratelimit import RateLimiter
from integration_sync.defs.migrations import MIGRATIONS
from integration_sync.sync.warehouse import Warehouse


def data_dir() -> Path:
    """Where the warehouse and shared client state live (INTEGRATION_SYNC_DATA_DIR, default ./data)."""
    return Path(os.environ.get("INTEGRATION_SYNC_DATA_DIR", "data"))


def env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_str(name: str) -> str:
    return os.environ.get(name, "")


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


class WarehouseResource(DuckDBResource):
    """The project's DuckDB file (dagster-duckdb's resource), opened briefly under a file lock."""

    memory_limit: str = "512MB"

    def warehouse(self) -> Warehouse:
        return Warehouse(self.database, MIGRATIONS, memory_limit=self.memory_limit)

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """dagster-duckdb's entry point, routed through the warehouse: migrated, under its file lock,
        and open only for the block (never across an API call)."""
        with self.warehouse().connect() as conn:
            yield conn


class AbcpResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """ABCP admin API: cp/users with the API login and password (sent as its md5)."""

    base_url: str
    userlogin: str
    password: str
    page_size: int = 500
    max_pages: int | None = None
    timeout_s: float = 20.0
    retries: int = 3  # the seed's REQUESTS_RETRIES: attempts after the first
    retry_backoff_s: float = 1.5  # REQUESTS_RETRY_BACKOFF: base of the exponential backoff
    rate_limit_sleep_s: float = 0.2  # RATE_LIMIT_SLEEP: at least this long between requests (0: none)

    def client(self) -> AbcpClient:
        attempts = max(self.retries, 0) + 1
        policy = replace(ABCP_POLICY, timeout=self.timeout_s, max_attempts=attempts, backoff_base=self.retry_backoff_s)
        limiter = None
        if self.rate_limit_sleep_s > 0:
            limiter = RateLimiter(1.0 / self.rate_limit_sleep_s, 1, name="abcp")
        return AbcpClient(
            self.base_url,
            self.userlogin,
            self.password,
            page_size=self.page_size,
            max_pages=self.max_pages,
            policy=policy,
            limiter=limiter,
        )


def account_hash(url: str) -> str:
    """A short, stable name for the account (amoCRM) or portal (Bitrix24) at ``url``: its host."""
    return hashlib.sha256(urlsplit(url.strip()).netloc.encode()).hexdigest()[:12]


class Bitrix24Resource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """A Bitrix24 portal through an inbound webhook; the request budget is shared by every process
    calling the same portal (one rate state file per portal)."""

    webhook_url: str
    rate_per_s: float = 2.0
    burst: int = 50
    state_dir: str = "data/state"

    def client(self) -> Bitrix24Client:
        name = "bitrix24-" + account_hash(self.webhook_url)
        limiter = RateLimiter(self.rate_per_s, self.burst, state_path=Path(self.state_dir) / f"{name}.json", name=name)
        return Bitrix24Client(self.webhook_url, limiter=limiter)


LEGACY_AMOCRM_TOKENS = "amocrm-tokens.sqlite"  # the one store of every account before issue 10


class AmoCrmResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """amoCRM through OAuth (tokens kept in the state store) or a long-lived token; 7 req/s shared.

    The token store and the rate state are files per account (named by the base URL's host), so
    flows on one account share its pair and budget, and two accounts never do."""

    base_url: str
    client_id: str = ""
    client_secret: str = ""
    redirect_uri: str = ""
    access_token: str = ""
    refresh_token: str = ""
    long_lived_token: str = ""
    rate_per_s: float = 7.0
    state_dir: str = "data/state"
    retry_attempts: int = 5
    retry_backoff_s: float = 1.0

    def token_store_path(self) -> Path:
        return Path(self.state_dir) / f"amocrm-{account_hash(account_root(self.base_url))}-tokens.sqlite"

    def rate_state_path(self) -> Path:
        return Path(self.state_dir) / f"amocrm-{account_hash(account_root(self.base_url))}-rate.json"

    def client(self) -> AmoCrmClient:
        store = TokenStore(self.token_store_path())
        auth = AmoAuth(
            base_url=self.base_url,
            client_id=self.client_id,
            client_secret=self.client_secret,
            redirect_uri=self.redirect_uri,
            initial_access_token=self.access_token,
            initial_refresh_token=self.refresh_token,
            long_lived_token=self.long_lived_token or None,
            store=store,
        )
        if auth.mode == "oauth":
            # an installed deployment keeps its OAuth pair: the pre-issue-10 single store is adopted once
            store.adopt(Path(self.state_dir) / LEGACY_AMOCRM_TOKENS, auth.account)
        policy = replace(AMOCRM_POLICY, max_attempts=self.retry_attempts, backoff_base=self.retry_backoff_s)
        return AmoCrmClient(
            self.base_url,
            auth=auth,
            rate_per_s=self.rate_per_s,
            rate_state_path=self.rate_state_path(),
            policy=policy,
        )


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
        retries=env_int("REQUESTS_RETRIES", 3) or 0,
        retry_backoff_s=env_float("REQUESTS_RETRY_BACKOFF", 1.5),
        rate_limit_sleep_s=env_float("RATE_LIMIT_SLEEP", 0.2),
    )


def account_var(prefix: str, name: str) -> str:
    """The variable a flow's account setting comes from: ``{prefix}{name}`` when it is set and not
    empty, else the shared default ``name``."""
    if prefix and os.environ.get(prefix + name, "").strip():
        return prefix + name
    return name


def bitrix24_resource(prefix: str = "") -> Bitrix24Resource:
    """The Bitrix24 portal of a flow: ``{prefix}B24_*`` where set, else the shared ``B24_*``."""

    def var(name: str) -> str:
        return account_var(prefix, name)

    return Bitrix24Resource(
        webhook_url=dg.EnvVar(var("B24_WEBHOOK_URL")),
        rate_per_s=env_float(var("B24_RATE_PER_S"), 2.0),
        burst=env_int(var("B24_BURST"), 50) or 50,
        state_dir=str(data_dir() / "state"),
    )


def amocrm_resource(prefix: str = "") -> AmoCrmResource:
    """The amoCRM account of a flow: ``{prefix}AMO_*`` where set, else the shared ``AMO_*``. A flow with
    its own ``{prefix}AMO_BASE_URL`` takes its credentials only from its own variables: another
    account's tokens are never sent to its host."""

    def var(name: str) -> str:
        return account_var(prefix, name)

    own = var("AMO_BASE_URL") != "AMO_BASE_URL"

    def credential(name: str) -> str:
        return prefix + name if own else name

    def secret(name: str) -> str | dg.EnvVar:
        return dg.EnvVar(credential(name)) if env_str(credential(name)) else ""

    return AmoCrmResource(
        base_url=dg.EnvVar(var("AMO_BASE_URL")),
        client_id=env_str(credential("AMO_CLIENT_ID")),
        client_secret=secret("AMO_CLIENT_SECRET"),
        redirect_uri=env_str(credential("AMO_REDIRECT_URI")),
        access_token=secret("AMO_ACCESS_TOKEN"),
        refresh_token=secret("AMO_REFRESH_TOKEN"),
        long_lived_token=secret("AMO_LONG_LIVED_TOKEN"),
        rate_per_s=env_float(var("AMO_RATE_PER_S"), 7.0),
        state_dir=str(data_dir() / "state"),
        retry_attempts=env_int(var("AMO_HTTP_RETRIES"), 5) or 5,
        retry_backoff_s=env_float(var("AMO_HTTP_BACKOFF_S"), 1.0),
    )
