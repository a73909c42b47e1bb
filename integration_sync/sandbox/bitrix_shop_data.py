"""Seeded data of the Bitrix CMS shop emulator: a Kazakhstan flower shop (Almaty, Astana; KZT).

Orders carry every variant the shop sends (THE CONTRACT in the issue 13 briefs): a missing phone or
email, phones typed as ``8 7xx``, dates without offset (``DD.MM.YYYY HH:MM:SS``, Kazakhstan time), ids as
digit strings, money as JSON numbers, a shop-specific status letter, and about 5% broken records: a
zero price, a product id not in the catalog, an ACCOUNT_NUMBER repeated from another order, an empty
basket, a NAME whose bytes are not UTF-8 (the shop's DB was latin1/cp1251 once; the raw bytes go into
the JSON body). Deterministic for a seed and an anchor time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final

KZ: Final = timezone(timedelta(hours=5))
STATUSES: Final = {"N": "Принят", "P": "Оплачен", "S": "Отправлен", "D": "Отменён", "F": "Выполнен", "C": "Собран"}
RAW_MARK: Final = "\x00raw-name\x00"  # placeholder swapped for the raw bytes when the body is encoded
FIRST_ORDER_ID: Final = 1001
FIRST_USER_ID: Final = 2

FIRST_NAMES: Final = (
    "Айгерим", "Әсел", "Ғалым", "Қайрат", "Мөлдір", "Ұлжан", "Нұрлан", "Гүлнұр", "Жұлдыз", "Айгүл",
    "Дәурен", "Іңкәр", "Үміт", "Мұхтар", "Ерғали", "Шаһизада", "Анна", "Ирина", "Сергей", "Ольга",
    "Дмитрий", "Екатерина", "Виктор", "Наталья",
)  # fmt: skip
LAST_NAMES: Final = (
    "Жақсыбекова", "Сәрсенбаев", "Төлеуов", "Нұрғалиева", "Құнанбаев", "Әбдіхалықов", "Оңғарова",
    "Шаһмарданов", "Үсенова", "Иванова", "Ким", "Пак", "Цой", "Смирнов", "Ли",
)  # fmt: skip
# Names of old customers whose bytes were stored in a single-byte charset (cp1251, latin1).
RAW_NAMES: Final = ("Ирина".encode("cp1251"), "Ольга Ким".encode("cp1251"), "Müller".encode("latin-1"))
MOBILE: Final = ("700", "701", "702", "705", "707", "708", "747", "771", "775", "776", "777", "778")
ADDRESSES: Final = (
    "Алматы, ул. Абая 1", "Алматы, мкр. Самал-2, д. 15", "Алматы, ул. Төле би 120", "Алматы, пр. Достық 85",
    "Астана, пр. Мәңгілік Ел 55", "Астана, ул. Қабанбай батыр 20", "Астана, ул. Сығанақ 14, кв. 7",
)  # fmt: skip
DELIVERIES: Final = ("Курьер", "Курьер", "Самовывоз", "Курьер (экспресс)")
MAIL_DOMAINS: Final = ("mail.ru", "gmail.com", "mail.kz", "inbox.kz", "yandex.kz")


@dataclass(frozen=True)
class Product:
    id: int
    name: str
    price: Decimal
    active: bool = True

    def render(self) -> dict[str, Any]:
        return {"ID": self.id, "NAME": self.name, "PRICE": f"{self.price:.2f}", "ACTIVE": "Y" if self.active else "N"}


CATALOG: Final = (
    Product(101, "Букет «Нежность»", Decimal(15000)),
    Product(102, "Розы красные 25 шт", Decimal(35000)),
    Product(103, "Тюльпаны 15 шт", Decimal(12000)),
    Product(104, "Пионы «Ақ шағала»", Decimal(28000)),
    Product(105, "Композиция в коробке «Махаббат»", Decimal(24000)),
    Product(106, "Хризантемы кустовые", Decimal("9500.50")),
    Product(107, "Букет невесты", Decimal(45000)),
    Product(108, "Корзина «Гүлдер»", Decimal(38000)),
    Product(109, "Ромашки 21 шт", Decimal(11000)),
    Product(110, "Открытка", Decimal(800)),
    Product(111, "Шары гелиевые 5 шт", Decimal(6000), active=False),
    Product(112, "Розы Эквадор 51 шт", Decimal(89000)),
)
PRODUCTS: Final = {p.id: p for p in CATALOG}


@dataclass
class User:
    id: int
    name: str
    last_name: str
    email: str
    phone: str
    registered: float

    def render(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "NAME": self.name,
            "LAST_NAME": self.last_name,
            "EMAIL": self.email,
            "PERSONAL_PHONE": self.phone,
            "DATE_REGISTER": iso_kz(self.registered),
        }


@dataclass
class Line:
    product_id: int
    name: str
    quantity: int
    price: Decimal


@dataclass
class ShopOrder:
    """An order as the shop's DB holds it; `render` gives the webhook/export shape with its variants."""

    id: int
    account_number: str
    status_id: str
    user_id: int
    inserted: float
    updated: float
    status_at: float
    props: dict[str, str]
    basket: list[Line]
    old_status_id: str | None = None
    payed: bool = False
    canceled: bool = False
    raw_name: bytes | None = None
    flags: frozenset[str] = frozenset()  # rendering variants: str_ids, num_money, naive_dates
    tags: set[str] = field(default_factory=set)  # what makes it a special case (for tests and docs)

    @property
    def price(self) -> Decimal:
        return sum((line.price * line.quantity for line in self.basket), Decimal(0))

    def render(self) -> dict[str, Any]:
        def ident(value: int) -> int | str:
            return str(value) if "str_ids" in self.flags else value

        def money(value: Decimal) -> str | int | float:
            if "num_money" not in self.flags:
                return f"{value:.2f}"
            return int(value) if value == value.to_integral_value() else float(value)

        def date(ts: float) -> str:
            return naive_kz(ts) if "naive_dates" in self.flags else iso_kz(ts)

        props: dict[str, Any] = dict(self.props)
        if self.raw_name is not None:
            props["NAME"] = RAW_MARK
        return {
            "ID": ident(self.id),
            "ACCOUNT_NUMBER": self.account_number,
            "STATUS_ID": self.status_id,
            "OLD_STATUS_ID": self.old_status_id,
            "PRICE": money(self.price),
            "CURRENCY": "KZT",
            "USER_ID": ident(self.user_id),
            "PAYED": "Y" if self.payed else "N",
            "CANCELED": "Y" if self.canceled else "N",
            "DATE_INSERT": date(self.inserted),
            "DATE_UPDATE": date(self.updated),
            "DATE_STATUS": date(self.status_at),
            "PROPERTIES": props,
            "BASKET": [
                {"PRODUCT_ID": ident(b.product_id), "NAME": b.name, "QUANTITY": b.quantity, "PRICE": money(b.price)}
                for b in self.basket
            ],
        }


def iso_kz(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), KZ).isoformat()


def naive_kz(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), KZ).strftime("%d.%m.%Y %H:%M:%S")


def kz_day(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), KZ).date().isoformat()


def phone(rng: random.Random, style: int) -> str:
    code, n = rng.choice(MOBILE), f"{rng.randrange(10**7):07d}"
    if style == 0:
        return f"+7 {code} {n[:3]} {n[3:5]} {n[5:]}"
    if style == 1:
        return f"+7{code}{n}"
    if style == 2:
        return f"8 {code} {n[:3]} {n[3:5]} {n[5:]}"  # the 8-7xx form
    if style == 3:
        return f"8{code}{n}"
    return f"7({code}){n[:3]}-{n[3:5]}-{n[5:]}"


def make_users(rng: random.Random, count: int, anchor: float) -> list[User]:
    users: list[User] = []
    for i in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        login = f"client{FIRST_USER_ID + i}"
        email = "" if rng.random() < 0.15 else f"{login}@{rng.choice(MAIL_DOMAINS)}"
        tel = "" if rng.random() < 0.1 else phone(rng, rng.randrange(5))
        registered = anchor - rng.uniform(3 * 86400, 720 * 86400)
        users.append(User(FIRST_USER_ID + i, first, last, email, tel, registered))
    return users


class OrderMaker:
    """Builds new orders (the seed and a customer's checkout) from one RNG."""

    # (tag, share): variants drawn per order; the broken ones together are ~5%.
    SHARES: Final = (
        ("no_phone", 0.04), ("no_email", 0.08), ("phone_8", 0.15), ("naive_dates", 0.1), ("str_ids", 0.1),
        ("num_money", 0.15), ("custom_status", 0.02), ("zero_price", 0.009), ("unknown_product", 0.01),
        ("dup_account", 0.008), ("bad_utf8", 0.008), ("empty_basket", 0.007),
    )  # fmt: skip

    def __init__(self, rng: random.Random, users: list[User]) -> None:
        self.rng = rng
        self.users = users
        self.next_id = FIRST_ORDER_ID

    def make(self, at: float, forced: frozenset[str] = frozenset()) -> ShopOrder:
        rng = self.rng
        tags = {tag for tag, share in self.SHARES if rng.random() < share} | set(forced)
        user = rng.choice(self.users)
        order_id, self.next_id = self.next_id, self.next_id + 1
        props = {
            "NAME": f"{user.name} {user.last_name}" if rng.random() < 0.5 else user.name,
            "PHONE": user.phone or phone(rng, rng.choice((0, 1, 4))),
            "EMAIL": user.email,
            "ADDRESS": rng.choice(ADDRESSES),
            "DELIVERY": rng.choice(DELIVERIES),
            "DELIVERY_DATE": kz_day(at + rng.choice((0, 86400, 2 * 86400))),
        }
        if "phone_8" in tags:
            props["PHONE"] = phone(rng, rng.choice((2, 3)))
        if "no_phone" in tags:
            del props["PHONE"]
        if "no_email" in tags or not props["EMAIL"]:
            del props["EMAIL"]
        basket = [
            Line(p.id, p.name, rng.choice((1, 1, 1, 2, 3)), p.price)
            for p in rng.sample(CATALOG[:10] + CATALOG[11:], rng.choice((1, 1, 2, 3)))
        ]
        if "zero_price" in tags:
            basket = [Line(b.product_id, b.name, b.quantity, Decimal(0)) for b in basket]
        if "unknown_product" in tags:
            price = Decimal(rng.choice((18000, 22000)))
            basket.append(Line(900 + rng.randrange(99), "Букет по фото клиента", 1, price))
        if "empty_basket" in tags:
            basket = []
        order = ShopOrder(order_id, str(order_id), "N", user.id, at, at, at, props, basket, tags=tags)
        if "bad_utf8" in tags:
            order.raw_name = rng.choice(RAW_NAMES)
        order.flags = frozenset(tags & {"str_ids", "num_money", "naive_dates"})
        return order


def generate(seed: int, count: int, days: int, anchor: float) -> tuple[list[User], list[ShopOrder]]:
    """Users and orders placed over the `days` before `anchor`, some already moved on in status."""
    rng = random.Random(f"bitrix-shop:{seed}")
    users = make_users(rng, max(3, count // 2), anchor)
    maker = OrderMaker(rng, users)
    span = max(days, 1) * 86400
    times = sorted(anchor - rng.uniform(600, span) for _ in range(count))
    forced: dict[int, str] = {}
    if count >= 40:  # every variant at least once, at places the seed picks
        specials = [tag for tag, _ in OrderMaker.SHARES]
        forced = dict(zip(rng.sample(range(1, count), len(specials)), specials, strict=True))
    orders: list[ShopOrder] = []
    for i, at in enumerate(times):
        order = maker.make(at, frozenset({forced[i]}) if i in forced else frozenset())
        if "dup_account" in order.tags and orders:
            order.account_number = rng.choice(orders).account_number
        orders.append(order)
        age = anchor - at
        if age > 600 and (rng.random() < 0.6 or "custom_status" in order.tags):  # worked on since: a later save
            later = at + rng.uniform(min(300, age / 2), min(age, 3 * 86400))
            status = "C" if "custom_status" in order.tags else rng.choice(("P", "P", "S", "F", "D"))
            move_status(order, status, later)
            order.payed = order.status_id in ("P", "S", "F") or order.payed
    return users, orders


def move_status(order: ShopOrder, status_id: str, at: float) -> bool:
    """A save changing the status (True when it changed); DATE_UPDATE never goes back."""
    if order.status_id == status_id:
        return False
    order.old_status_id, order.status_id = order.status_id, status_id
    order.updated = max(order.updated, at)
    order.status_at = order.updated
    order.canceled = status_id == "D"
    return True
