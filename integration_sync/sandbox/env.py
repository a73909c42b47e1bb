"""Environment variables that point every connector at a running sandbox: the accounts' settings here,
each flow's own settings from its plugin (`FlowPlugin.sandbox_env`)."""

from __future__ import annotations

from integration_sync.lib.registry import plugins
from integration_sync.sandbox.abcp import ABCP_USERLOGIN, ABCP_USERPSW_PLAIN
from integration_sync.sandbox.amocrm_schema import amocrm_env
from integration_sync.sandbox.bitrix24 import B24_USER_ID, B24_WEBHOOK_CODE
from integration_sync.sandbox.kaspi import KASPI_API_PATH, KASPI_AUTH_VALUE

DEFAULT_RECEIVER_URL = "http://127.0.0.1:8001"


def sandbox_env(base_url: str, receiver_url: str | None = None) -> dict[str, str]:
    """Connector settings for the sandbox at ``base_url`` (e.g. ``http://127.0.0.1:8787``), and every
    flow's settings pointing at it and at the webhook receiver at ``receiver_url`` (default: the one
    `integration-sync up` starts on its default port).

    ABCP_USERPSW is the plain password: the ABCP client sends its md5. The ``AMO_*`` settings come
    from `amocrm_env` (AMO_LONG_LIVED_TOKEN is empty so the OAuth refresh path is exercised).
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
    }
    for flow in plugins():
        if flow.sandbox_env is not None:
            env.update(flow.sandbox_env(base, receiver))
    return env
