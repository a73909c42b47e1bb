"""What the abcp_bitrix24 flow adds outside Dagster: its warehouse tables, its required settings and
its sandbox settings (the «Пользователи» pipeline and UF fields the Bitrix24 emulator seeds)."""

from __future__ import annotations

from integration_sync.defs.abcp_bitrix24 import preflight
from integration_sync.defs.abcp_bitrix24.tables import ABCP_MIGRATIONS, trace_source
from integration_sync.lib.registry import FlowPlugin

REQUIRED = (
    "ABCP_BASE_URL",
    "ABCP_USERLOGIN",
    "ABCP_USERPSW",
    "B24_DEAL_CATEGORY_ID_USERS",
    "B24_DEAL_STAGE_NEW_USERS",
    "UF_B24_DEAL_ABCP_USER_ID",
    "UF_B24_DEAL_INN",
    "UF_B24_DEAL_SALDO",
)


def sandbox_env(sandbox_url: str, receiver_url: str) -> dict[str, str]:
    from integration_sync.sandbox import bitrix24

    return {
        "B24_DEAL_CATEGORY_ID_USERS": str(bitrix24.USERS_CATEGORY_ID),
        "B24_DEAL_STAGE_NEW_USERS": bitrix24.USERS_STAGE_NEW,
        "UF_B24_DEAL_ABCP_USER_ID": bitrix24.UF_ABCP_USER_ID,
        "UF_B24_DEAL_INN": bitrix24.UF_ABCP_INN,
        "UF_B24_DEAL_SALDO": bitrix24.UF_ABCP_SALDO,
        "B24_DEAL_TITLE_PREFIX": "ABCP Регистрация:",
    }


PLUGIN = FlowPlugin(
    name="abcp_bitrix24",
    migrations=ABCP_MIGRATIONS,
    source_vars=("ABCP_BASE_URL", "ABCP_USERPSW", "B24_WEBHOOK_URL", "ABCP_B24_WEBHOOK_URL"),
    required_vars=REQUIRED,
    account_prefix="ABCP_",
    account_vars=("B24_WEBHOOK_URL",),
    doctor=preflight.doctor,
    sandbox_env=sandbox_env,
    trace_source=trace_source,
)
