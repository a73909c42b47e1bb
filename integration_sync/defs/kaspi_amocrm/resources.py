"""Resources of the Kaspi → amoCRM flow: the Kaspi shop API and where leads go (amoCRM itself is shared)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg

from integration_sync.connectors.errors import ConfigError
from integration_sync.connectors.kaspi import KaspiClient
from integration_sync.defs.kaspi_amocrm.destination import CatalogSettings
from integration_sync.defs.kaspi_amocrm.mapping import DEFAULT_STATUS_MAP, LeadSettings
from integration_sync.defs.resources import data_dir, env_float, env_int, env_str
from integration_sync.targets.amocrm_contacts import ContactKeyRule


class KaspiResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Kaspi.kz Shop API v2 with the merchant's X-Auth-Token; the request budget is shared by every
    process calling for the same merchant (token bucket state under the data dir)."""

    base_url: str
    token: str
    page_size: int = 100
    max_window_days: int = 14
    rate_per_s: float = 6.0
    state_dir: str = "data/state"

    def rate_state_path(self) -> Path:
        # one bucket per merchant token, named by a hash so the token never shows in a file name
        merchant = hashlib.sha256(self.token.strip().encode()).hexdigest()[:12]
        return Path(self.state_dir) / f"kaspi-{merchant}.json"

    def client(self) -> KaspiClient:
        return KaspiClient(
            self.base_url,
            self.token,
            page_size=self.page_size,
            max_window_days=self.max_window_days,
            rate_per_s=self.rate_per_s,
            rate_state_path=self.rate_state_path(),
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
    contact_tg_id_field: int | None = None  # the account's, read into the shared contact index
    status_map_json: str = ""
    sync_days: int = 30

    def settings(self) -> LeadSettings:
        status_map = dict(DEFAULT_STATUS_MAP)
        if self.status_map_json:
            status_map.update(parse_status_map(self.status_map_json))
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

    def contact_rule(self) -> ContactKeyRule:
        return ContactKeyRule(telegram_field_id=self.contact_tg_id_field, region=self.default_country)

    def catalog(self) -> CatalogSettings:
        return CatalogSettings(sku_field_id=self.catalog_sku_field_id, price_field_id=self.catalog_price_field_id)


def parse_status_map(text: str) -> dict[str, int]:
    """KASPI_STATUS_MAP: a JSON object of Kaspi status → amoCRM status id; anything else is a
    ConfigError naming the variable (never a bare traceback)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("kaspi_amocrm", f"KASPI_STATUS_MAP is not valid JSON ({exc.msg}, char {exc.pos})") from None
    if not isinstance(raw, dict):
        raise ConfigError("kaspi_amocrm", 'KASPI_STATUS_MAP must be a JSON object like {"COMPLETED": 142}')
    result: dict[str, int] = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
            raise ConfigError("kaspi_amocrm", f"KASPI_STATUS_MAP: the status id of {key!r} must be an integer")
        result[str(key)] = int(value)
    return result


def kaspi_resource() -> KaspiResource:
    return KaspiResource(
        base_url=dg.EnvVar("KASPI_BASE_URL"),
        token=dg.EnvVar("KASPI_TOKEN"),
        max_window_days=env_int("KASPI_MAX_WINDOW_DAYS", 14) or 14,
        rate_per_s=env_float("KASPI_RATE_PER_S", 6.0),
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
        default_country=env_str("DEFAULT_COUNTRY") or "KZ",
        contact_tg_id_field=env_int("AMO_CONTACT_FIELD_TG_ID", None),
        status_map_json=env_str("KASPI_STATUS_MAP"),
        sync_days=env_int("KASPI_SYNC_DAYS", 30) or 30,
    )
