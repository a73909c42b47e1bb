"""The flower shop's own Bitrix24 portal: a second, separate portal served at ``/bitrix24-shop``.

A different business from the ABCP dealer (its own cloud portal in reality): its own inbound webhook
code, data, rate budget and operating-time meter, on the same emulator class with another profile.
Its deal pipeline «Интернет-магазин» (category 3) has the stages a new pipeline gets, prefixed
``C3:`` as Bitrix24 names the stages of every pipeline but the default one; amounts are in KZT.
Seeded with what a working portal already holds: contacts, catalog products a manager created by
hand (their XML_ID is their ID), and deals a manager made in the UI (no ORIGIN_ID), one of them
moved along the pipeline, so the stage history starts with rows that are not ours.

Volume keys ``bitrix24_shop_rate`` / ``bitrix24_shop_burst`` (None: the ABCP portal's values) and
``bitrix24_shop_contacts``. Controls as the other portal's, under ``/_sandbox/bitrix24-shop/``:
``GET contacts``, ``GET deals``, ``POST deals/{id}/stage`` ``{"stage_id": "C3:EXECUTING"}`` (a
manager's move, recorded in ``crm.stagehistory.list``).
"""

from __future__ import annotations

from typing import Final

from integration_sync.sandbox.bitrix24 import Bitrix24Service
from integration_sync.sandbox.bitrix24_history import MANAGER_USER_ID
from integration_sync.sandbox.bitrix24_schema import STAGES

SHOP_B24_USER_ID: Final = "1"
SHOP_B24_WEBHOOK_CODE: Final = "sandboxshopb24hook"
SHOP_CATEGORY_ID: Final = 3
SHOP_CATEGORY_NAME: Final = "Интернет-магазин"
SHOP_CATEGORIES: Final = {0: "Общая", SHOP_CATEGORY_ID: SHOP_CATEGORY_NAME}
SHOP_STAGES: Final = {
    0: STAGES[0],
    SHOP_CATEGORY_ID: (
        ("C3:NEW", "Новый заказ", 10, "P", "#39A8EF"),
        ("C3:PREPARATION", "Принят", 20, "P", "#2FC6F6"),
        ("C3:EXECUTING", "Собирается", 30, "P", "#47E4C2"),
        ("C3:FINAL_INVOICE", "Передан курьеру", 40, "P", "#FFA900"),
        ("C3:WON", "Доставлен", 50, "S", "#7BD500"),
        ("C3:LOSE", "Отменён", 60, "F", "#FF5752"),
    ),
}
SEED_PRODUCTS: Final = (("Букет «Нежность»", "15000.00"), ("Розы красные, 25 шт.", "27500.00"))


def shop_portal_env(base: str) -> dict[str, str]:
    """The cms_orders flow's portal setting (account prefix ``CMS_``) for the sandbox served at ``base``."""
    return {"CMS_B24_WEBHOOK_URL": f"{base.rstrip('/')}/bitrix24-shop/rest/{SHOP_B24_USER_ID}/{SHOP_B24_WEBHOOK_CODE}/"}


class ShopBitrix24Service(Bitrix24Service):
    """The shop's portal: the Bitrix24 emulator with the shop's identity, pipeline and seed."""

    name = "bitrix24-shop"
    user_id = SHOP_B24_USER_ID
    webhook_code = SHOP_B24_WEBHOOK_CODE
    currency = "KZT"
    volume_prefix = "bitrix24_shop"
    categories = SHOP_CATEGORIES
    stages = SHOP_STAGES

    def entities(self) -> dict[str, int]:
        return {**super().entities(), "products": len(self.products.rows)}

    def seed_extra(self, seed: int) -> None:
        for name, price in SEED_PRODUCTS:
            self._product_insert({"NAME": name, "PRICE": price}, by=MANAGER_USER_ID)
        contact = min(self.contacts.rows) if self.contacts.rows else None
        walk_in = {"TITLE": "Заказ по телефону", "CATEGORY_ID": SHOP_CATEGORY_ID, "CONTACT_ID": contact}
        moved = self._deal_insert(walk_in, by=MANAGER_USER_ID)
        row = dict(self.deals.rows[moved])
        for stage in ("C3:PREPARATION", "C3:WON"):
            self._move(row, stage, MANAGER_USER_ID)
            self.deals.put(moved, dict(row))
            self._record_stage(row, 2 if row["STAGE_SEMANTIC_ID"] == "P" else 3)
        self._deal_insert({"TITLE": "Оптовый запрос", "OPPORTUNITY": "90000"}, by=MANAGER_USER_ID)
