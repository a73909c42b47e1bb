"""The one Dagster entry point (workspace.yaml loads it): every flow's definitions, merged."""

from __future__ import annotations

import dagster as dg

from integration_sync.connectors.redaction import install_http_log_redaction
from integration_sync.defs.abcp_bitrix24 import definitions as abcp_bitrix24
from integration_sync.defs.kaspi_amocrm import definitions as kaspi_amocrm
from integration_sync.defs.payments_amocrm import definitions as payments_amocrm
from integration_sync.defs.resources import abcp_resource, amocrm_resource, bitrix24_resource, warehouse_resource

install_http_log_redaction()

defs = dg.Definitions.merge(
    abcp_bitrix24.build_defs(),
    kaspi_amocrm.build_defs(),
    payments_amocrm.build_defs(),
    dg.Definitions(
        resources={
            "warehouse": warehouse_resource(),
            "abcp": abcp_resource(),
            "bitrix24": bitrix24_resource(),
            "amocrm": amocrm_resource(),
        }
    ),
)
