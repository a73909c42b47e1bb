"""Bitrix24 emulator: a deal's product rows (`crm.deal.productrows.set` / `.get`), mixed into the service.

As the real methods (CCrmDeal::SaveProductRows): `set` replaces every row of the deal with `rows`
(an empty list clears them) and, unless the deal's amount is manual, recalculates its OPPORTUNITY
as the sum of PRICE × QUANTITY; a row needs PRODUCT_ID or PRODUCT_NAME; QUANTITY defaults to 1.
`get` answers the rows with their ids, OWNER_ID and OWNER_TYPE "D". A row with PRODUCT_ID of a catalog
product and no PRODUCT_NAME takes the product's name.

The catalog (`crm.product.add` / `.update` / `.list`): NAME required; values answered as strings, PRICE as money
("15000.00"); an element added without XML_ID gets its ID as XML_ID, as iblock elements do (so a
lookup by our own key must not take a bare number for ours); lists filter by XML_ID, NAME, ID and
friends, 50 a page. Unconfirmed: the wording of the missing-NAME error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from integration_sync.sandbox.bitrix24_query import EntityTable, as_php_array, entity_id
from integration_sync.sandbox.bitrix24_schema import B24Error, FieldInfo, MethodResult
from integration_sync.sandbox.core import JsonDict, php_intval

PRODUCT_FIELDS: Final[dict[str, FieldInfo]] = {
    "ID": FieldInfo("int", read_only=True),
    "NAME": FieldInfo(),
    "CODE": FieldInfo(),
    "ACTIVE": FieldInfo("char"),
    "PREVIEW_PICTURE": FieldInfo(read_only=True),
    "DETAIL_PICTURE": FieldInfo(read_only=True),
    "SORT": FieldInfo("int"),
    "XML_ID": FieldInfo(),
    "TIMESTAMP_X": FieldInfo("datetime", read_only=True),
    "DATE_CREATE": FieldInfo("datetime", read_only=True),
    "MODIFIED_BY": FieldInfo("id", read_only=True),
    "CREATED_BY": FieldInfo("id", read_only=True),
    "CATALOG_ID": FieldInfo("id", read_only=True),
    "SECTION_ID": FieldInfo("id"),
    "DESCRIPTION": FieldInfo(),
    "DESCRIPTION_TYPE": FieldInfo(),
    "PRICE": FieldInfo("money"),
    "CURRENCY_ID": FieldInfo(),
    "VAT_ID": FieldInfo("id"),
    "VAT_INCLUDED": FieldInfo("char"),
    "MEASURE": FieldInfo("id"),
}
CATALOG_ID: Final = "25"


def new_products() -> EntityTable:
    return EntityTable(PRODUCT_FIELDS, (), ("XML_ID", "NAME"))


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
    products: EntityTable
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
            if not name and product_id in self.products.rows:
                name = str(self.products.rows[product_id]["NAME"])
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


class ProductMethods:
    """`crm.product.add` / `.update` / `.list` over the service's catalog."""

    products: EntityTable
    currency: str

    if TYPE_CHECKING:

        def _fields_param(self, params: Mapping[str, Any]) -> dict[str, Any]: ...
        def _apply_scalars(
            self, table: EntityTable, row: JsonDict, fields: Mapping[str, Any], update: bool
        ) -> None: ...
        def _list(self, table: EntityTable, params: Mapping[str, Any]) -> MethodResult: ...
        def _now_iso(self) -> str: ...
        def _existing(self, table: EntityTable, params: Mapping[str, Any], not_found: str) -> tuple[int, JsonDict]: ...

    def product_add(self, params: Mapping[str, Any]) -> MethodResult:
        return MethodResult(self._product_insert(self._fields_param(params)))

    def _product_insert(self, fields: Mapping[str, Any], by: str = "1") -> int:
        table = self.products
        now = self._now_iso()
        row: JsonDict = dict.fromkeys(table.fields)
        row.update(ACTIVE="Y", SORT="500", DESCRIPTION_TYPE="text", VAT_INCLUDED="N", CURRENCY_ID=self.currency)
        self._apply_scalars(table, row, fields, update=False)
        if not str(row.get("NAME") or "").strip():
            raise B24Error("Field NAME is required.")
        rid = table.next_id
        table.next_id += 1
        row.update(ID=str(rid), CATALOG_ID=CATALOG_ID, CREATED_BY=by, MODIFIED_BY=by, DATE_CREATE=now, TIMESTAMP_X=now)
        if not str(row.get("XML_ID") or "").strip():
            row["XML_ID"] = str(rid)  # CIBlockElement::Add: an empty XML_ID becomes the element's ID
        table.put(rid, row)
        return rid

    def product_update(self, params: Mapping[str, Any]) -> MethodResult:
        """`crm.product.update`: the given fields replace the product's (XML_ID included)."""
        rid, row = self._existing(self.products, params, "Product is not found.")
        self._apply_scalars(self.products, row, self._fields_param(params), update=True)
        if not str(row.get("NAME") or "").strip():
            raise B24Error("Field NAME is required.")
        row["TIMESTAMP_X"] = self._now_iso()
        self.products.put(rid, row)
        return MethodResult(True)

    def product_list(self, params: Mapping[str, Any]) -> MethodResult:
        return self._list(self.products, params)
