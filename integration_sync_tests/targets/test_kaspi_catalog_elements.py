"""The Kaspi destination finds a product's catalog element in amoCRM by its SKU field (by the field's
id when configured, else by its ``SKU`` code) or by the ``name [code]`` it gave the element, read
through the typed models, so a warehouse that lost its element index creates no second element."""

from __future__ import annotations

from pathlib import Path

from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.defs.kaspi_amocrm.destination import CatalogSettings, Indexes, KaspiLeadsDestination
from integration_sync.defs.kaspi_amocrm.mapping import LeadSettings
from integration_sync.defs.resources import WarehouseResource
from integration_sync.sandbox.amocrm_schema import AMO_CATALOG_ID, AMO_CATALOG_SKU_FIELD_ID, AMO_PIPELINE_ID
from integration_sync.sandbox.amocrm_seed import PRODUCTS
from integration_sync.sync.changes import Change
from integration_sync.targets.amocrm_contacts import AmoContactIndex, ContactKeyRule
from integration_sync.targets.amocrm_leads import AmoLeadIndex, LeadKeyRule

SEEDED_NAME, SEEDED_SKU, _ = PRODUCTS[0]


def destination(client: AmoCrmClient, tmp_path: Path, sku_field_id: int | None) -> KaspiLeadsDestination:
    store = WarehouseResource(database=str(tmp_path / "w.duckdb")).warehouse()
    settings = LeadSettings(pipeline_id=AMO_PIPELINE_ID, status_id=0, responsible_user_id=0, catalog_id=AMO_CATALOG_ID)
    leads = AmoLeadIndex.load(store, client.root, LeadKeyRule("kaspi_order", AMO_PIPELINE_ID))
    contacts = AmoContactIndex.load(store, client.root, ContactKeyRule())
    return KaspiLeadsDestination(client, settings, CatalogSettings(sku_field_id), Indexes(), leads, contacts)


def order(*codes: str) -> Change:
    items = [{"code": code, "name": f"Товар {code}", "price": 100, "quantity": 1} for code in codes]
    return Change("K-1", "create", {"items": items}, None, {}, attempts=0, hash="h")


def seeded_id(client: AmoCrmClient) -> str:
    return next(str(e.id) for e in client.iter_catalog_elements(AMO_CATALOG_ID) if e.name == SEEDED_NAME)


def test_elements_are_found_by_sku_field_id_code_or_name(client: AmoCrmClient, tmp_path: Path) -> None:
    seeded = len(list(client.iter_catalog_elements(AMO_CATALOG_ID)))
    by_id = destination(client, tmp_path / "a", AMO_CATALOG_SKU_FIELD_ID)
    by_id._ensure_elements([order(SEEDED_SKU, "NEW-1")])
    assert by_id.indexes.elements_by_code[SEEDED_SKU] == seeded_id(client)
    elements = len(list(client.iter_catalog_elements(AMO_CATALOG_ID)))
    assert elements == seeded + 1  # only NEW-1 was created

    by_code = destination(client, tmp_path / "b", None)  # no SKU field configured: its code still says SKU
    by_code._ensure_elements([order(SEEDED_SKU, "NEW-1", "NEW-2")])
    assert by_code.indexes.elements_by_code[SEEDED_SKU] == seeded_id(client)
    assert by_code.indexes.elements_by_code["NEW-1"] == by_id.indexes.elements_by_code["NEW-1"]

    by_name = destination(client, tmp_path / "c", None)  # NEW-2 was made as "Товар NEW-2 [NEW-2]"
    by_name._ensure_elements([order("NEW-2")])
    assert by_name.indexes.elements_by_code["NEW-2"] == by_code.indexes.elements_by_code["NEW-2"]
    assert len(list(client.iter_catalog_elements(AMO_CATALOG_ID))) == elements + 1  # NEW-2 once
