"""The kaspi_amocrm preflight: the Kaspi token works, amoCRM answers, and the pipeline, statuses,
custom fields and catalog the settings name exist (amoCRM drops a value for an unknown field id
without an error). Used by `integration-sync doctor` and, the amoCRM part, at the start of a push."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.connectors.errors import ConfigError
from integration_sync.connectors.kaspi import DEFAULT_POLICY as KASPI_POLICY
from integration_sync.connectors.kaspi import KaspiClient
from integration_sync.lib.preflight import (
    amo_fields,
    amo_pipelines,
    amocrm_checks,
    call,
    chosen,
    environment,
    field_problems,
    pipeline_problems,
    setting_problems,
)

if TYPE_CHECKING:  # the resources import Dagster; the CLI's doctor stays light until it checks
    from integration_sync.defs.kaspi_amocrm.resources import KaspiLeadsResource

ACCOUNT_PREFIX = "KASPI_"
REQUIRED = (
    "KASPI_BASE_URL",
    "KASPI_TOKEN",
    "AMO_PIPELINE_ID",
    "AMO_STATUS_ID",
    "AMO_RESPONSIBLE_USER_ID",
    "AMO_CATALOG_ID",
)
INTS = (
    "AMO_PIPELINE_ID",
    "AMO_STATUS_ID",
    "AMO_RESPONSIBLE_USER_ID",
    "AMO_CATALOG_ID",
    "AMO_CATALOG_SKU_FIELD_ID",
    "AMO_CATALOG_PRICE_FIELD_ID",
    "AMO_LEAD_ORDER_CODE_FIELD_ID",
    "AMO_CONTACT_ADDRESS_FIELD_ID",
    "AMO_LEAD_DELIVERY_ADDRESS_FIELD_ID",
    "AMO_LEAD_ORDER_DATE_FIELD_ID",
    "AMO_CONTACT_FIELD_TG_ID",
)


def problems(
    client: AmoCrmClient, leads: KaspiLeadsResource, account_var: str = "AMO_BASE_URL", auth_var: str | None = None
) -> list[str]:
    """Pipeline and statuses, lead and contact fields, the catalog and its fields: five requests."""
    pipelines, lines = call(account_var, "amoCRM", lambda: amo_pipelines(client), auth_var)
    if pipelines is None:
        return lines
    lines += pipeline_problems(pipelines, "AMO_PIPELINE_ID", leads.pipeline_id, "AMO_STATUS_ID", leads.status_id)
    if leads.pipeline_id in pipelines and leads.status_map_json:
        from integration_sync.defs.kaspi_amocrm.resources import parse_status_map

        try:
            status_map = parse_status_map(leads.status_map_json)
        except ConfigError as exc:
            status_map = {}
            lines.append(exc.message)
        lines += [
            f"KASPI_STATUS_MAP: {name} → {status_id} is not a status of pipeline {leads.pipeline_id} (AMO_PIPELINE_ID)"
            for name, status_id in status_map.items()
            if status_id not in pipelines[leads.pipeline_id]
        ]
    lead_fields, failed = call(account_var, "amoCRM", lambda: amo_fields(client, "leads"))
    lines += failed
    if lead_fields is not None:
        lines += field_problems(
            lead_fields,
            "leads",
            [
                ("AMO_LEAD_ORDER_CODE_FIELD_ID", leads.order_code_field_id),
                ("AMO_LEAD_DELIVERY_ADDRESS_FIELD_ID", leads.lead_delivery_address_field_id),
                ("AMO_LEAD_ORDER_DATE_FIELD_ID", leads.order_date_field_id),
            ],
        )
    contact_named = [
        ("AMO_CONTACT_ADDRESS_FIELD_ID", leads.contact_address_field_id),
        ("AMO_CONTACT_FIELD_TG_ID", leads.contact_tg_id_field),
    ]
    if any(field_id is not None for _, field_id in contact_named):
        contact_fields, failed = call(account_var, "amoCRM", lambda: amo_fields(client, "contacts"))
        lines += failed
        if contact_fields is not None:
            lines += field_problems(contact_fields, "contacts", contact_named)
    catalogs, failed = call(account_var, "amoCRM", lambda: {catalog.id for catalog in client.list_catalogs()})
    lines += failed
    if catalogs is not None and leads.catalog_id not in catalogs:
        lines.append(f"AMO_CATALOG_ID={leads.catalog_id}: amoCRM has no such catalog")
    catalog_named = [
        ("AMO_CATALOG_SKU_FIELD_ID", leads.catalog_sku_field_id),
        ("AMO_CATALOG_PRICE_FIELD_ID", leads.catalog_price_field_id),
    ]
    if catalogs is not None and leads.catalog_id in catalogs and any(f is not None for _, f in catalog_named):
        path = f"catalogs/{leads.catalog_id}"
        catalog_fields, failed = call(account_var, "amoCRM", lambda: amo_fields(client, path))
        lines += failed
        if catalog_fields is not None:
            lines += field_problems(catalog_fields, f"the catalog {leads.catalog_id}", catalog_named)
    return lines


def push_preflight(ctx: Any, client: AmoCrmClient) -> list[str]:
    """The push's check: the pipeline, statuses, fields and catalog it is about to write exist."""
    leads: KaspiLeadsResource = ctx.resources.kaspi_leads
    return problems(client, leads)


def kaspi_problems(client: KaspiClient) -> list[str]:
    """One cheap orders request: the last hour's new orders, one page of one, no customers."""
    now = datetime.now(UTC)
    _, lines = call(
        "KASPI_BASE_URL",
        "Kaspi",
        lambda: client.list_orders(now - timedelta(hours=1), now, state="NEW", include_user=False),
        "KASPI_TOKEN",
    )
    return lines


def doctor(env: Mapping[str, str]) -> list[str]:
    """Every check, against the services `env` points at."""
    from integration_sync.defs.kaspi_amocrm.resources import kaspi_leads_resource, kaspi_resource

    account_var = chosen(env, ACCOUNT_PREFIX, "AMO_BASE_URL")
    lines = setting_problems(env, (*REQUIRED, account_var), INTS)
    if lines:
        return lines
    with environment(env):
        kaspi = kaspi_resource().process_config_and_initialize()
        leads = kaspi_leads_resource().process_config_and_initialize()
    # one attempt each: a doctor reports an unreachable service instead of waiting through retries
    policy = replace(KASPI_POLICY, max_attempts=1)
    shop = KaspiClient(kaspi.base_url, kaspi.token, page_size=1, rate_state_path=kaspi.rate_state_path(), policy=policy)
    with shop:
        lines += kaspi_problems(shop)
    return lines + amocrm_checks(env, ACCOUNT_PREFIX, lambda crm, var, auth: problems(crm, leads, var, auth))
