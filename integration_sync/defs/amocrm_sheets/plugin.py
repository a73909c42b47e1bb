"""What the amocrm_sheets flow adds outside Dagster: its warehouse tables, the receiver's
`/webhook/amocrm/{secret}`, the seed's operator commands and its sandbox settings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from integration_sync.defs.amocrm_sheets import preflight
from integration_sync.defs.amocrm_sheets.commands import add_commands
from integration_sync.defs.amocrm_sheets.tables import SHEETS_MIGRATIONS, trace_source
from integration_sync.defs.amocrm_sheets.webhook_register import on_start
from integration_sync.lib.registry import FlowPlugin, ReceiverContext

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

SANDBOX_SYNC_DAYS = 30


def routes(context: ReceiverContext) -> Sequence[BaseRoute]:
    from integration_sync.defs.amocrm_sheets.receiver import amocrm_routes

    return amocrm_routes(context)


def sandbox_env(sandbox_url: str, receiver_url: str) -> dict[str, str]:
    from integration_sync.sandbox.amocrm_seller import seller_env
    from integration_sync.sandbox.sheets import sheets_env

    return {
        **seller_env(sandbox_url),
        **sheets_env(sandbox_url),
        "SHEETS_WEBHOOK_SECRET": "sandbox-amocrm-hook-path-secret",
        "SHEETS_WEBHOOK_BASE_URL": receiver_url,
        # `make run` shows the flow at work: the initial sync fills the sheet from the last month's leads
        "INITIAL_SYNC_DATE_FROM": (datetime.now(UTC).date() - timedelta(days=SANDBOX_SYNC_DAYS)).isoformat(),
    }


PLUGIN = FlowPlugin(
    name="amocrm_sheets",
    migrations=SHEETS_MIGRATIONS,
    source_vars=("SHEETS_AMO_BASE_URL", "GOOGLE_SHEET_ID"),
    required_vars=("GOOGLE_SHEET_ID", "SHEETS_AMO_BASE_URL"),
    account_prefix="SHEETS_",
    receiver_vars=("SHEETS_WEBHOOK_SECRET",),
    add_commands=add_commands,
    routes=routes,
    doctor=preflight.doctor,
    sandbox_env=sandbox_env,
    trace_source=trace_source,
    on_start=on_start,
)
