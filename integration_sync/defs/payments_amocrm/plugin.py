"""What the payments_amocrm flow adds outside Dagster: its warehouse tables, the receiver's
`/webhook/payment`, the `sandbox send-payments` command and its sandbox settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from integration_sync.defs.payments_amocrm import preflight
from integration_sync.defs.payments_amocrm.commands import add_commands
from integration_sync.defs.payments_amocrm.tables import PAYMENTS_MIGRATIONS, trace_source
from integration_sync.lib.registry import FlowPlugin, ReceiverContext

if TYPE_CHECKING:
    from starlette.routing import BaseRoute


def routes(context: ReceiverContext) -> Sequence[BaseRoute]:
    from integration_sync.webhooks.app import payment_routes

    return payment_routes(context)


def sandbox_env(sandbox_url: str, receiver_url: str) -> dict[str, str]:
    from integration_sync.sandbox.platform import PLATFORM_WEBHOOK_SECRET, WEBHOOK_PATH

    return {"PLATFORM_WEBHOOK_SECRET": PLATFORM_WEBHOOK_SECRET, "WEBHOOK_URL": f"{receiver_url}{WEBHOOK_PATH}"}


PLUGIN = FlowPlugin(
    name="payments_amocrm",
    migrations=PAYMENTS_MIGRATIONS,
    source_vars=("AMO_BASE_URL", "PAYMENTS_AMO_BASE_URL"),
    required_vars=("PLATFORM_WEBHOOK_SECRET", "AMO_PIPELINE_ID"),
    account_prefix="PAYMENTS_",
    account_vars=("AMO_BASE_URL",),
    doctor=preflight.doctor,
    receiver_vars=("PLATFORM_WEBHOOK_SECRET",),
    add_commands=add_commands,
    routes=routes,
    sandbox_env=sandbox_env,
    trace_source=trace_source,
)
