"""Resources of the Kaspi → amoCRM flow: the Kaspi shop API, amoCRM, and where leads go."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.connectors.amocrm_auth import AmoAuth, TokenStore
from integration_sync.connectors.kaspi import KaspiClient
from integration_sync.defs.kaspi_amocrm.destination import CatalogSettings
from integration_sync.defs.kaspi_amocrm.mapping import DEFAULT_STATUS_MAP, LeadSettings
from integration_sync.defs.resources import data_dir, env_float, env_int


class KaspiResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Kaspi.kz Shop API v2 with the merchant's X-Auth-Token."""

    base_url: str
    token: str
    page_size: int = 100
    max_window_days: int = 14
    rate_per_s: float = 6.0

    def client(self) -> KaspiClient:
        return KaspiClient(
            self.base_url,
            self.token,
            page_size=self.page_size,
            max_window_days=self.max_window_days,
            rate_per_s=self.rate_per_s,
        )


class AmoCrmResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """amoCRM through OAuth (tokens kept in the state store) or a long-lived token; 7 req/s shared."""

    base_url: str
    client_id: str = ""
    client_secret: str = ""
    redirect_uri: str = ""
    access_token: str = ""
    refresh_token: str = ""
    long_lived_token: str = ""
    rate_per_s: float = 6.8
    state_dir: str = "data/state"

    def client(self) -> AmoCrmClient:
        state = Path(self.state_dir)
        auth = AmoAuth(
            base_url=self.base_url,
            client_id=self.client_id,
            client_secret=self.client_secret,
            redirect_uri=self.redirect_uri,
            initial_access_token=self.access_token,
            initial_refresh_token=self.refresh_token,
            long_lived_token=self.long_lived_token or None,
            store=TokenStore(state / "amocrm-tokens.sqlite"),
        )
        return AmoCrmClient(
            self.base_url, auth=auth, rate_per_s=self.rate_per_s, rate_state_path=state / "amocrm-rate.json"
        )


class KaspiLeadsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The seed's AMO_* settings: pipeline, stage, responsible user, catalog and optional fields."""

    pipeline_id: int
    status_id: int
    responsible_user_id: int
    catalog_id: int
    catalog_sku_field_id: int | None = None
    catalog_price_field_id: int | None = None
    order_code_field_id: int | None = None
    contact_address_field_id: int | None = None
    lead_delivery_address_field_id: int | None = None
    order_date_field_id: int | None = None
    default_country: str = "KZ"
    status_map_json: str = ""
    sync_days: int = 30

    def settings(self) -> LeadSettings:
        status_map = dict(DEFAULT_STATUS_MAP)
        if self.status_map_json:
            status_map.update({str(k): int(v) for k, v in json.loads(self.status_map_json).items()})
        return LeadSettings(
            pipeline_id=self.pipeline_id,
            status_id=self.status_id,
            responsible_user_id=self.responsible_user_id,
            catalog_id=self.catalog_id,
            order_code_field_id=self.order_code_field_id,
            contact_address_field_id=self.contact_address_field_id,
            lead_delivery_address_field_id=self.lead_delivery_address_field_id,
            order_date_field_id=self.order_date_field_id,
            default_country=self.default_country,
            status_map=status_map,
        )

    def catalog(self) -> CatalogSettings:
        return CatalogSettings(sku_field_id=self.catalog_sku_field_id, price_field_id=self.catalog_price_field_id)


def _env(name: str) -> str:
    return os.environ.get(name, "")


def kaspi_resource() -> KaspiResource:
    return KaspiResource(
        base_url=dg.EnvVar("KASPI_BASE_URL"),
        token=dg.EnvVar("KASPI_TOKEN"),
        max_window_days=env_int("KASPI_MAX_WINDOW_DAYS", 14) or 14,
        rate_per_s=env_float("KASPI_RATE_PER_S", 6.0),
    )


def amocrm_resource() -> AmoCrmResource:
    return AmoCrmResource(
        base_url=dg.EnvVar("AMO_BASE_URL"),
        client_id=_env("AMO_CLIENT_ID"),
        client_secret=dg.EnvVar("AMO_CLIENT_SECRET") if _env("AMO_CLIENT_SECRET") else "",
        redirect_uri=_env("AMO_REDIRECT_URI"),
        access_token=dg.EnvVar("AMO_ACCESS_TOKEN") if _env("AMO_ACCESS_TOKEN") else "",
        refresh_token=dg.EnvVar("AMO_REFRESH_TOKEN") if _env("AMO_REFRESH_TOKEN") else "",
        long_lived_token=dg.EnvVar("AMO_LONG_LIVED_TOKEN") if _env("AMO_LONG_LIVED_TOKEN") else "",
        rate_per_s=env_float("AMO_RATE_PER_S", 6.8),
        state_dir=str(data_dir() / "state"),
    )


def kaspi_leads_resource() -> KaspiLeadsResource:
    return KaspiLeadsResource(
        pipeline_id=dg.EnvVar.int("AMO_PIPELINE_ID"),
        status_id=dg.EnvVar.int("AMO_STATUS_ID"),
        responsible_user_id=dg.EnvVar.int("AMO_RESPONSIBLE_USER_ID"),
        catalog_id=dg.EnvVar.int("AMO_CATALOG_ID"),
        catalog_sku_field_id=env_int("AMO_CATALOG_SKU_FIELD_ID", None),
        catalog_price_field_id=env_int("AMO_CATALOG_PRICE_FIELD_ID", None),
        order_code_field_id=env_int("AMO_LEAD_ORDER_CODE_FIELD_ID", None),
        contact_address_field_id=env_int("AMO_CONTACT_ADDRESS_FIELD_ID", None),
        lead_delivery_address_field_id=env_int("AMO_LEAD_DELIVERY_ADDRESS_FIELD_ID", None),
        order_date_field_id=env_int("AMO_LEAD_ORDER_DATE_FIELD_ID", None),
        default_country=_env("DEFAULT_COUNTRY") or "KZ",
        status_map_json=_env("KASPI_STATUS_MAP"),
        sync_days=env_int("KASPI_SYNC_DAYS", 30) or 30,
    )
