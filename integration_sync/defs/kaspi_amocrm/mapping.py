"""Pure mapping rules: a Kaspi order and its lines → the amoCRM lead, contact, catalog items and note.

No I/O. The payload is what the sync engine hashes and diffs: a status change in Kaspi changes the
lead's stage, a new order creates a lead; nothing else makes an order "changed".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from integration_sync.connectors.amocrm import LOST_STATUS_ID as LOST
from integration_sync.connectors.amocrm import WON_STATUS_ID as WON
from integration_sync.sync.engine import Desired
from integration_sync.sync.normalize import KAZAKHSTAN, normalize_phone

FINAL_STATUSES = frozenset({"COMPLETED", "CANCELLED", "RETURNED"})
DEFAULT_STATUS_MAP: dict[str, int] = {"COMPLETED": WON, "CANCELLED": LOST, "RETURNED": LOST}
_CODE = re.compile(r"^[0-9A-Za-z_-]{1,40}$")


@dataclass(frozen=True)
class LeadSettings:
    """Where leads go and which optional fields are filled (the seed's AMO_* settings)."""

    pipeline_id: int
    status_id: int
    responsible_user_id: int
    catalog_id: int
    order_code_field_id: int | None = None
    contact_address_field_id: int | None = None
    lead_delivery_address_field_id: int | None = None
    order_date_field_id: int | None = None
    default_country: str = "KZ"
    status_map: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_STATUS_MAP))


def parse_amount(value: Any) -> Decimal | None:
    """Kaspi money (a JSON number, sometimes a numeric string) → Decimal, else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        amount = Decimal(str(value).replace(" ", "").replace(",", "."))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def kaspi_phone(cell_phone: Any, country: str = "KZ") -> str | None:
    """Kaspi's 10-digit cellPhone (no +7) or any other form → E.164, else None."""
    if isinstance(cell_phone, str) and re.fullmatch(r"\d{10}", cell_phone.strip()):
        return normalize_phone("+7" + cell_phone.strip(), country)
    return normalize_phone(cell_phone, country)


def created_at(order: Mapping[str, Any]) -> datetime | None:
    """creationDate (epoch milliseconds) → an aware datetime."""
    value = order.get("creationDate")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value / 1000, UTC)


def kazakhstan_day(order: Mapping[str, Any]) -> str | None:
    """The Kazakhstan calendar day the order was created on: its partition."""
    moment = created_at(order)
    return moment.astimezone(KAZAKHSTAN).date().isoformat() if moment else None


def stage_for(status: str | None, settings: LeadSettings) -> int:
    """The pipeline stage for a Kaspi status: the configured map, else the new-order stage."""
    if status and status in settings.status_map:
        return int(settings.status_map[status])
    return settings.status_id


def _money(amount: Decimal) -> str:
    text = f"{amount:,.2f}".replace(",", " ")
    return text[:-3] if text.endswith(".00") else text


def delivery_address(order: Mapping[str, Any]) -> str:
    address = order.get("deliveryAddress")
    if isinstance(address, Mapping):
        return str(address.get("formattedAddress") or address.get("town") or "").strip()
    return ""


def customer_name(order: Mapping[str, Any]) -> str:
    customer = order.get("customer") if isinstance(order.get("customer"), Mapping) else {}
    assert isinstance(customer, Mapping)
    # real orders often carry only `name` (no firstName/lastName); every part is optional
    name = " ".join(str(customer.get("name") or "").split())
    if name:
        return name
    parts = [str(customer.get(k) or "").strip() for k in ("firstName", "lastName")]
    return " ".join(p for p in parts if p) or "Покупатель Kaspi"


def note_text(order: Mapping[str, Any], items: Sequence[Mapping[str, Any]], phone: str | None) -> str:
    """The summary note: code, lines, totals, delivery and payment."""
    moment = created_at(order)
    lines = [f"Заказ Kaspi №{order.get('code')}"]
    if moment:
        lines.append(f"Дата: {moment.astimezone(KAZAKHSTAN):%Y-%m-%d %H:%M} (Казахстан, UTC+5)")
    lines.append(f"Статус: {order.get('status') or '-'}")
    lines.append(f"Покупатель: {customer_name(order)}" + (f", {phone}" if phone else ""))
    lines.append("Товары:")
    quantity = 0
    for item in items:
        quantity += int(item["quantity"])
        lines.append(
            f"  {item['code']} — {item['name']} × {item['quantity']} = {_money(Decimal(str(item['total'])))} ₸"
        )
    total = parse_amount(order.get("totalPrice")) or Decimal(0)
    lines.append(f"Итого: {_money(total)} ₸ ({len(items)} поз., {quantity} шт.)")
    delivery = [str(order.get("deliveryMode") or "").strip()]
    if order.get("isKaspiDelivery"):
        delivery.append("Kaspi Доставка")
    if delivery_address(order):
        delivery.append(delivery_address(order))
    planned = order.get("plannedDeliveryDate")
    if isinstance(planned, int | float) and not isinstance(planned, bool):
        delivery.append(f"плановая дата {datetime.fromtimestamp(planned / 1000, KAZAKHSTAN):%Y-%m-%d}")
    cost = parse_amount(order.get("deliveryCostForSeller"))
    if cost:
        delivery.append(f"стоимость для продавца {_money(cost)} ₸")
    lines.append("Доставка: " + ("; ".join(d for d in delivery if d) or "-"))
    lines.append(f"Оплата: {order.get('paymentMode') or '-'}")
    return "\n".join(lines)


def order_items(entries: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """Order lines → catalog items (code, name, quantity, price, total), or the reason they are unusable."""
    items: list[dict[str, Any]] = []
    for entry in entries:
        code = str(entry.get("code") or "").strip()
        quantity = entry.get("quantity")
        price = parse_amount(entry.get("base_price"))
        total = parse_amount(entry.get("total_price"))
        if not code:
            return [], "an order line has no product code"
        if isinstance(quantity, bool) or not isinstance(quantity, int | float) or quantity <= 0:
            return [], f"line {code} has no valid quantity"
        if price is None or total is None:
            return [], f"line {code} has no valid price"
        items.append(
            {
                "code": code,
                "name": str(entry.get("name") or code).strip(),
                "quantity": int(quantity),
                "price": float(price),
                "total": float(total),
            }
        )
    return sorted(items, key=lambda i: (i["code"], i["quantity"])), None


def desired_order(order: Mapping[str, Any], entries: Sequence[Mapping[str, Any]], settings: LeadSettings) -> Desired:
    """One Kaspi order (attributes) and its lines → the engine's desired record, or an invalid one."""
    code = str(order.get("code") or "").strip()
    if not _CODE.match(code):
        return Desired(key=code or f"invalid:{order.get('id')}", payload={}, invalid_reason="no valid order code")
    total = parse_amount(order.get("totalPrice"))
    if total is None:
        return Desired(key=code, payload={}, invalid_reason="totalPrice is not a number")
    moment = created_at(order)
    if moment is None:
        return Desired(key=code, payload={}, invalid_reason="no valid creationDate")
    customer = order.get("customer") if isinstance(order.get("customer"), Mapping) else {}
    assert isinstance(customer, Mapping)
    phone = kaspi_phone(customer.get("cellPhone"), settings.default_country)
    if phone is None:
        return Desired(key=code, payload={}, invalid_reason="no valid customer phone to find or create the contact")
    items, reason = order_items(entries)
    if reason:
        return Desired(key=code, payload={}, invalid_reason=reason)
    address = delivery_address(order)
    lead_fields: dict[str, Any] = {}
    if settings.order_code_field_id:
        lead_fields[str(settings.order_code_field_id)] = code
    if settings.lead_delivery_address_field_id and address:
        lead_fields[str(settings.lead_delivery_address_field_id)] = address
    if settings.order_date_field_id:
        lead_fields[str(settings.order_date_field_id)] = moment.astimezone(KAZAKHSTAN).isoformat()
    contact_fields: dict[str, Any] = {}
    if settings.contact_address_field_id and address:
        contact_fields[str(settings.contact_address_field_id)] = address
    payload = {
        "lead": {
            "name": f"Kaspi №{code}",
            "price": int(total.to_integral_value()),
            "pipeline_id": settings.pipeline_id,
            "status_id": stage_for(str(order.get("status") or ""), settings),
            "responsible_user_id": settings.responsible_user_id,
            "created_at": int(moment.timestamp()),
            "custom_fields": lead_fields,
        },
        "contact": {"name": customer_name(order), "phone": phone, "custom_fields": contact_fields},
        "items": items,
        "note": note_text(order, items, phone),
    }
    return Desired(key=code, payload=payload)
