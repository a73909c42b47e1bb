"""Deterministic Russian fake data for the emulators (plain `random.Random`, no dependencies).

Everything is drawn from one RNG, so the same seed yields the same people, organisations, INNs
(with valid check digits), phones in the formats real users type, emails and money strings in
every shape ABCP returns (``"4630"``, ``"4630.00"``, ``"-1 582,00"``, NBSP separators, ``""``,
null, absent, and occasional garbage).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

NBSP: Final = "\u00a0"


class _Absent:
    """Marker for "the key is missing from the record"."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()

MALE_NAMES = (
    "Александр",
    "Дмитрий",
    "Максим",
    "Сергей",
    "Андрей",
    "Алексей",
    "Артём",
    "Илья",
    "Кирилл",
    "Михаил",
    "Никита",
    "Матвей",
    "Роман",
    "Егор",
    "Иван",
    "Олег",
    "Павел",
    "Владимир",
    "Николай",
    "Юрий",
    "Виктор",
    "Евгений",
    "Константин",
    "Тимур",
)
FEMALE_NAMES = (
    "Анна",
    "Мария",
    "Елена",
    "Ольга",
    "Наталья",
    "Татьяна",
    "Ирина",
    "Светлана",
    "Екатерина",
    "Юлия",
    "Анастасия",
    "Дарья",
    "Полина",
    "Ксения",
    "Алина",
    "Вера",
    "Людмила",
    "Галина",
    "Марина",
    "Виктория",
)
SURNAMES = (
    "Иванов",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Васильев",
    "Петров",
    "Соколов",
    "Михайлов",
    "Новиков",
    "Фёдоров",
    "Морозов",
    "Волков",
    "Алексеев",
    "Лебедев",
    "Семёнов",
    "Егоров",
    "Павлов",
    "Козлов",
    "Степанов",
    "Николаев",
    "Орлов",
    "Андреев",
    "Макаров",
    "Никитин",
    "Захаров",
    "Зайцев",
    "Соловьёв",
    "Борисов",
    "Яковлев",
    "Григорьев",
    "Романов",
    "Воробьёв",
)
SURNAMES_INVARIANT = ("Шевченко", "Коваленко", "Бондаренко", "Черных", "Седых", "Ким", "Цой")
FATHER_NAMES = (
    "Александр",
    "Дмитрий",
    "Сергей",
    "Андрей",
    "Алексей",
    "Иван",
    "Михаил",
    "Николай",
    "Владимир",
    "Виктор",
    "Евгений",
    "Павел",
    "Олег",
    "Юрий",
    "Пётр",
    "Григорий",
)
CITIES = (
    "Москва",
    "Санкт-Петербург",
    "Новосибирск",
    "Екатеринбург",
    "Казань",
    "Нижний Новгород",
    "Челябинск",
    "Самара",
    "Омск",
    "Ростов-на-Дону",
    "Уфа",
    "Красноярск",
    "Воронеж",
    "Пермь",
    "Волгоград",
    "Краснодар",
    "Саратов",
    "Тюмень",
    "Тольятти",
    "Ижевск",
    "Барнаул",
    "Иркутск",
)
STREETS = (
    "ул. Ленина",
    "ул. Гагарина",
    "пр-т Мира",
    "ул. Советская",
    "ул. Садовая",
    "ул. Лесная",
    "ул. Школьная",
    "ул. Молодёжная",
    "Московское ш.",
    "ул. Заводская",
    "ул. Полевая",
)
ORG_WORDS = (
    "Ромашка",
    "Автодеталь",
    "Запчасть-Сервис",
    "Техноснаб",
    "АвтоМир",
    "Колесо",
    "Форсаж",
    "Магистраль",
    "Мотор",
    "ТрансАвто",
    "Гарант",
    "Стройтехника",
    "Вектор",
    "Деталь Плюс",
    "Автолюкс",
    "Северный ветер",
    "Партнёр",
    "Спектр",
    "Альянс",
    "Движок",
    "Перекрёсток",
)
ORG_FORMS = ("ООО", "ООО", "ООО", "ИП", "АО", "ПАО", "ЗАО")
BANKS = ("ПАО Сбербанк", "Банк ВТБ (ПАО)", "АО «Альфа-Банк»", "АО «Тинькофф Банк»", "ПАО «Промсвязьбанк»")
MAIL_DOMAINS = ("mail.ru", "yandex.ru", "gmail.com", "bk.ru", "list.ru", "inbox.ru", "rambler.ru")
MOBILE_CODES = (
    "900",
    "903",
    "905",
    "909",
    "910",
    "912",
    "915",
    "916",
    "917",
    "919",
    "920",
    "925",
    "926",
    "929",
    "950",
    "952",
    "960",
    "963",
    "977",
    "985",
    "987",
    "999",
)

_TRANSLIT = {
    "а": "a",
    "б": "b",
    "в": "v",
    "г": "g",
    "д": "d",
    "е": "e",
    "ё": "e",
    "ж": "zh",
    "з": "z",
    "и": "i",
    "й": "y",
    "к": "k",
    "л": "l",
    "м": "m",
    "н": "n",
    "о": "o",
    "п": "p",
    "р": "r",
    "с": "s",
    "т": "t",
    "у": "u",
    "ф": "f",
    "х": "kh",
    "ц": "ts",
    "ч": "ch",
    "ш": "sh",
    "щ": "sch",
    "ъ": "",
    "ы": "y",
    "ь": "",
    "э": "e",
    "ю": "yu",
    "я": "ya",
}


def translit(text: str) -> str:
    return "".join(_TRANSLIT.get(ch, ch) for ch in text.lower())


def _patronymic(father: str, female: bool) -> str:
    stem = father.replace("ё", "е")
    if stem.endswith("й"):
        stem = stem[:-1]
        return stem + ("евна" if female else "евич")
    if stem.endswith("а"):
        return stem[:-1] + ("ична" if female else "ич")
    return stem + ("овна" if female else "ович")


def _female_surname(surname: str) -> str:
    if surname.endswith(("ов", "ев", "ёв", "ин")):
        return surname + "а"
    return surname


def _inn_check(digits: list[int], weights: tuple[int, ...]) -> int:
    return sum(d * w for d, w in zip(digits, weights, strict=False)) % 11 % 10


@dataclass(frozen=True)
class Person:
    first: str
    middle: str
    last: str
    female: bool


class RuFaker:
    """All generators share one RNG: draw order is part of the determinism contract."""

    def __init__(self, seed: int | random.Random) -> None:
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)

    def person(self) -> Person:
        female = self.rng.random() < 0.45
        first = self.rng.choice(FEMALE_NAMES if female else MALE_NAMES)
        middle = _patronymic(self.rng.choice(FATHER_NAMES), female)
        if self.rng.random() < 0.1:
            last = self.rng.choice(SURNAMES_INVARIANT)
        else:
            last = self.rng.choice(SURNAMES)
            last = _female_surname(last) if female else last
        return Person(first, middle, last, female)

    def city(self) -> str:
        return self.rng.choice(CITIES)

    def address(self, city: str | None = None) -> str:
        city = city or self.city()
        index = self.rng.randint(101000, 692999)
        return f"{index}, г. {city}, {self.rng.choice(STREETS)}, д. {self.rng.randint(1, 150)}"

    def organisation(self) -> tuple[str, str]:
        """(form, name) e.g. ("ООО", "ООО «Ромашка»")."""
        form = self.rng.choice(ORG_FORMS)
        word = self.rng.choice(ORG_WORDS)
        if form == "ИП":
            person = self.person()
            return form, f"ИП {person.last} {person.first[0]}.{person.middle[0]}."
        quote = self.rng.choice(("«{}»", '"{}"', "{}"))
        return form, f"{form} {quote.format(word)}"

    def inn_legal(self) -> str:
        digits = [self.rng.randint(0, 9) for _ in range(9)]
        digits[0] = self.rng.randint(1, 9)
        digits.append(_inn_check(digits, (2, 4, 10, 3, 5, 9, 4, 6, 8)))
        return "".join(map(str, digits))

    def inn_person(self) -> str:
        digits = [self.rng.randint(0, 9) for _ in range(10)]
        digits[0] = self.rng.randint(1, 9)
        digits.append(_inn_check(digits, (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)))
        digits.append(_inn_check(digits, (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)))
        return "".join(map(str, digits))

    def kpp(self, inn: str) -> str:
        return f"{inn[:4]}01001"

    def ogrn(self) -> str:
        body = self.rng.choice("15") + self.digits(11)
        return body + str(int(body) % 11 % 10)

    def digits(self, count: int) -> str:
        return "".join(str(self.rng.randint(0, 9)) for _ in range(count))

    def mobile_national(self) -> str:
        """Ten digits of a Russian mobile number without the country code."""
        return self.rng.choice(MOBILE_CODES) + self.digits(7)

    def phone(self, national: str | None = None) -> str:
        """One Russian mobile number written the way people type it."""
        n = national or self.mobile_national()
        style = self.rng.randrange(7)
        if style == 0:
            return f"+7 ({n[:3]}) {n[3:6]}-{n[6:8]}-{n[8:]}"
        if style == 1:
            return f"8{n}"
        if style == 2:
            return n
        if style == 3:
            return f"+7{n}"
        if style == 4:
            return f"8 ({n[:3]}) {n[3:6]}-{n[6:8]}-{n[8:]}"
        if style == 5:
            return f"+7 {n[:3]} {n[3:6]} {n[6:8]} {n[8:]}"
        return f"8-{n[:3]}-{n[3:6]}-{n[6:8]}-{n[8:]}"

    def email(self, person: Person, salt: int = 0) -> str:
        first, last = translit(person.first), translit(person.last)
        style = self.rng.randrange(4)
        local = (
            f"{first}.{last}",
            f"{last}{self.rng.randint(1, 99)}",
            f"{first[0]}{last}",
            f"{last}.{first}{salt % 100}",
        )[style]
        email = f"{local}@{self.rng.choice(MAIL_DOMAINS)}"
        return email.upper() if self.rng.random() < 0.05 else email

    def amount(self, low: float = -20000.0, high: float = 90000.0) -> float:
        cents = self.rng.random() < 0.5
        value = self.rng.uniform(low, high)
        return round(value, 2) if cents else float(round(value))

    def money(self, value: float | None = None) -> str | _Absent | None:
        """A money string in one of ABCP's shapes, or None/ABSENT/garbage now and then."""
        roll = self.rng.random()
        if roll < 0.04:
            return ABSENT
        if roll < 0.08:
            return None
        if roll < 0.11:
            return ""
        if roll < 0.13:
            return self.rng.choice(("n/a", "—", "нет данных", "12,34,56"))
        amount = self.amount() if value is None else value
        return format_money(amount, self.rng.randrange(5))


def format_money(amount: float, style: int) -> str:
    """Render ``amount`` in ABCP style ``style`` (0..4)."""
    if style == 0:
        return str(round(amount)) if float(amount).is_integer() else f"{amount:.2f}"
    if style == 1:
        return f"{amount:.2f}"
    sign = "-" if amount < 0 else ""
    whole, frac = f"{abs(amount):.2f}".split(".")
    groups: list[str] = []
    while whole:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    sep = " " if style in (2, 4) else NBSP
    if style == 4:
        return f"{sign}{sep.join(groups)}"
    return f"{sign}{sep.join(groups)},{frac}"
