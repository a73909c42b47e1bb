"""Shared framework of the sandbox: every emulator is a `Service` mounted on one Starlette app.

It provides what each emulated API needs and none of them owns: a clock tests can pin, a
thread-safe leaky bucket, per-service request counters, a fault injector (error bursts, a 5xx
rate, latency, commit-then-drop), a response that drops the connection mid-body, and a decoder
for PHP bracket query strings (``a[b][0][c]=1``), which Bitrix24 and amoCRM webhooks use.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.types import Receive, Scope, Send

MOSCOW = ZoneInfo("Europe/Moscow")

JsonDict = dict[str, Any]


# --------------------------------------------------------------------------------------------- clock
class Clock:
    """Wall clock of the sandbox.

    By default it is the real time. Given ``epoch`` it starts at that Unix time and then advances
    in real time, so generated data is deterministic while rate limits still see time pass.
    ``advance`` jumps forward (e.g. past a 10-minute operating-time window) without sleeping.
    """

    def __init__(self, epoch: float | None = None) -> None:
        self._mono0 = time.monotonic()
        self._epoch0 = time.time() if epoch is None else float(epoch)
        self._offset = 0.0
        self._lock = threading.Lock()
        self.pinned = epoch is not None

    @property
    def start_epoch(self) -> float:
        return self._epoch0

    def now(self) -> float:
        """Current Unix time according to this clock."""
        with self._lock:
            return self._epoch0 + (time.monotonic() - self._mono0) + self._offset

    def monotonic(self) -> float:
        """A monotonic reading that also moves with `advance`."""
        with self._lock:
            return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            self._offset += seconds

    def now_moscow(self) -> datetime:
        return datetime.fromtimestamp(self.now(), MOSCOW)


def moscow_str(ts: float) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in Moscow time, no zone (the ABCP format)."""
    return datetime.fromtimestamp(ts, MOSCOW).strftime("%Y-%m-%d %H:%M:%S")


def iso_moscow(ts: float) -> str:
    """ISO 8601 with the Moscow offset, seconds precision (the Bitrix24 format)."""
    return datetime.fromtimestamp(int(ts), MOSCOW).isoformat()


# -------------------------------------------------------------------------------------- leaky bucket
class LeakyBucket:
    """Thread-safe leaky bucket: each request adds 1, the level drains at ``rate_per_s``.

    A request that would lift the level above ``burst`` is refused and adds nothing.
    """

    def __init__(self, rate_per_s: float, burst: float, clock: Clock | None = None) -> None:
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError("rate_per_s and burst must be positive")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self._clock = clock or Clock()
        self._lock = threading.Lock()
        self._level = 0.0
        self._last = self._clock.monotonic()

    def _drain(self) -> None:
        now = self._clock.monotonic()
        self._level = max(0.0, self._level - (now - self._last) * self.rate_per_s)
        self._last = now

    def try_acquire(self, amount: float = 1.0) -> bool:
        with self._lock:
            self._drain()
            if self._level + amount > self.burst + 1e-9:
                return False
            self._level += amount
            return True

    @property
    def level(self) -> float:
        with self._lock:
            self._drain()
            return self._level

    def seconds_until_available(self, amount: float = 1.0) -> float:
        with self._lock:
            self._drain()
            excess = self._level + amount - self.burst
            return max(0.0, excess / self.rate_per_s)

    def reset(self) -> None:
        with self._lock:
            self._level = 0.0
            self._last = self._clock.monotonic()


# ------------------------------------------------------------------------------------------- faults
@dataclass
class ErrorBurst:
    count: int
    status: int
    body: Any = None
    methods: frozenset[str] = frozenset()


@dataclass
class CommitThenDrop:
    count: int
    methods: frozenset[str] = frozenset()
    skip: int = 0
    hold_ms: float = 0.0
    fired: int = 0


@dataclass
class FaultPlan:
    error_burst: ErrorBurst | None = None
    error_rate: float = 0.0
    error_rate_status: int = 500
    latency_ms: float = 0.0
    commit_then_drop: CommitThenDrop | None = None
    extra: JsonDict = field(default_factory=dict)


CORE_FAULT_KEYS = frozenset(
    {"error_burst", "error_rate", "error_rate_status", "latency_ms", "commit_then_drop", "seed"}
)


def _methods(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset({value.lower()})
    if isinstance(value, Sequence):
        return frozenset(str(v).lower() for v in value)
    raise ValueError("methods must be a string or a list of strings")


def _int(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} must be an integer")
    try:
        number = int(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer") from exc
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}")
    return number


class FaultInjector:
    """Faults of one service. Configured from JSON; consumed request by request.

    - ``error_burst: {count, status, body?, methods?}``: the next ``count`` (matching) requests
      answer ``status`` before anything executes;
    - ``error_rate: 0.2`` (and ``error_rate_status``, default 500): that share of requests fails,
      drawn from a RNG seeded with ``seed`` (default 0) so a run is reproducible;
    - ``latency_ms``: added to every request;
    - ``commit_then_drop: {count, methods?, skip?, hold_ms?}``: after ``skip`` matching requests
      served normally, the next ``count`` matching requests execute, then the connection is dropped
      mid-response (the client sees a transport error, not a status); with ``hold_ms`` the answer is
      held that long after the commit first, so a test can kill the client at a chosen write.
      ``describe()`` reports how many fired.
    Unknown keys are kept in ``plan.extra`` for the service to interpret.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.plan = FaultPlan()
        self._rng = random.Random(0)

    def configure(self, spec: Mapping[str, Any] | None) -> None:
        plan = FaultPlan()
        seed = 0
        for key, value in (spec or {}).items():
            if key == "error_burst":
                if value:
                    if not isinstance(value, Mapping):
                        raise ValueError("error_burst must be an object")
                    plan.error_burst = ErrorBurst(
                        count=_int(value.get("count", 1), "error_burst.count"),
                        status=_int(value.get("status", 503), "error_burst.status", 100),
                        body=value.get("body"),
                        methods=_methods(value.get("methods")),
                    )
            elif key == "error_rate":
                if isinstance(value, Mapping):
                    plan.error_rate = float(value.get("rate", 0.0))
                    plan.error_rate_status = _int(value.get("status", 500), "error_rate.status", 100)
                else:
                    plan.error_rate = float(value or 0.0)
                if not 0.0 <= plan.error_rate <= 1.0:
                    raise ValueError("error_rate must be between 0 and 1")
            elif key == "error_rate_status":
                plan.error_rate_status = _int(value, "error_rate_status", 100)
            elif key == "latency_ms":
                plan.latency_ms = float(value or 0.0)
                if plan.latency_ms < 0:
                    raise ValueError("latency_ms must be >= 0")
            elif key == "commit_then_drop":
                if value:
                    if not isinstance(value, Mapping):
                        raise ValueError("commit_then_drop must be an object")
                    plan.commit_then_drop = CommitThenDrop(
                        count=_int(value.get("count", 1), "commit_then_drop.count"),
                        methods=_methods(value.get("methods")),
                        skip=_int(value.get("skip", 0), "commit_then_drop.skip"),
                        hold_ms=float(_int(value.get("hold_ms", 0), "commit_then_drop.hold_ms")),
                    )
            elif key == "seed":
                seed = _int(value, "seed")
            else:
                plan.extra[key] = value
        with self._lock:
            self.plan = plan
            self._rng = random.Random(seed)

    def clear(self) -> None:
        self.configure(None)

    @property
    def latency_s(self) -> float:
        return self.plan.latency_ms / 1000.0

    def next_error(self, method: str) -> tuple[int, Any] | None:
        """Status and body override for this request, or None to serve it normally."""
        method = method.lower()
        with self._lock:
            burst = self.plan.error_burst
            if burst and burst.count > 0 and (not burst.methods or method in burst.methods):
                burst.count -= 1
                return burst.status, burst.body
            if self.plan.error_rate > 0 and self._rng.random() < self.plan.error_rate:
                return self.plan.error_rate_status, None
        return None

    def take_commit_then_drop(self, method: str) -> bool:
        method = method.lower()
        with self._lock:
            ctd = self.plan.commit_then_drop
            if ctd and ctd.count > 0 and (not ctd.methods or method in ctd.methods):
                if ctd.skip > 0:
                    ctd.skip -= 1
                    return False
                ctd.count -= 1
                ctd.fired += 1
                return True
        return False

    @property
    def drop_hold_s(self) -> float:
        """How long a dropped answer is held after its commit (the plan's ``hold_ms``)."""
        ctd = self.plan.commit_then_drop
        return ctd.hold_ms / 1000.0 if ctd else 0.0

    def describe(self) -> JsonDict:
        with self._lock:
            plan = self.plan
            out: JsonDict = {
                "error_rate": plan.error_rate,
                "error_rate_status": plan.error_rate_status,
                "latency_ms": plan.latency_ms,
                **plan.extra,
            }
            if plan.error_burst:
                out["error_burst"] = {
                    "count": plan.error_burst.count,
                    "status": plan.error_burst.status,
                    "methods": sorted(plan.error_burst.methods),
                }
            if plan.commit_then_drop:
                out["commit_then_drop"] = {
                    "count": plan.commit_then_drop.count,
                    "methods": sorted(plan.commit_then_drop.methods),
                    "skip": plan.commit_then_drop.skip,
                    "hold_ms": plan.commit_then_drop.hold_ms,
                    "fired": plan.commit_then_drop.fired,
                }
            return out


# ----------------------------------------------------------------------------------------- responses
def json_dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class JsonResponse(Response):
    """UTF-8 JSON with Cyrillic kept readable (as the real APIs send it)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_dumps(content)


class DroppedResponse(Response):
    """Announces the full body, sends part of it, then returns without finishing.

    uvicorn then closes the socket ("ASGI callable returned without completing response"), so an
    HTTP client sees a protocol/transport error after the server has already done the work.
    """

    def __init__(
        self, body: bytes, status_code: int = 200, media_type: str = "application/json", hold_s: float = 0.0
    ) -> None:
        super().__init__(content=b"", status_code=status_code, media_type=media_type)
        self._full = body if body else b"{}"
        self._hold_s = hold_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._hold_s > 0:
            await asyncio.sleep(self._hold_s)
        headers = [
            (b"content-type", f"{self.media_type}; charset=utf-8".encode()),
            (b"content-length", str(len(self._full) + 1024).encode()),
        ]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send(
            {"type": "http.response.body", "body": self._full[: max(1, len(self._full) // 2)], "more_body": True}
        )


# ---------------------------------------------------------------------------------- PHP query strings
def _split_php_key(raw: str) -> tuple[str, list[str]]:
    """``fields[PHONE][0][VALUE]`` -> ("fields", ["PHONE", "0", "VALUE"]), as PHP's parse_str."""
    start = raw.find("[")
    if start <= 0 or raw.find("]", start) < 0:
        base = raw.replace("[", "_") if start > 0 else raw
        return base.replace(" ", "_").replace(".", "_"), []
    base = raw[:start].replace(" ", "_").replace(".", "_")
    path: list[str] = []
    pos = start
    while pos < len(raw) and raw[pos] == "[":
        end = raw.find("]", pos)
        if end < 0:
            break
        path.append(raw[pos + 1 : end])
        pos = end + 1
    return base, path


def _next_index(node: dict[str, Any]) -> str:
    ints = [int(k) for k in node if k.lstrip("-").isdigit()]
    return str(max(ints) + 1) if ints else "0"


def _php_listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _php_listify(v) for k, v in node.items()}
    keys = list(converted)
    if keys and keys == [str(i) for i in range(len(keys))]:
        return list(converted.values())
    return converted


def parse_php_query(query: str) -> JsonDict:
    """Decode a query string the way PHP's ``parse_str`` does, bracket keys included.

    Arrays whose keys are exactly ``0..n-1`` in order become lists; other arrays stay dicts with
    string keys. The last value of a repeated plain key wins, as in PHP.
    """
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(query, keep_blank_values=True):
        base, path = _split_php_key(raw_key)
        if not base:
            continue
        keys = [base, *path]
        node = root
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            if key == "":
                key = _next_index(node)
            if last:
                node[key] = value
            else:
                child = node.get(key)
                if not isinstance(child, dict):
                    child = {}
                    node[key] = child
                node = child
    result = _php_listify(root)
    return result if isinstance(result, dict) else {}


def php_truthy(value: Any) -> bool:
    """PHP's (bool) cast: "", "0", 0, 0.0, null, [] are false, everything else true."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, list | dict):
        return len(value) > 0
    return True


def php_str(value: Any) -> str:
    """PHP's (string) cast of a scalar: 46 -> "46", -1582.0 -> "-1582", True -> "1"."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


def php_intval(value: Any) -> int:
    """PHP's intval: leading integer of a string, 0 when there is none."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        text = value.strip()
        sign = 1
        if text[:1] in "+-" and text:
            sign = -1 if text[0] == "-" else 1
            text = text[1:]
        digits = ""
        for ch in text:
            if not ch.isdigit():
                break
            digits += ch
        return sign * int(digits) if digits else 0
    return 0


def php_json_map(mapping: Mapping[str, Any]) -> Any:
    """How PHP json_encode renders an array: ``[]`` when empty, a list when keyed 0..n-1."""
    keys = list(mapping)
    if not keys or keys == [str(i) for i in range(len(keys))]:
        return list(mapping.values())
    return dict(mapping)


# ------------------------------------------------------------------------------------------- service
class Service(ABC):
    """One emulated external API, mounted under ``/{prefix}`` on the sandbox app.

    Subclasses implement `routes`, `entities` and `reset`; they call `count_request` for every
    request they serve (control routes do not count), `count_throttled` when a limit refuses one,
    and may use `apply_faults` to honour the service's `FaultInjector` before doing any work.
    """

    name: str = ""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.faults = FaultInjector()
        self.requests = 0
        self.by_method: Counter[str] = Counter()
        self.throttled = 0

    @property
    def prefix(self) -> str:
        return f"/{self.name}"

    @abstractmethod
    def routes(self) -> list[BaseRoute]:
        """Routes relative to the service prefix."""

    def control_routes(self) -> list[BaseRoute]:
        """Routes mounted under ``/_sandbox/{name}`` (never counted, limited or faulted)."""
        return []

    @abstractmethod
    def entities(self) -> dict[str, int]:
        """Entity counts for the stats endpoint."""

    @abstractmethod
    def reset(self, seed: int, volumes: Mapping[str, Any]) -> None:
        """Regenerate deterministic data for ``seed``; zero counters and clear faults."""

    def mount(self) -> Mount:
        return Mount(self.prefix, routes=self.routes())

    def reset_counters(self) -> None:
        with self.lock:
            self.requests = 0
            self.by_method = Counter()
            self.throttled = 0

    def count_request(self, method: str) -> None:
        with self.lock:
            self.requests += 1
            self.by_method[method] += 1

    def count_throttled(self) -> None:
        with self.lock:
            self.throttled += 1

    def stats(self) -> JsonDict:
        with self.lock:
            return {
                "requests": self.requests,
                "by_method": dict(self.by_method),
                "throttled": self.throttled,
                "entities": self.entities(),
            }

    def configure_faults(self, spec: Mapping[str, Any] | None) -> None:
        """Replace this service's faults (None or {} clears them)."""
        self.faults.configure(spec)
        self.apply_fault_extras(self.faults.plan.extra)

    def apply_fault_extras(self, extra: Mapping[str, Any]) -> None:
        """Interpret service-specific fault keys; the base class knows none."""
        if extra:
            raise ValueError(f"unknown fault keys for {self.name}: {sorted(extra)}")

    def fault_response(self, status: int, body: Any, method: str) -> Response:
        """The answer for an injected error; subclasses return the vendor's real shapes."""
        if body is None:
            return Response(b"", status_code=status)
        if isinstance(body, str):
            return Response(body.encode("utf-8"), status_code=status, media_type="text/plain")
        return JsonResponse(body, status_code=status)

    async def apply_faults(self, method: str) -> Response | None:
        """Sleep the configured latency, then return an injected error response if one is due."""
        if self.faults.latency_s > 0:
            await asyncio.sleep(self.faults.latency_s)
        due = self.faults.next_error(method)
        if due is None:
            return None
        status, body = due
        return self.fault_response(status, body, method)


async def read_json(request: Request) -> Any:
    """The request body as JSON; ValueError when it is not JSON."""
    raw = await request.body()
    if not raw.strip():
        return None
    return json.loads(raw)
