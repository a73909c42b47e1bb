"""Environment variables that point every connector at a running sandbox: the accounts' settings here,
each flow's own settings from its plugin (`FlowPlugin.sandbox_env`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from integration_sync.lib.registry import plugins
from integration_sync.sandbox.abcp import ABCP_USERLOGIN, ABCP_USERPSW_PLAIN
from integration_sync.sandbox.amocrm_schema import amocrm_env
from integration_sync.sandbox.bitrix24 import B24_USER_ID, B24_WEBHOOK_CODE
from integration_sync.sandbox.kaspi import KASPI_API_PATH, KASPI_AUTH_VALUE
from integration_sync.sandbox.telegram import alerts_env

DEFAULT_RECEIVER_URL = "http://127.0.0.1:8001"
# How many days back `integration-sync up`'s sandbox serves data (`sandbox serve --days`).
SANDBOX_DAYS = 30
# The flows' first partitions: in the sandbox, the first day of its data, so "the last days" are a short
# list to choose from, not every day since 2024.
START_DATE_VARS = ("ABCP_START_DATE", "KASPI_START_DATE", "PAYMENTS_START_DATE", "SHEETS_START_DATE", "CMS_START_DATE")


def sandbox_start_date(days: int = SANDBOX_DAYS, now: datetime | None = None) -> str:
    """The first day of a sandbox serving `days` days back, a day earlier so every zone's first
    data day (Moscow, Kazakhstan) is a partition."""
    return ((now or datetime.now(UTC)) - timedelta(days=days + 1)).date().isoformat()


def sandbox_env(base_url: str, receiver_url: str | None = None, days: int | None = None) -> dict[str, str]:
    """Connector settings for the sandbox at ``base_url`` (e.g. ``http://127.0.0.1:8787``), and every
    flow's settings pointing at it and at the webhook receiver at ``receiver_url`` (default: the one
    `integration-sync up` starts on its default port).

    ABCP_USERPSW is the plain password: the ABCP client sends its md5. The ``AMO_*`` settings come
    from `amocrm_env` (AMO_LONG_LIVED_TOKEN is empty so the OAuth refresh path is exercised). The
    flows' start dates are the first day of the sandbox's data when `days` (how far back it serves) is
    given (`up`, `sandbox env`); tests that pick their own days leave them alone.
    """
    base = base_url.rstrip("/")
    receiver = (receiver_url or DEFAULT_RECEIVER_URL).rstrip("/")
    env = {
        "SANDBOX_BASE_URL": base,
        "ABCP_BASE_URL": f"{base}/abcp/cp/users",
        "ABCP_USERLOGIN": ABCP_USERLOGIN,
        "ABCP_USERPSW": ABCP_USERPSW_PLAIN,
        "B24_WEBHOOK_URL": f"{base}/bitrix24/rest/{B24_USER_ID}/{B24_WEBHOOK_CODE}/",
        "KASPI_BASE_URL": f"{base}/kaspi{KASPI_API_PATH}",
        "KASPI_TOKEN": KASPI_AUTH_VALUE,
        "DEFAULT_COUNTRY": "KZ",
        **amocrm_env(base),
        **alerts_env(base),
    }
    if days is not None:
        env.update(dict.fromkeys(START_DATE_VARS, sandbox_start_date(days)))
    for flow in plugins():
        if flow.sandbox_env is not None:
            env.update(flow.sandbox_env(base, receiver))
    return env
