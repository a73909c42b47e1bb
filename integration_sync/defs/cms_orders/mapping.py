"""The transformer and the Bitrix24 mapping of the shop's orders, users and products, pure.

The transformer (`ShopOrder`, in `webhooks/bitrix_order.py`) keeps integer ids, money as decimals,
dates aware. Here: what makes an order unfit to push (`quarantine_reason`), the deal, its contact and
its product rows, a user as a contact, a product as a catalog product.

A deal carries the order id in ``ORIGINATOR_ID``/``ORIGIN_ID`` (found again after a lost warehouse,
with no portal set-up); its amount is the order's PRICE, marked manual so setting the product rows
does not recompute it (a shop's PRICE includes delivery; the lines alone do not).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from integration_sync.sync.normalize import normalize_email, normalize_phone
from integration_sync.webhooks.bitrix_order import ShopOrder

ORIGINATOR_ID = "bitrix_cms"  # our mark on deals, contacts and products made for the shop
CANCELLED = "D"


def effective_status(order: ShopOrder) -> str:
    """The order's status, cancelled (``D``) whatever its letter when CANCELED is Y."""
    return CANCELLED if (order.CANCELED or "").upper() == "Y" else order.STATUS_ID


def quarantine_reason(order: ShopOrder, duplicate_of: int | None = None) -> str | None:
    """Why this order must not become a deal as it is (None: it may). The shop fixes it; the next
    version of the order goes through."""
    if not order.BASKET:
        return "empty basket: the order has no lines"
    lines_total = sum((line.PRICE * line.QUANTITY for line in order.BASKET), Decimal(0))
    if order.PRICE <= 0 and lines_total <= 0:
        return "zero price: the order and its lines cost 0"
    if duplicate_of is not None:
        return f"ACCOUNT_NUMBER {order.ACCOUNT_NUMBER} is also order {duplicate_of}"
    return None


def split_name(name: str | None) -> tuple[str, str]:
    """A full name typed in one field → (first, last): ``"Айгерим Жақсыбекова"`` → both parts."""
    parts = (name or "").split()
    if not parts:
        return "", ""
    return parts[0], " ".join(parts[1:])


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}"


def _comms(phones: Sequence[str | None], emails: Sequence[str | None], region: str) -> tuple[list[str], list[str]]:
    phone_keys = [p for p in (normalize_phone(v, region) for v in phones if v) if p]
    email_keys = [e for e in (normalize_email(v) for v in emails if v) if e]
    return list(dict.fromkeys(phone_keys)), list(dict.fromkeys(email_keys))


def user_contact(user: Mapping[str, Any], region: str) -> dict[str, Any]:
    """A shop user (the export's `users`) as a Bitrix24 contact, keyed by the user id."""
    first, last = str(user.get("NAME") or "").strip(), str(user.get("LAST_NAME") or "").strip()
    if first and not last and " " in first:
        first, last = split_name(first)
    phones, emails = _comms([user.get("PERSONAL_PHONE"), user.get("PERSONAL_MOBILE")], [user.get("EMAIL")], region)
    return {
        "NAME": first,
        "LAST_NAME": last,
        "PHONE": phones,
        "EMAIL": emails,
        "ORIGINATOR_ID": ORIGINATOR_ID,
        "ORIGIN_ID": f"user:{user['ID']}",
    }


def order_contact(order: ShopOrder, region: str) -> dict[str, Any] | None:
    """The buyer as the order names them; None when the order has no phone, email or name."""
    props = order.PROPERTIES
    phones, emails = _comms([props.PHONE], [props.EMAIL], region)
    first, last = split_name(props.NAME)
    if not phones and not emails and not first:
        return None
    return {"NAME": first, "LAST_NAME": last, "PHONE": phones, "EMAIL": emails}


def product_fields(product: Mapping[str, Any]) -> dict[str, Any]:
    """A shop product as a Bitrix24 catalog product (XML_ID ``cms:<id>``: a bare number is what
    Bitrix gives a product made by hand)."""
    return {
        "NAME": str(product.get("NAME") or f"Товар {product['ID']}").strip(),
        "PRICE": _money(Decimal(str(product.get("PRICE") or 0))),
        "CURRENCY_ID": str(product.get("CURRENCY") or "KZT"),
        "ACTIVE": "N" if str(product.get("ACTIVE") or "Y").upper() == "N" else "Y",
        "XML_ID": f"cms:{product['ID']}",
    }


def product_rows(order: ShopOrder) -> list[dict[str, Any]]:
    """The basket as product rows; `PRODUCT_KEY` is the shop's product id, matched to the catalog by
    the destination (a line whose product is not in the catalog stays a named row)."""
    return [
        {
            "PRODUCT_KEY": str(line.PRODUCT_ID) if line.PRODUCT_ID is not None else None,
            "PRODUCT_NAME": line.NAME or f"Товар {line.PRODUCT_ID or ''}".strip(),
            "PRICE": _money(line.PRICE),
            "QUANTITY": float(line.QUANTITY),
        }
        for line in order.BASKET
    ]


def deal_fields(order: ShopOrder, title_prefix: str) -> dict[str, Any]:
    """The deal's fields that follow the order (the stage is settled apart: `status_rules`)."""
    props = order.PROPERTIES
    notes = [
        f"Адрес: {props.ADDRESS}" if props.ADDRESS else "",
        f"Доставка: {props.DELIVERY}" if props.DELIVERY else "",
        f"Дата доставки: {props.DELIVERY_DATE}" if props.DELIVERY_DATE else "",
        f"Оплачен: {'да' if (order.PAYED or '').upper() == 'Y' else 'нет'}",
    ]
    return {
        "TITLE": f"{title_prefix}{order.ACCOUNT_NUMBER or order.ID}",
        "OPPORTUNITY": _money(order.PRICE),
        "IS_MANUAL_OPPORTUNITY": "Y",
        "CURRENCY_ID": order.CURRENCY or "KZT",
        "COMMENTS": "\n".join(n for n in notes if n),
    }
