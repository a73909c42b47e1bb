"""Deterministic data of the Kaspi.kz Shop emulator: a stable catalog, customers and orders.

Everything comes from seeded `random.Random` instances. The catalog (60 products with stable
master codes, merchant SKUs, names and KZT prices) is the same for every seed; orders and
customers depend on the seed and on the anchor time. Day boundaries are Kazakhstan time: all of
Kazakhstan is UTC+5 since 2024-03-01 (old tzdata says +6 for Almaty), so a fixed offset is used
instead of a zone name.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from integration_sync.sandbox.fakedata import FEMALE_NAMES, MALE_NAMES, SURNAMES

KZ_TZ: Final = timezone(timedelta(hours=5))
DAY_MS: Final = 86_400_000

STATES: Final = ("NEW", "SIGN_REQUIRED", "PICKUP", "DELIVERY", "KASPI_DELIVERY", "ARCHIVE")
STATUSES: Final = (
    "APPROVED_BY_BANK",
    "ACCEPTED_BY_MERCHANT",
    "COMPLETED",
    "CANCELLED",
    "CANCELLING",
    "KASPI_DELIVERY_RETURN_REQUESTED",
    "RETURN_ACCEPTED_BY_MERCHANT",
    "RETURNED",
)
FINAL_STATUSES: Final = frozenset({"COMPLETED", "CANCELLED", "RETURNED"})
RETURN_STATUSES: Final = frozenset({"KASPI_DELIVERY_RETURN_REQUESTED", "RETURN_ACCEPTED_BY_MERCHANT", "RETURNED"})
PICKUP_MODES: Final = frozenset({"DELIVERY_PICKUP", "DELIVERY_REGIONAL_PICKUP"})
DELIVERY_MODES: Final = ("DELIVERY_PICKUP", "DELIVERY_LOCAL", "DELIVERY_REGIONAL_TODOOR", "DELIVERY_REGIONAL_PICKUP")
PHONE_PREFIXES: Final = ("700", "701", "702", "705", "707", "708", "771", "775", "776", "777", "778")
PICKUP_POINTS: Final = ("merchant_PP1", "merchant_PP2")

KZ_MALE: Final = (
    "Нурлан",
    "Ерлан",
    "Айдос",
    "Бауыржан",
    "Даурен",
    "Ерболат",
    "Арман",
    "Ержан",
    "Санжар",
    "Нурсултан",
    "Асхат",
    "Марат",
    "Ильяс",
    "Алишер",
    "Данияр",
    "Олжас",
    "Жандос",
    "Руслан",
)
KZ_FEMALE: Final = (
    "Айгерим",
    "Асель",
    "Дана",
    "Мадина",
    "Жанар",
    "Алия",
    "Гульнара",
    "Салтанат",
    "Айнур",
    "Динара",
    "Камила",
    "Аружан",
    "Жанна",
    "Сауле",
    "Меруерт",
    "Томирис",
)
KZ_SURNAMES: Final = (
    "Ахметов",
    "Нурланов",
    "Серикбаев",
    "Жумабаев",
    "Касымов",
    "Абдрахманов",
    "Оспанов",
    "Тулегенов",
    "Бекмухамбетов",
    "Сейтказиев",
    "Кенжебаев",
    "Ермеков",
    "Омаров",
    "Искаков",
    "Смагулов",
    "Байжанов",
    "Мукашев",
    "Садыков",
    "Нургалиев",
    "Калиев",
)
# (town, weight, latitude, longitude, streets)
TOWNS: Final = (
    ("Алматы", 35, 43.2389, 76.8897, ("улица Наурызбай батыра", "проспект Абая", "улица Толе би", "проспект Достык")),
    (
        "Астана",
        25,
        51.1605,
        71.4704,
        ("проспект Мангилик Ел", "улица Кенесары", "проспект Республики", "улица Сыганак"),
    ),
    ("Шымкент", 10, 42.3417, 69.5901, ("проспект Тауке хана", "улица Байтурсынова", "проспект Республики")),
    ("Караганда", 7, 49.8047, 73.1094, ("проспект Бухар жырау", "улица Ерубаева", "проспект Нуркена Абдирова")),
    ("Актобе", 5, 50.2839, 57.1670, ("проспект Абилкайыр хана", "улица Маресьева")),
    ("Павлодар", 4, 52.2873, 76.9674, ("улица Лермонтова", "улица Академика Сатпаева")),
    ("Усть-Каменогорск", 4, 49.9483, 82.6275, ("улица Казахстан", "проспект Независимости")),
    ("Атырау", 4, 47.0945, 51.9238, ("улица Сатпаева", "проспект Азаттык")),
    ("Костанай", 3, 53.2198, 63.6354, ("улица Баймагамбетова", "проспект Аль-Фараби")),
    ("Актау", 3, 43.6410, 51.1985, ("микрорайон 14", "микрорайон 5")),
)

# (name template, category code, category title, base price KZT, unit type, weight in grams, imei)
_CATALOG_BASE: Final = (
    ("Смартфон Samsung Galaxy A15 {v}", "Master - Smartphones", "Смартфоны", 79990, "PIECES", 200, True),
    ("Смартфон Apple iPhone 13 {v}", "Master - Smartphones", "Смартфоны", 299990, "PIECES", 180, True),
    ("Смартфон Xiaomi Redmi Note 13 {v}", "Master - Smartphones", "Смартфоны", 99990, "PIECES", 190, True),
    ("Наушники Apple AirPods Pro 2 {v}", "Master - Headphones", "Наушники", 119990, "PIECES", 60, False),
    ("Наушники JBL Tune 520BT {v}", "Master - Headphones", "Наушники", 21990, "PIECES", 160, False),
    ("Умные часы Xiaomi Redmi Watch 4 {v}", "Master - Smart watches", "Умные часы", 39990, "PIECES", 50, False),
    ("Пылесос Dyson V11 {v}", "Master - Vacuum cleaners", "Пылесосы", 289990, "PIECES", 3000, False),
    ("Робот-пылесос Xiaomi Robot Vacuum S10 {v}", "Master - Vacuum cleaners", "Пылесосы", 89990, "PIECES", 3500, False),
    ("Чайник электрический Tefal {v}", "Master - Electric kettles", "Электрочайники", 14990, "PIECES", 1200, False),
    ("Мультиварка Redmond RMC-M90 {v}", "Master - Multicookers", "Мультиварки", 32990, "PIECES", 4000, False),
    ("Фен Philips BHD308 {v}", "Master - Hair dryers", "Фены", 17990, "PIECES", 600, False),
    ("Утюг Philips DST3020 {v}", "Master - Irons", "Утюги", 19990, "PIECES", 1400, False),
    ("Блендер Bosch MSM2410 {v}", "Master - Blenders", "Блендеры", 15990, "PIECES", 1000, False),
    ("Микроволновая печь LG MS2042 {v}", "Master - Microwaves", "Микроволновые печи", 44990, "PIECES", 10500, False),
    ("Телевизор Samsung UE43CU7100 {v}", "Master - TVs", "Телевизоры", 189990, "PIECES", 8000, False),
    ("Power bank Xiaomi 20000 мА·ч {v}", "Master - Power banks", "Внешние аккумуляторы", 12990, "PIECES", 400, False),
    ("Кабель USB Type-C Baseus 1 м {v}", "Master - Cables", "Кабели и переходники", 2990, "PIECES", 50, False),
    ("Чехол для iPhone 13 силиконовый {v}", "Master - Phone cases", "Чехлы для телефонов", 3490, "PIECES", 40, False),
    ("Подгузники Pampers Premium Care 4 {v}", "Master - Diapers", "Подгузники", 12490, "PIECES", 2200, False),
    ("Конструктор LEGO City {v}", "Master - Constructors", "Конструкторы", 24990, "PIECES", 700, False),
    ("Шампунь Head & Shoulders 400 мл {v}", "Master - Shampoos", "Шампуни", 3290, "PIECES", 450, False),
    ("Крем для лица Nivea Soft 100 мл {v}", "Master - Face creams", "Кремы для лица", 2490, "PIECES", 120, False),
    ("Кофе молотый Lavazza Qualità Oro 250 г {v}", "Master - Coffee", "Кофе", 5990, "PIECES", 250, False),
    ("Чай Tess черный 100 пакетиков {v}", "Master - Tea", "Чай", 2290, "PIECES", 200, False),
    (
        "Фруктовик яблоко черный принц Польша 1 кг {v}",
        "Master - Fruits",
        "Фрукты",
        2000,
        "MEASURABLE_PIECES",
        1000,
        False,
    ),
    ("Кроссовки Nike Revolution 6 {v}", "Master - Sneakers", "Кроссовки", 34990, "PIECES", 800, False),
    ("Рюкзак Xiaomi Mi Casual Daypack {v}", "Master - Backpacks", "Рюкзаки", 8990, "PIECES", 350, False),
    ("Зонт складной Doppler {v}", "Master - Umbrellas", "Зонты", 9990, "PIECES", 400, False),
    ("Сковорода Tefal Hard Titanium 26 см {v}", "Master - Frying pans", "Сковороды", 16990, "PIECES", 1300, False),
    ("Постельное белье 2-спальное сатин {v}", "Master - Bed linen", "Постельное белье", 18990, "PIECES", 1800, False),
)
_VARIANTS: Final = (("черный", 1.0), ("белый", 1.04))


@dataclass(frozen=True)
class Product:
    """One catalog product: Kaspi's master product and this merchant's offer of it."""

    master_id: str
    master_code: str
    name: str
    category_code: str
    category_title: str
    price: int
    unit_type: str
    weight: float
    imei: bool
    merchant_id: str
    sku: str
    merchant_name: str


@dataclass(frozen=True)
class Customer:
    id: str
    first_name: str
    last_name: str
    cell_phone: str

    def as_attributes(self) -> dict[str, Any]:
        """The order's `customer` as Kaspi sends it. Recorded orders often carry only `name` and
        `cellPhone` (no firstName/lastName); others the split name, with `name` null or filled.
        The variant is drawn from the customer id, so the main sequence is unchanged."""
        full = f"{self.first_name} {self.last_name}"
        variant = random.Random(f"kaspi-customer-shape:{self.id}").random()
        if variant < 0.45:
            return {"id": self.id, "name": full, "cellPhone": self.cell_phone}
        name = full if variant < 0.6 else None
        return {
            "id": self.id,
            "name": name,
            "cellPhone": self.cell_phone,
            "firstName": self.first_name,
            "lastName": self.last_name,
        }


@dataclass
class Entry:
    id: str
    entry_number: int
    product: Product
    quantity: int
    base_price: float
    total_price: float
    delivery_cost: float
    weight: float
    with_offer: bool
    point_of_service_id: str


@dataclass
class Order:
    """A generated order: JSON:API attributes (mutable through the control routes) and entries."""

    code: str
    id: str
    customer: Customer
    attributes: dict[str, Any]
    entries: list[Entry] = field(default_factory=list)
    seq: int = 0  # insertion order: the tie-breaker of the creationDate sort


def b64(text: str) -> str:
    """URL-safe base64 (ids travel in URL paths, where a ``/`` would split them)."""
    return base64.urlsafe_b64encode(text.encode()).decode()


def order_id(code: str) -> str:
    """The order's JSON:API id: base64 of its code (the real API's scheme)."""
    return base64.b64encode(code.encode()).decode()


def build_catalog() -> tuple[Product, ...]:
    """The merchant's 60 products; the same for every seed."""
    rng = random.Random("kaspi-catalog")
    products: list[Product] = []
    used: set[str] = set()
    for index, (template, cat_code, cat_title, price, unit, weight, imei) in enumerate(_CATALOG_BASE):
        for vindex, (variant, factor) in enumerate(_VARIANTS):
            code = str(rng.randint(100_000_000, 199_999_999))
            while code in used:
                code = str(rng.randint(100_000_000, 199_999_999))
            used.add(code)
            name = template.format(v=variant).strip()
            sku = f"ART-{index + 1:03d}-{vindex + 1}"
            merchant_name = name if rng.random() < 0.7 else f"{name} (оригинал)"
            products.append(
                Product(
                    master_id=b64(f"masterproduct:{code}"),
                    master_code=code,
                    name=name,
                    category_code=cat_code,
                    category_title=cat_title,
                    price=int(round(price * factor / 10.0) * 10),
                    unit_type=unit,
                    weight=float(weight),
                    imei=imei,
                    merchant_id=b64(f"merchantproduct:{sku}"),
                    sku=sku,
                    merchant_name=merchant_name,
                )
            )
    return tuple(products)


CATALOG: Final = build_catalog()


def state_for(status: str, attributes: dict[str, Any]) -> str:
    """The state an order is in once it reaches ``status`` (given its delivery attributes)."""
    if status == "APPROVED_BY_BANK":
        return "SIGN_REQUIRED" if attributes.get("signatureRequired") else "NEW"
    if status in FINAL_STATUSES or status in RETURN_STATUSES:
        return "ARCHIVE"
    if attributes.get("isKaspiDelivery"):
        return "KASPI_DELIVERY"
    if attributes.get("deliveryMode") in PICKUP_MODES:
        return "PICKUP"
    return "DELIVERY"


def kz_day_start(ts: float) -> datetime:
    """Midnight (Kazakhstan time) of the day ``ts`` falls in."""
    return datetime.fromtimestamp(ts, KZ_TZ).replace(hour=0, minute=0, second=0, microsecond=0)


# Orders per local hour: quiet at night, busy in the evening.
_HOUR_WEIGHTS: Final = (1, 1, 1, 1, 1, 1, 2, 3, 5, 6, 7, 7, 8, 8, 7, 7, 7, 8, 9, 10, 10, 9, 6, 3)


def creation_times(rng: random.Random, count: int, days: int, anchor: float) -> list[int]:
    """``count`` creation times (epoch ms), ascending, over the last ``days`` Kazakh calendar days.

    Day 1 is today (from local midnight to ``anchor``); nothing lies after ``anchor``.
    """
    days = max(days, 1)
    first_day = kz_day_start(anchor) - timedelta(days=days - 1)
    anchor_ms = int(anchor * 1000)
    times: list[int] = []
    for _ in range(count):
        for _attempt in range(20):
            day = first_day + timedelta(days=rng.randrange(days))
            hour = rng.choices(range(24), weights=_HOUR_WEIGHTS)[0]
            ms = int(day.timestamp() * 1000) + hour * 3_600_000 + rng.randrange(3_600_000)
            if ms <= anchor_ms:
                break
        else:
            start = int(first_day.timestamp() * 1000)
            ms = rng.randint(start, anchor_ms)
        times.append(ms)
    times.sort()
    return times


class OrderFactory:
    """Makes orders and customers; keeps the customer pool so customers repeat across orders."""

    def __init__(self, seed: int, offer_missing_share: float) -> None:
        self.seed = seed
        self.offer_missing_share = offer_missing_share
        self.customers: list[Customer] = []
        self._phones: set[str] = set()
        self._customer_ids: set[str] = set()
        self._rng = random.Random(f"kaspi-customers:{seed}")

    # ------------------------------------------------------------------ customers
    def new_customer(self) -> Customer:
        rng = self._rng
        female = rng.random() < 0.5
        if rng.random() < 0.6:
            first = rng.choice(KZ_FEMALE if female else KZ_MALE)
            last = rng.choice(KZ_SURNAMES)
        else:
            first = rng.choice(FEMALE_NAMES if female else MALE_NAMES)
            last = rng.choice(SURNAMES)
        if female and last.endswith(("ов", "ев", "ёв", "ин")):
            last += "а"
        phone = rng.choice(PHONE_PREFIXES) + f"{rng.randrange(10_000_000):07d}"
        while phone in self._phones:
            phone = rng.choice(PHONE_PREFIXES) + f"{rng.randrange(10_000_000):07d}"
        cid = str(rng.randint(10_000_000, 99_999_999))
        while cid in self._customer_ids:
            cid = str(rng.randint(10_000_000, 99_999_999))
        customer = Customer(id=cid, first_name=first, last_name=last, cell_phone=phone)
        self._phones.add(phone)
        self._customer_ids.add(cid)
        self.customers.append(customer)
        return customer

    def pick_customer(self, rng: random.Random, repeat_share: float) -> Customer:
        if self.customers and rng.random() < repeat_share:
            return rng.choice(self.customers)
        return self.new_customer()

    # ------------------------------------------------------------------ orders
    def make_order(
        self,
        rng: random.Random,
        code: str,
        created_ms: int,
        customer: Customer,
        status: str | None = None,
        age_ms: int = 0,
    ) -> Order:
        """One order; ``status`` None draws it from the order's age."""
        mode = rng.choices(DELIVERY_MODES, weights=(30, 35, 25, 10))[0]
        kaspi_delivery = mode.startswith("DELIVERY_REGIONAL") or (mode == "DELIVERY_LOCAL" and rng.random() < 0.4)
        credit = rng.random() < 0.6
        count = rng.choices((1, 2, 3, 4, 5), weights=(15, 20, 30, 20, 15))[0]
        products = _distinct_products(rng, count)
        point = f"{rng.choice(PICKUP_POINTS)}"
        entries: list[Entry] = []
        pickup = mode in PICKUP_MODES
        order_delivery = 0.0 if pickup else float(rng.choice((0, 500, 990, 1490, 1990)))
        for number, product in enumerate(products):
            quantity = rng.choices((1, 2, 3), weights=(75, 18, 7))[0]
            base = float(product.price)
            delivery = order_delivery if number == 0 else 0.0
            entries.append(
                Entry(
                    id=b64(f"{code}:{number}"),
                    entry_number=number,
                    product=product,
                    quantity=quantity,
                    base_price=base,
                    total_price=base * quantity,
                    delivery_cost=delivery,
                    weight=product.weight * quantity,
                    with_offer=rng.random() >= self.offer_missing_share,
                    point_of_service_id=b64(f"pos:{point}"),
                )
            )
        attributes: dict[str, Any] = {
            "code": code,
            "totalPrice": float(sum(e.total_price for e in entries)),
            "paymentMode": "PAY_WITH_CREDIT" if credit else "PREPAID",
            "plannedDeliveryDate": created_ms + rng.randint(1, 5) * DAY_MS,
            "creationDate": created_ms,
            "deliveryCostForSeller": (order_delivery if rng.random() < 0.5 else 0.0) if kaspi_delivery else 0.0,
            "isKaspiDelivery": kaspi_delivery,
            "deliveryMode": mode,
        }
        if not pickup:
            attributes["deliveryAddress"] = _address(rng)
        attributes["signatureRequired"] = credit and rng.random() < 0.05
        if credit:
            attributes["creditTerm"] = rng.choice((3, 6, 12, 24))
        attributes["preOrder"] = rng.random() < 0.03
        attributes["pickupPointId"] = point
        attributes["state"] = "NEW"
        attributes["approvedByBankDate"] = created_ms + rng.randint(5_000, 120_000)
        attributes["status"] = "APPROVED_BY_BANK"
        attributes["customer"] = customer.as_attributes()
        attributes["deliveryCost"] = order_delivery
        attributes["isImeiRequired"] = any(e.product.imei for e in entries)
        chosen = status or _status_for_age(rng, age_ms)
        attributes["status"] = chosen
        attributes["state"] = state_for(chosen, attributes)
        _real_traffic_parts(attributes, code, created_ms)
        return Order(code=code, id=order_id(code), customer=customer, attributes=attributes, entries=entries)


def _real_traffic_parts(attributes: dict[str, Any], code: str, created_ms: int) -> None:
    """What recorded Kaspi orders carry beyond the guide: `assembled`, and on Kaspi-delivered orders
    `kaspiDelivery` (waybill, courier transmission dates, set once the order is handed over), also
    with `deliveryMode: DELIVERY_PICKUP`. Drawn from the code so the main sequence is unchanged."""
    rng = random.Random(f"kaspi-order-extra:{code}")
    if attributes["deliveryMode"] == "DELIVERY_PICKUP" and rng.random() < 0.3:
        attributes["isKaspiDelivery"] = True  # a postamat / Kaspi pickup handed to Kaspi's courier
        attributes["state"] = state_for(attributes["status"], attributes)
    if rng.random() < 0.8:  # older orders lack it
        attributes["assembled"] = attributes["status"] not in ("APPROVED_BY_BANK",) and rng.random() < 0.7
    if attributes["isKaspiDelivery"]:
        planned = created_ms + rng.randint(1, 2) * DAY_MS
        delivery: dict[str, Any] = {
            "waybill": None,
            "courierTransmissionDate": None,
            "courierTransmissionPlanningDate": planned if rng.random() < 0.8 else None,
            "waybillNumber": None,
            "express": rng.random() < 0.1,
            "returnedToWarehouse": False,
            "firstMileCourier": None,
        }
        if attributes["status"] != "APPROVED_BY_BANK" and rng.random() < 0.7:
            number = f"{rng.randrange(10**11):011d}"
            delivery["waybill"] = f"https://kaspi.kz/merchantcabinet/api/order/downloadWaybill/{number}"
            delivery["waybillNumber"] = number
            delivery["courierTransmissionDate"] = planned + rng.randint(0, 7_200_000)
        attributes["kaspiDelivery"] = delivery


def _distinct_products(rng: random.Random, count: int) -> list[Product]:
    weights = [1.0 / (1 + i % 20) for i in range(len(CATALOG))]  # some products sell more often
    chosen: list[Product] = []
    while len(chosen) < count:
        product = rng.choices(CATALOG, weights=weights)[0]
        if product not in chosen:
            chosen.append(product)
    return chosen


def _address(rng: random.Random) -> dict[str, Any]:
    town, _w, lat, lon, streets = rng.choices(TOWNS, weights=[t[1] for t in TOWNS])[0]
    street = rng.choice(streets)
    number = f"{rng.randint(1, 250)}{rng.choice(('', '', '', 'А', 'Б'))}"
    apartment = str(rng.randint(1, 180)) if rng.random() < 0.6 else None
    return {
        "streetName": street,
        "streetNumber": number,
        "town": town,
        "district": None,
        "building": None,
        "apartment": apartment,
        "formattedAddress": f"{town}, {street}, {number}",
        "latitude": round(lat + rng.uniform(-0.05, 0.05), 6),
        "longitude": round(lon + rng.uniform(-0.05, 0.05), 6),
    }


def _status_for_age(rng: random.Random, age_ms: int) -> str:
    hours = age_ms / 3_600_000
    if hours < 1:
        table: tuple[tuple[str, int], ...] = (("APPROVED_BY_BANK", 80), ("ACCEPTED_BY_MERCHANT", 20))
    elif hours < 24:
        table = (("APPROVED_BY_BANK", 35), ("ACCEPTED_BY_MERCHANT", 50), ("CANCELLED", 8), ("CANCELLING", 7))
    elif hours < 96:
        table = (("ACCEPTED_BY_MERCHANT", 25), ("COMPLETED", 60), ("CANCELLED", 10), ("CANCELLING", 5))
    else:
        table = (
            ("COMPLETED", 80),
            ("CANCELLED", 12),
            ("RETURNED", 4),
            ("KASPI_DELIVERY_RETURN_REQUESTED", 2),
            ("RETURN_ACCEPTED_BY_MERCHANT", 2),
        )
    return rng.choices([s for s, _ in table], weights=[w for _, w in table])[0]


def generate_orders(
    seed: int, count: int, days: int, anchor: float, repeat_share: float, offer_missing_share: float
) -> tuple[OrderFactory, list[Order]]:
    """``count`` orders over the last ``days`` days before ``anchor``, ascending by creationDate."""
    factory = OrderFactory(seed, offer_missing_share)
    master = random.Random(f"kaspi-orders:{seed}")
    times = creation_times(master, count, days, anchor)
    code = 580_000_000 + master.randrange(10_000_000)
    orders: list[Order] = []
    anchor_ms = int(anchor * 1000)
    for index, created in enumerate(times):
        code += master.randint(1, 4000)
        rng = random.Random(f"kaspi-order:{seed}:{index}")
        customer = factory.pick_customer(rng, repeat_share)
        orders.append(factory.make_order(rng, str(code), created, customer, age_ms=anchor_ms - created))
    return factory, orders
