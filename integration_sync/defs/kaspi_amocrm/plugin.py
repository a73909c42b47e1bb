"""What the kaspi_amocrm flow adds outside Dagster: its warehouse tables and its required settings."""

from __future__ import annotations

from integration_sync.defs.kaspi_amocrm import preflight
from integration_sync.defs.kaspi_amocrm.tables import KASPI_MIGRATIONS, trace_source
from integration_sync.lib.registry import FlowPlugin

PLUGIN = FlowPlugin(
    name="kaspi_amocrm",
    migrations=KASPI_MIGRATIONS,
    source_vars=("KASPI_TOKEN", "AMO_BASE_URL", "KASPI_AMO_BASE_URL"),
    required_vars=("KASPI_TOKEN", "AMO_PIPELINE_ID"),
    account_prefix="KASPI_",
    account_vars=("AMO_BASE_URL",),
    doctor=preflight.doctor,
    trace_source=trace_source,
)
