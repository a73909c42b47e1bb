"""The education platform (pl.el-ed.ru) emulator: realistic payment webhooks, signed and sent.

- `PaymentGenerator` draws payments from one seeded RNG (same seed, same payments; only
  ``created_at`` is the clock's "now" in Moscow): 1–3 course items of one exam (ЕГЭ/ОГЭ) with
  distinct subjects, CONFIRMED, RUB, unique ``pay_…``/``inv_…`` ids, an optional promo code and UTM
  tags that cover the three amoCRM pipelines (`expected_pipeline`). Customers are either *known*
  (amoCRM contacts, sent with the phone/email/Telegram id exactly as amoCRM holds them, sometimes
  only one of them) or new `RuFaker` people typing their phone as ``8XXXXXXXXXX`` or ``+7XXXXXXXXXX``.
- `sign` makes the ``X-Signature`` (and ``X-Timestamp``) headers the receiver verifies.
- `send_payments` posts a planned mix of first sends, re-sends of already sent payments (expected
  409) and wrongly signed sends (expected 401) from a pool of threads, optionally paced to a rate,
  and returns a JSON-able summary; `run_sends` returns the full `SendReport`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import httpx

from integration_sync.sandbox.amocrm_schema import AMO_CONTACT_FIELD_TG_ID, AMO_CONTACT_FIELD_TG_USERNAME, SUBJECTS
from integration_sync.sandbox.fakedata import RuFaker, translit
from integration_sync.webhooks.models import MOSCOW

JsonDict = dict[str, Any]
PipelineName = Literal["partners", "yandex", "site"]
SendKind = Literal["first", "duplicate", "bad_signature"]

# The sandbox's published (fake) shared secret, like the other sandbox credentials.
PLATFORM_WEBHOOK_SECRET: Final = "sandbox-platform-webhook-secret"  # noqa: S105 (published, sandbox only)
PLATFORM_DOMAIN: Final = "pl.el-ed.ru"
WEBHOOK_PATH: Final = "/webhook/payment"

PARTNER_SOURCES: Final = (
    "advcake",
    "flocktory",
    "tutortop",
    "sravni",
    "tbank",
    "reshuege",
    "ris.promo",
    "gdeslon",
    "admitad",
    "pfm",
)
YANDEX_MEDIUMS: Final = ("cpc", "el-ege", "cpm")
PROJECTS: Final = ("ЕГЭ", "ОГЭ")
# (name, lessons, lowest cost, highest cost); costs end in 90 like the platform's price list
COURSES: Final = (
    ("Годовой 2к25 стандарт", 32, 4990, 8990),
    ("Годовой 2к25 PRO", 48, 7990, 15000),
    ("Полугодовой курс", 24, 5990, 12990),
    ("Мастер-группа", 8, 2990, 5990),
    ("Интенсив к экзамену", 10, 2990, 6990),
    ("Курс за месяц", 8, 2990, 4990),
)
PAYMENT_METHODS: Final = ("SBP", "SBP", "SBP", "CARD", "CARD", "SBERPAY", "TPAY", "YANDEXPAY", "INSTALLMENT")
PROMO_CODES: Final = ("PROMO2025", "EGE10", "OGE500", "FRIEND1000", "SUMMER25", "BLACKFRIDAY", "ELED15")
SEASONS: Final = ("summer2025", "autumn2025", "winter2026", "spring2026", "ege2026", "oge2026")


def expected_pipeline(utm: Mapping[str, Any] | None) -> PipelineName:
    """The amoCRM pipeline the seed's rules give these UTM tags: partners by source, Yandex by medium, else site."""
    source = str((utm or {}).get("source") or "").strip().lower()
    medium = str((utm or {}).get("medium") or "").strip().lower()
    if source in PARTNER_SOURCES:
        return "partners"
    if medium in YANDEX_MEDIUMS:
        return "yandex"
    return "site"


# ------------------------------------------------------------------------------------------ customers
@dataclass(frozen=True)
class Customer:
    """A platform user; ``contact_id`` is set for a customer taken from the amoCRM contacts."""

    first_name: str
    last_name: str
    phone: str | None = None
    email: str | None = None
    telegram_id: str | None = None
    telegram_tag: str | None = None
    contact_id: int | None = None


def _first_value(contact: Mapping[str, Any], *, code: str | None = None, field_id: int | None = None) -> str | None:
    for cf in contact.get("custom_fields_values") or ():
        if (code is not None and cf.get("field_code") == code) or (
            field_id is not None and cf.get("field_id") == field_id
        ):
            for item in cf.get("values") or ():
                value = item.get("value")
                if value not in (None, ""):
                    return str(value)
    return None


def customers_from_contacts(contacts: Iterable[Mapping[str, Any]]) -> list[Customer]:
    """Known customers from amoCRM contacts in the API's read form (those with a phone, email or Telegram id)."""
    customers = []
    for contact in contacts:
        customer = Customer(
            first_name=str(contact.get("first_name") or ""),
            last_name=str(contact.get("last_name") or ""),
            phone=_first_value(contact, code="PHONE"),
            email=_first_value(contact, code="EMAIL"),
            telegram_id=_first_value(contact, field_id=AMO_CONTACT_FIELD_TG_ID),
            telegram_tag=_first_value(contact, field_id=AMO_CONTACT_FIELD_TG_USERNAME),
            contact_id=int(contact["id"]) if contact.get("id") is not None else None,
        )
        if customer.phone or customer.email or customer.telegram_id:
            customers.append(customer)
    return customers


def fetch_known_customers(sandbox_url: str, timeout: float = 10.0) -> list[Customer]:
    """The amoCRM sandbox's contacts as customers; raises `httpx.HTTPError` when the sandbox cannot be read."""
    response = httpx.get(f"{sandbox_url.rstrip('/')}/_sandbox/amocrm/contacts", timeout=timeout)
    response.raise_for_status()
    contacts = response.json()
    if not isinstance(contacts, list):
        raise httpx.DecodingError("the sandbox's contact list is not a JSON list")
    return customers_from_contacts(c for c in contacts if isinstance(c, Mapping))


# ------------------------------------------------------------------------------------------- payments
@dataclass(frozen=True)
class Payment:
    """One generated webhook: its payload, the pipeline its UTM tags lead to, whether the customer is known."""

    payload: JsonDict
    pipeline: PipelineName
    known_customer: bool

    @property
    def payment_id(self) -> str:
        return str(self.payload["course_order"]["payment_id"])

    def body(self) -> bytes:
        """The request body as the platform sends it (UTF-8 JSON, Cyrillic unescaped)."""
        return json.dumps(self.payload, ensure_ascii=False).encode("utf-8")


class PaymentGenerator:
    """Deterministic payments: the same seed and known customers give the same sequence (bar ``created_at``).

    ``known_share`` of the payments (when ``known_customers`` is not empty) are made by a known
    customer; ``repeat_share`` by a new customer who has paid before in this sequence.
    """

    def __init__(
        self,
        seed: int = 1,
        known_customers: Sequence[Customer] = (),
        known_share: float = 0.35,
        repeat_share: float = 0.1,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.fake = RuFaker(self.rng)
        self.known = tuple(known_customers)
        self.known_share = known_share
        self.repeat_share = repeat_share
        self.clock = clock or (lambda: datetime.now(MOSCOW))
        self._new: list[Customer] = []
        self._ids: set[str] = set()

    def _unique(self, prefix: str, digits: int) -> str:
        while True:
            value = f"{prefix}{self.rng.randrange(10 ** (digits - 1), 10**digits)}"
            if value not in self._ids:
                self._ids.add(value)
                return value

    def payment(self) -> Payment:
        rng = self.rng
        customer, known = self._customer()
        project = rng.choice(PROJECTS)
        items = self._items(project)
        total = sum(int(item["cost"]) for item in items)
        utm, pipeline = self._utm()
        now = self.clock().astimezone(MOSCOW).strftime("%Y-%m-%d %H:%M:%S")
        order: JsonDict = {
            "status": "CONFIRMED",
            # unused by the receiver (the sum of the costs is what was paid): sometimes in kopecks
            "amount": total * 100 if rng.random() < 0.2 else total,
            "created_at": now,
            "updated_at": now,
            "code": rng.choice(PROMO_CODES) if rng.random() < 0.25 else rng.choice((None, "")),
            "payment_id": self._unique("pay_", 12),
            "invoice_id": self._unique("inv_", 10),
            "payment_method": rng.choice(PAYMENT_METHODS),
            "currency": "RUB",
            "course_order_items": items,
            "user": self._user(customer),
            "utm": utm,
            "domain": PLATFORM_DOMAIN,
        }
        return Payment({"course_order": order}, pipeline, known)

    def payments(self, count: int) -> list[Payment]:
        return [self.payment() for _ in range(count)]

    def _customer(self) -> tuple[Customer, bool]:
        rng = self.rng
        if self.known and rng.random() < self.known_share:
            return rng.choice(self.known), True
        if self._new and rng.random() < self.repeat_share:
            return rng.choice(self._new), False
        person = self.fake.person()
        national = self.fake.mobile_national()
        has_telegram = rng.random() < 0.7
        tag = f"{translit(person.first)}_{translit(person.last)}{rng.randint(1, 99)}"
        customer = Customer(
            first_name=person.first,
            last_name=person.last,
            phone=f"8{national}" if rng.random() < 0.5 else f"+7{national}",
            email=self.fake.email(person, len(self._new)) if rng.random() < 0.9 else None,
            telegram_id=str(rng.randint(10**8, 7 * 10**9)) if has_telegram else None,
            telegram_tag=tag if has_telegram and rng.random() < 0.8 else None,
        )
        self._new.append(customer)
        return customer, False

    def _user(self, customer: Customer) -> JsonDict:
        phone, email, tg_id, tg_tag = customer.phone, customer.email, customer.telegram_id, customer.telegram_tag
        if customer.contact_id is not None:
            # a known customer sometimes gives the platform only one of the identifiers amoCRM has
            only = self.rng.choice(("all", "all", "phone", "email", "telegram"))
            if only == "phone" and phone:
                email = tg_id = tg_tag = None
            elif only == "email" and email:
                phone = tg_id = tg_tag = None
            elif only == "telegram" and tg_id:
                phone = email = None
        return {
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "phone": phone,
            "email": email,
            "telegram_id": tg_id,
            "telegram_tag": tg_tag,
        }

    def _items(self, project: str) -> list[JsonDict]:
        rng = self.rng
        subjects = rng.sample(SUBJECTS, rng.choice((1, 1, 1, 2, 2, 3)))
        package_id = rng.randint(100, 999) if len(subjects) > 1 and rng.random() < 0.5 else None
        course_name, lessons, low, high = rng.choice(COURSES)
        items = []
        for subject in subjects:
            if rng.random() < 0.3:  # mixed courses in one order now and then
                course_name, lessons, low, high = rng.choice(COURSES)
            cost = rng.randrange(low // 100, high // 100 + 1) * 100 - 10
            items.append(
                {
                    "cost": min(max(cost, low), high),
                    "number_lessons": lessons,
                    "course": {"name": course_name, "subject": {"name": subject, "project": project}},
                    "package_id": package_id,
                }
            )
        return items

    def _utm(self) -> tuple[JsonDict | None, PipelineName]:
        rng = self.rng
        ym = str(rng.randrange(10**18, 10**19)) if rng.random() < 0.6 else ""
        roll = rng.random()
        if roll < 0.3:
            source = rng.choice(PARTNER_SOURCES)
            utm: JsonDict | None = {
                "source": source,
                "medium": rng.choice(("cpa", "affiliate", "partner", "referral")),
                "compaign": f"{source.replace('.', '_')}_{rng.choice(SEASONS)}",
                "term": "",
                "content": rng.choice(("", "banner", "catalog", "cashback")),
                "ym": ym,
            }
        elif roll < 0.6:
            utm = {
                "source": rng.choice(("yandex", "yandex", "ya.direct")),
                "medium": rng.choice(YANDEX_MEDIUMS),
                "compaign": rng.choice((str(rng.randrange(10**8, 10**9)), f"poisk_{rng.choice(SEASONS)}")),
                "term": rng.choice(("егэ по математике", "курсы огэ", "подготовка к егэ онлайн", "")),
                "content": str(rng.randrange(10**10, 10**11)),
                "ym": ym,
            }
        else:
            kind = rng.randrange(6)
            if kind == 0:
                utm = None  # the platform sends null when the visit had no tags
            elif kind == 1:
                utm = {"source": "", "medium": "", "compaign": "", "term": "", "content": "", "ym": ym}
            else:
                source, medium = (
                    ("direct", "none"),
                    ("yandex", "organic"),  # Yandex, but not ads: the site pipeline
                    ("google", "organic"),
                    (rng.choice(("vk", "telegram", "dzen")), "social"),
                )[kind - 2]
                campaign = rng.choice(SEASONS) if medium == "social" else ""
                utm = {"source": source, "medium": medium, "compaign": campaign, "term": "", "content": "", "ym": ym}
        return utm, expected_pipeline(utm)


# -------------------------------------------------------------------------------------------- signing
def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers of a signed webhook: hex HMAC-SHA256 of the body, or of ``f"{timestamp}.".encode() + body``."""
    message = body if timestamp is None else f"{timestamp}.".encode() + body
    headers = {
        "Content-Type": "application/json",
        "X-Signature": hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest(),
    }
    if timestamp is not None:
        headers["X-Timestamp"] = str(timestamp)
    return headers


def _bad_headers(body: bytes, secret: str, timestamp: int, style: int) -> dict[str, str]:
    """Headers the receiver must refuse (401), in the ways a signature goes wrong."""
    if style == 0:  # another secret (a misconfigured or forged sender)
        return sign(body, secret + "-rotated", timestamp)
    if style == 1:  # the body changed after signing
        return sign(body + b" ", secret, timestamp)
    if style == 2:  # the timestamp header is not the one signed
        headers = sign(body, secret, timestamp)
        headers["X-Timestamp"] = str(timestamp + 1)
        return headers
    return {"Content-Type": "application/json"}  # unsigned


# -------------------------------------------------------------------------------------------- sending
@dataclass(frozen=True)
class Send:
    """One planned request: a first send, a re-send of the payment at ``payment_index``, or a bad signature."""

    kind: SendKind
    payment_index: int
    body: bytes
    timestamped: bool
    bad_style: int = 0

    @property
    def expected(self) -> int:
        return {"first": 200, "duplicate": 409, "bad_signature": 401}[self.kind]


@dataclass
class Answer:
    status: int | None  # None: transport error
    latency_ms: float
    lag_ms: float  # how late the request left against the rate's schedule
    error: str | None = None


@dataclass
class SendReport:
    """What `run_sends` planned and what came back (``answers[i]`` answers ``plan[i]``)."""

    url: str
    seed: int
    rate: float | None
    concurrency: int
    payments: list[Payment]
    plan: list[Send]
    answers: list[Answer | None]
    elapsed_s: float
    accepted_ids: set[str] = field(default_factory=set)

    def summary(self) -> JsonDict:
        done = [a for a in self.answers if a is not None]
        statuses = Counter(str(a.status) for a in done if a.status is not None)
        errors = [a.error for a in done if a.error is not None]
        latencies = sorted(a.latency_ms for a in done if a.status is not None)
        kinds = Counter(s.kind for s in self.plan)
        firsts = [self.payments[s.payment_index] for s in self.plan if s.kind == "first"]
        unexpected = sum(
            1
            for s, a in zip(self.plan, self.answers, strict=True)
            if a and a.status is not None and a.status != s.expected
        )
        elapsed = max(self.elapsed_s, 1e-9)
        summary: JsonDict = {
            "url": self.url,
            "seed": self.seed,
            "sent": len(done),
            "status_counts": dict(sorted(statuses.items())),
            "expected_counts": {"200": kinds["first"], "401": kinds["bad_signature"], "409": kinds["duplicate"]},
            "unexpected": unexpected,
            "unique_payments": kinds["first"],
            "unique_accepted": len(self.accepted_ids),
            "duplicates_sent": kinds["duplicate"],
            "bad_signatures_sent": kinds["bad_signature"],
            "known_customer_payments": sum(p.known_customer for p in firsts),
            "pipelines": dict(sorted(Counter(p.pipeline for p in firsts).items())),
            "elapsed_s": round(self.elapsed_s, 3),
            "rate_target": self.rate,
            "concurrency": self.concurrency,
            "requests_per_s": round(len(done) / elapsed, 1),
            "accepted_per_s": round(statuses["200"] / elapsed, 1),
            "latency_ms": {
                "p50": _percentile(latencies, 50),
                "p90": _percentile(latencies, 90),
                "p99": _percentile(latencies, 99),
                "max": round(latencies[-1], 2) if latencies else None,
            },
            "transport_errors": len(errors),
            "errors": sorted(set(errors))[:10],
        }
        if self.rate:
            summary["schedule_lag_ms_max"] = round(max((a.lag_ms for a in done), default=0.0), 2)
        return summary


def _percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 100))
    return round(ordered[int(rank) - 1], 2)


def plan_sends(
    payments: Sequence[Payment],
    count: int,
    duplicates: float,
    bad_signatures: float,
    rng: random.Random,
    extra: Callable[[], Payment],
) -> list[Send]:
    """``count`` sends: every payment once, ``duplicates`` re-sends of an earlier one, ``bad_signatures`` refused.

    A bad signature carries an earlier payment (a forged replay) or a fresh one that is never sent
    validly (``extra``), so it cannot turn a later re-send into a first send.
    """
    n_dup, n_bad = round(count * duplicates), round(count * bad_signatures)
    first: list[SendKind] = ["first"]
    duplicate: list[SendKind] = ["duplicate"]
    bad: list[SendKind] = ["bad_signature"]
    kinds = first * len(payments) + duplicate * n_dup + bad * n_bad
    rng.shuffle(kinds)
    deferred = 0
    plan: list[Send] = []
    firsts: list[int] = []
    extras: list[Payment] = []
    for kind in kinds:
        timestamped = rng.random() < 0.8
        if kind == "first":
            index = len(firsts)
            firsts.append(index)
            plan.append(Send("first", index, payments[index].body(), timestamped))
        elif kind == "duplicate":
            if not firsts:
                deferred += 1  # nothing to re-send yet
                continue
            index = rng.choice(firsts)
            plan.append(Send("duplicate", index, payments[index].body(), timestamped))
        else:
            style = rng.randrange(4)
            if firsts and rng.random() < 0.5:
                index = rng.choice(firsts)
                body = payments[index].body()
            else:
                fresh = extra()
                extras.append(fresh)
                index, body = -len(extras), fresh.body()
            plan.append(Send("bad_signature", index, body, timestamped, style))
    for _ in range(deferred):
        index = rng.choice(firsts)
        plan.append(Send("duplicate", index, payments[index].body(), rng.random() < 0.8))
    return plan


def run_sends(
    url: str,
    secret: str,
    count: int,
    rate: float | None = None,
    duplicates: float = 0.0,
    bad_signatures: float = 0.0,
    concurrency: int = 8,
    seed: int | None = None,
    known_customers: Sequence[Customer] = (),
    timeout: float = 10.0,
) -> SendReport:
    """Generate, plan and send; see `send_payments`. Bodies are built before the clock starts."""
    if count < 1:
        raise ValueError("count must be at least 1")
    if not (0 <= duplicates <= 1 and 0 <= bad_signatures <= 1):
        raise ValueError("duplicates and bad_signatures are shares between 0 and 1")
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    n_firsts = count - round(count * duplicates) - round(count * bad_signatures)
    if n_firsts < 1:
        raise ValueError("duplicates + bad_signatures leave no payment to send first")
    seed = random.SystemRandom().randrange(1, 2**31) if seed is None else seed
    generator = PaymentGenerator(seed, known_customers)
    payments = generator.payments(n_firsts)
    plan = plan_sends(payments, count, duplicates, bad_signatures, random.Random(seed + 1), generator.payment)
    answers: list[Answer | None] = [None] * len(plan)
    answered = [threading.Event() for _ in payments]
    accepted: set[str] = set()
    lock = threading.Lock()
    cursor = iter(range(len(plan)))
    workers = max(1, min(concurrency, len(plan)))
    # a client per worker (a shared pool serializes the threads), built before the clock starts and
    # sharing one TLS context (each costs ~10 ms of CPU to build)
    tls = httpx.create_ssl_context()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.Client(timeout=timeout, limits=limits, verify=tls) for _ in range(workers)]

    def work(http: httpx.Client) -> None:
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                return
            send = plan[i]
            lag = 0.0
            if rate is not None:
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                lag = max(0.0, -delay) * 1000
            if send.kind == "duplicate":
                answered[send.payment_index].wait(timeout)  # a re-send follows the first answer
            ts = int(time.time()) if send.timestamped else None
            if send.kind == "bad_signature":
                headers = _bad_headers(send.body, secret, ts or int(time.time()), send.bad_style)
            else:
                headers = sign(send.body, secret, ts)
            sent_at = time.perf_counter()
            try:
                status: int | None = http.post(url, content=send.body, headers=headers).status_code
                error = None
            except httpx.HTTPError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"
            answers[i] = Answer(status, (time.perf_counter() - sent_at) * 1000, lag, error)
            if send.kind == "first":
                if status == 200:
                    with lock:
                        accepted.add(payments[send.payment_index].payment_id)
                answered[send.payment_index].set()

    threads = [
        threading.Thread(target=work, args=(http,), name=f"platform-sender-{n}", daemon=True)
        for n, http in enumerate(clients)
    ]
    try:
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    finally:
        for http in clients:
            http.close()
    return SendReport(url, seed, rate, workers, payments, plan, answers, elapsed, accepted)


def send_payments(
    url: str,
    secret: str,
    count: int,
    rate: float | None = None,
    duplicates: float = 0.0,
    bad_signatures: float = 0.0,
    concurrency: int = 8,
    seed: int | None = None,
    known_customers: Sequence[Customer] = (),
    timeout: float = 10.0,
) -> JsonDict:
    """Send ``count`` signed payment webhooks to ``url`` and summarise the answers (`SendReport.summary`).

    ``duplicates`` and ``bad_signatures`` are shares of ``count``: re-sends of an already answered
    payment (expected 409) and sends with a wrong signature (expected 401); the rest are first sends
    of distinct payments (expected 200). ``rate`` paces the sends to that many requests/s (None: as
    fast as ``concurrency`` threads go). ``seed`` None draws one (it is in the summary).
    """
    return run_sends(
        url, secret, count, rate, duplicates, bad_signatures, concurrency, seed, known_customers, timeout
    ).summary()
