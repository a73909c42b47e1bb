"""Environment variables that point every connector at a running sandbox."""

from __future__ import annotations

from integration_sync.sandbox.abcp import ABCP_USERLOGIN, ABCP_USERPSW_PLAIN
from integration_sync.sandbox.amocrm_schema import amocrm_env
from integration_sync.sandbox.bitrix24 import (
    B24_USER_ID,
    B24_WEBHOOK_CODE,
    UF_ABCP_INN,
    UF_ABCP_SALDO,
    UF_ABCP_USER_ID,
    USERS_CATEGORY_ID,
    USERS_STAGE_NEW,
)
from integration_sync.sandbox.kaspi import KASPI_API_PATH, KASPI_AUTH_VALUE
from integration_sync.sandbox.platform import PLATFORM_WEBHOOK_SECRET, WEBHOOK_PATH

B24_DEAL_TITLE_PREFIX = "ABCP Регистрация:"
DEFAULT_WEBHOOK_URL = f"http://127.0.0.1:8001{WEBHOOK_PATH}"


def sandbox_env(base_url: str, webhook_url: str | None = None) -> dict[str, str]:
    """Connector settings for the sandbox at ``base_url`` (e.g. ``http://127.0.0.1:8787``).

    ABCP_USERPSW is the plain password: the ABCP client sends its md5. The ``AMO_*`` settings come
    from `amocrm_env` (AMO_LONG_LIVED_TOKEN is empty so the OAuth refresh path is exercised).
    PLATFORM_WEBHOOK_SECRET is the platform emulator's fixed secret and WEBHOOK_URL the receiver it
    sends to (``webhook_url``, default the receiver `integration-sync up` starts on its default port).
    """
    base = base_url.rstrip("/")
    return {
        "SANDBOX_BASE_URL": base,
        "ABCP_BASE_URL": f"{base}/abcp/cp/users",
        "ABCP_USERLOGIN": ABCP_USERLOGIN,
        "ABCP_USERPSW": ABCP_USERPSW_PLAIN,
        "B24_WEBHOOK_URL": f"{base}/bitrix24/rest/{B24_USER_ID}/{B24_WEBHOOK_CODE}/",
        "B24_DEAL_CATEGORY_ID_USERS": str(USERS_CATEGORY_ID),
        "B24_DEAL_STAGE_NEW_USERS": USERS_STAGE_NEW,
        "UF_B24_DEAL_ABCP_USER_ID": UF_ABCP_USER_ID,
        "UF_B24_DEAL_INN": UF_ABCP_INN,
        "UF_B24_DEAL_SALDO": UF_ABCP_SALDO,
        "B24_DEAL_TITLE_PREFIX": B24_DEAL_TITLE_PREFIX,
        "KASPI_BASE_URL": f"{base}/kaspi{KASPI_API_PATH}",
        "KASPI_TOKEN": KASPI_AUTH_VALUE,
        "DEFAULT_COUNTRY": "KZ",
        **amocrm_env(base),
        "PLATFORM_WEBHOOK_SECRET": PLATFORM_WEBHOOK_SECRET,
        "WEBHOOK_URL": webhook_url or DEFAULT_WEBHOOK_URL,
    }
