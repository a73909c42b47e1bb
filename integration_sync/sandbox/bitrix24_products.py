"""Bitrix24 emulator: a deal's product rows (`crm.deal.productrows.set` / `.get`), mixed into the service.

As the real methods (CCrmDeal::SaveProductRows): `set` replaces every row of the deal with `rows`
(an empty list clears them) and, unless the deal's amount is manual, recalculates its OPPORTUNITY
as the sum of PRICE × QUANTITY; a row needs PRODUCT_ID or PRODUCT_NAME; QUANTITY defaults to 1.
`get` answers the rows with their ids, OWNER_ID and OWNER_TYPE "D".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integration_sync.sandbox.bitrix24_query import EntityTable, as_php_array, entity_id
from integration_sync.sandbox.bitrix24_schema import B24Error, MethodResult
from integration_sync.sandbox.core import JsonDict, php_intval


def _number(value: Any, name: str, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        return float(str(value).replace(",", "."))
    except ValueError:
        raise B24Error(f"Invalid value of field {name}.") from None


class ProductRowMethods:
    """`crm.deal.productrows.*` over the service's deals table."""

    deals: EntityTable
    next_product_row_id: int = 1

    def _deal_for_rows(self, params: Mapping[str, Any]) -> int:
        rid = entity_id(params)
        if rid <= 0:
            raise B24Error("The parameter id is invalid or not defined.")
        if rid not in self.deals.rows:
            raise B24Error("Not found")
        return rid

    def deal_productrows_set(self, params: Mapping[str, Any]) -> MethodResult:
        rid = self._deal_for_rows(params)
        raw = params.get("rows") if params.get("rows") is not None else params.get("ROWS")
        if raw in (None, "", []):
            items: list[Any] = []
        else:
            array = as_php_array(raw)
            if array is None:
                raise B24Error("The parameter rows must be array.")
            items = list(array.values())
        rows: list[JsonDict] = []
        for item in items:
            row = as_php_array(item)
            if row is None:
                raise B24Error("The parameter rows must be array of arrays.")
            product_id = php_intval(row.get("PRODUCT_ID") or 0)
            name = str(row.get("PRODUCT_NAME") or "").strip()
            if product_id <= 0 and not name:
                raise B24Error("Product row must have PRODUCT_ID or PRODUCT_NAME.")
            rows.append(
                {
                    "ID": str(self.next_product_row_id),
                    "OWNER_ID": str(rid),
                    "OWNER_TYPE": "D",
                    "PRODUCT_ID": product_id,
                    "PRODUCT_NAME": name,
                    "PRICE": _number(row.get("PRICE"), "PRICE", 0.0),
                    "QUANTITY": _number(row.get("QUANTITY"), "QUANTITY", 1.0),
                    "DISCOUNT_SUM": _number(row.get("DISCOUNT_SUM"), "DISCOUNT_SUM", 0.0),
                    "MEASURE_NAME": str(row.get("MEASURE_NAME") or "шт"),
                }
            )
            self.next_product_row_id += 1
        self.deals.product_rows[rid] = rows
        deal = dict(self.deals.rows[rid])
        if str(deal.get("IS_MANUAL_OPPORTUNITY") or "N") != "Y":
            total = sum(float(r["PRICE"]) * float(r["QUANTITY"]) for r in rows)
            deal["OPPORTUNITY"] = f"{total:.2f}"
            self.deals.put(rid, deal)
        return MethodResult(True)

    def deal_productrows_get(self, params: Mapping[str, Any]) -> MethodResult:
        rid = self._deal_for_rows(params)
        return MethodResult([dict(r) for r in self.deals.product_rows.get(rid, [])])
