"""Bitrix24 REST client over an inbound webhook: calls, batches, list paging, duplicate lookup.

The webhook URL ``https://{portal}/rest/{user_id}/{code}/`` carries a secret (``code``); it is
redacted from every message. Requests go through the shared HTTP policy with a leaky-bucket
limiter (2 req/s, burst 50 by default; pass ``limiter_state_path`` to share it between processes).
QUERY_LIMIT_EXCEEDED (503) and OPERATION_TIME_LIMIT (429, body possibly HTML) are throttles:
retried, also for writes, since a throttled request was not applied.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from integration_sync.connectors.errors import ApiError, AuthError, ConfigError, RateLimitedError, TransientError
from integration_sync.connectors.http import (
    ApiClient,
    ErrorInfo,
    HttpPolicy,
    ResponseKind,
    ServiceClient,
    body_snippet,
    default_classify,
    parse_retry_after,
    response_json,
)
from integration_sync.connectors.ratelimit import RateLimiter

SERVICE = "bitrix24"
BATCH_LIMIT = 50
FINDBYCOMM_LIMIT = 20
LIST_PAGE_SIZE = 50

DEFAULT_POLICY = HttpPolicy(
    timeout=60.0,
    connect_timeout=10.0,
    max_attempts=6,
    backoff_base=1.0,
    backoff_max=60.0,
    max_retry_after=120.0,
)

THROTTLE_CODES = frozenset({"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT"})
AUTH_CODES = frozenset(
    {
        "INVALID_CREDENTIALS",
        "NO_AUTH_FOUND",
        "WRONG_AUTH_TYPE",
        "expired_token",
        "invalid_token",
        "insufficient_scope",
        "authorization_error",
        "user_access_error",
    }
)

_READ_SUFFIXES = (".list", ".get", ".fields")
_READ_METHODS = frozenset(
    {
        "crm.duplicate.findbycomm",
        "crm.status.list",
        "crm.status.entity.items",
        "user.current",
        "profile",
        "app.info",
        "server.time",
    }
)
_WEBHOOK_RE = re.compile(r"^(?P<root>.*?/rest/)(?P<user>\d+)/(?P<code>[^/?#]+)/?$")
_RESULT_REF_RE = re.compile(r"\$result(?:\[[^\]\[]*\])+")


def is_idempotent_method(method: str) -> bool:
    """Reads (``*.list``, ``*.get``, ``*.fields``, findbycomm, status/category lists) are
    idempotent; everything else (add/update/delete and unknown methods) is treated as a write."""
    name = method.strip().lower().removesuffix(".json")
    if name in _READ_METHODS:
        return True
    if name.startswith("crm.dealcategory.") and name.endswith("list"):
        return True
    return name.endswith(_READ_SUFFIXES)


# -- PHP-bracket query encoding (for batch commands) ---------------------------------------------


def _encode_scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    text = str(value)
    # keep $result[...] references literal: Bitrix substitutes them server side
    out: list[str] = []
    position = 0
    for match in _RESULT_REF_RE.finditer(text):
        out.append(quote(text[position : match.start()], safe=""))
        out.append(match.group(0))
        position = match.end()
    out.append(quote(text[position:], safe=""))
    return "".join(out)


def encode_params(params: Mapping[str, Any]) -> str:
    """Encode parameters like PHP's ``http_build_query`` with literal brackets:
    ``fields[NAME]=A&fields[PHONE][0][VALUE]=%2B7...``. Keys are percent-encoded inside the
    brackets; ``None`` becomes an empty value; empty maps/lists are omitted (as PHP does);
    ``$result[...]`` references stay literal."""
    pairs: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                name = quote(str(key), safe="")
                walk(f"{prefix}[{name}]" if prefix else name, item)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                walk(f"{prefix}[{index}]", item)
        else:
            pairs.append(f"{prefix}={_encode_scalar(value)}")

    walk("", params)
    return "&".join(pairs)


# -- response shapes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchCommandError:
    error: str
    description: str

    @property
    def throttled(self) -> bool:
        """The command was refused by a limit (not applied): safe to send again later."""
        return self.error in THROTTLE_CODES


@dataclass
class BatchResult:
    """One batch answer, by command key. Keys in neither ``results`` nor ``errors`` were not run
    (``halt`` after an error) and are listed in ``not_executed``."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, BatchCommandError] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    nexts: dict[str, int] = field(default_factory=dict)
    times: dict[str, Any] = field(default_factory=dict)
    not_executed: list[str] = field(default_factory=list)


def _as_map(value: Any) -> dict[str, Any]:
    """Batch sections are maps, but PHP sends ``[]`` for an empty one and a list for keys 0..n."""
    if isinstance(value, dict):
        return {str(key): item for key, item in value.items()}
    if isinstance(value, list):
        return {str(index): item for index, item in enumerate(value)}
    return {}


def _error_code(response: httpx.Response) -> str | None:
    body = response_json(response)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    text = body_snippet(response, 2000)
    for code in THROTTLE_CODES:
        if code in text:
            return code
    return None


def classify_bitrix24(response: httpx.Response) -> ResponseKind:
    """503 QUERY_LIMIT_EXCEEDED and 429 (OPERATION_TIME_LIMIT, maybe with an HTML body) throttle."""
    status = response.status_code
    if status == 429:
        return ResponseKind.THROTTLED
    if status >= 400:
        code = _error_code(response)
        if code in THROTTLE_CODES:
            return ResponseKind.THROTTLED
        if code in AUTH_CODES:
            return ResponseKind.AUTH
    return default_classify(response)


def parse_bitrix24_error(response: httpx.Response) -> ErrorInfo:
    body = response_json(response)
    if isinstance(body, dict) and ("error" in body or "error_description" in body):
        code = str(body.get("error") or "") or None
        description = str(body.get("error_description") or "")
        return ErrorInfo(code, description or (code or ""), auth=code in AUTH_CODES)
    return ErrorInfo(_error_code(response), body_snippet(response))


def bitrix24_retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` if sent; else ``operating_reset_at`` when a 429 body carries it."""
    header = parse_retry_after(response.headers.get("Retry-After"))
    if header is not None:
        return header
    body = response_json(response)
    if isinstance(body, dict):
        timing = body.get("time") if isinstance(body.get("time"), dict) else body
        reset_at = timing.get("operating_reset_at") if isinstance(timing, dict) else None
        if isinstance(reset_at, int | float) and not isinstance(reset_at, bool):
            return max(0.0, float(reset_at) - time.time())
    return None


# -- email normalization for duplicate matching (phones: the caller's rule, see `PhoneKey`) -----

PhoneKey = Callable[[str], str | None]
"""The project's one phone rule (`sync.normalize.normalize_phone`, E.164), handed in by the caller."""


def normalize_email(value: str) -> str:
    return (value or "").strip().lower()


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Bitrix24Client(ServiceClient):
    """Typed access to Bitrix24 REST methods through an inbound webhook."""

    def __init__(
        self,
        webhook_url: str,
        *,
        rate: float = 2.0,
        burst: int = 50,
        policy: HttpPolicy | None = None,
        limiter: RateLimiter | None = None,
        limiter_state_path: str | Path | None = None,
    ) -> None:
        match = _WEBHOOK_RE.match((webhook_url or "").strip())
        if match is None:
            host = urlsplit(webhook_url or "").netloc or "?"
            raise ConfigError(SERVICE, f"webhook URL for {host} must look like https://portal/rest/<user_id>/<code>/")
        self._code = match.group("code")
        base = f"{match.group('root')}{match.group('user')}/{self._code}/"
        self.limiter = limiter or RateLimiter(rate, burst, state_path=limiter_state_path, name=SERVICE)
        self._api = ApiClient(
            SERVICE,
            base,
            policy=policy or DEFAULT_POLICY,
            limiter=self.limiter,
            secrets=(self._code,),
            headers={"Accept": "application/json"},
            classify=classify_bitrix24,
            parse_error=parse_bitrix24_error,
            retry_after=bitrix24_retry_after,
        )

    # -- single calls --------------------------------------------------------------------------

    def call_raw(
        self, method: str, params: Mapping[str, Any] | None = None, *, idempotent: bool | None = None
    ) -> dict[str, Any]:
        """POST one method and return the whole envelope (``result``, ``total``, ``next``, ``time``)."""
        if idempotent is None:
            idempotent = is_idempotent_method(method)
        response = self._api.request("POST", method, idempotent=idempotent, json=dict(params or {}), endpoint=method)
        body = self._api.parse_json(response)
        where = f"POST {self._api.safe_url(response.request.url)}"
        if isinstance(body, dict) and "error" in body and "result" not in body:
            code = self._api.redact(str(body.get("error") or "")) or None
            description = self._api.redact(str(body.get("error_description") or "")) or (code or "")
            error_type = AuthError if code in AUTH_CODES else ApiError
            raise error_type(SERVICE, description, status=response.status_code, code=code, request=where)
        if not isinstance(body, dict) or "result" not in body:
            raise ApiError(SERVICE, "answer has no 'result'", status=response.status_code, request=where)
        return body

    def call(self, method: str, params: Mapping[str, Any] | None = None, *, idempotent: bool | None = None) -> Any:
        """POST one method and return its ``result``."""
        return self.call_raw(method, params, idempotent=idempotent)["result"]

    # -- batch ---------------------------------------------------------------------------------

    def batch(self, commands: Mapping[str, tuple[str, Mapping[str, Any]]], *, halt: bool) -> BatchResult:
        """Run up to 50 commands in one request. Later commands may reference earlier results
        with ``$result[key]...``. The request counts as a write if any command is a write."""
        if not commands:
            return BatchResult()
        if len(commands) > BATCH_LIMIT:
            raise ValueError(f"a Bitrix24 batch takes at most {BATCH_LIMIT} commands, got {len(commands)}")
        cmd: dict[str, str] = {}
        for key, (method, params) in commands.items():
            if not key or re.search(r"[\[\]&?=\s]", key):
                raise ValueError(f"invalid batch command key {key!r}")
            query = encode_params(params) if params else ""
            cmd[key] = f"{method}?{query}" if query else method
        idempotent = all(is_idempotent_method(method) for method, _ in commands.values())
        envelope = self.call_raw("batch", {"halt": 1 if halt else 0, "cmd": cmd}, idempotent=idempotent)
        result = envelope.get("result")
        if not isinstance(result, dict):
            raise ApiError(SERVICE, "batch answer has no result map")
        results = _as_map(result.get("result"))
        errors: dict[str, BatchCommandError] = {}
        for key, error in _as_map(result.get("result_error")).items():
            if isinstance(error, dict):
                errors[key] = BatchCommandError(
                    error=self._api.redact(str(error.get("error") or "")),
                    description=self._api.redact(str(error.get("error_description") or "")),
                )
            else:
                errors[key] = BatchCommandError(error="", description=self._api.redact(str(error)))
        totals = {k: int(v) for k, v in _as_map(result.get("result_total")).items() if _is_int(v)}
        nexts = {k: int(v) for k, v in _as_map(result.get("result_next")).items() if _is_int(v)}
        not_executed = [key for key in commands if key not in results and key not in errors]
        return BatchResult(
            results=results,
            errors=errors,
            totals=totals,
            nexts=nexts,
            times=_as_map(result.get("result_time")),
            not_executed=not_executed,
        )

    # -- lists ---------------------------------------------------------------------------------

    def iter_list(
        self,
        method: str,
        *,
        filter: Mapping[str, Any] | None = None,
        select: Sequence[str] | None = None,
        order: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield every row of a ``*.list`` method, paging by ``start`` while ``next`` is present."""
        base: dict[str, Any] = dict(params or {})
        if filter is not None:
            base["filter"] = dict(filter)
        if select is not None:
            base["select"] = list(select)
        if order is not None:
            base["order"] = dict(order)
        start = 0
        while True:
            envelope = self.call_raw(method, {**base, "start": start}, idempotent=True)
            yield from _list_rows(method, envelope.get("result"))
            next_start = envelope.get("next")
            if not isinstance(next_start, int | str) or not _is_int(next_start):
                return
            if int(next_start) <= start:
                return
            start = int(next_start)

    def iter_by_id(
        self,
        method: str,
        *,
        filter: Mapping[str, Any] | None = None,
        select: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield every row of a ``*.list`` method ordered by ID, paging with ``>ID`` and
        ``start: -1`` (no COUNT on the server: Bitrix24's recommended way for big exports)."""
        fields = list(select) if select is not None else ["*"]
        if "ID" not in fields:
            fields.append("ID")
        last_id = 0
        while True:
            params = {
                "filter": {**dict(filter or {}), ">ID": last_id},
                "select": fields,
                "order": {"ID": "ASC"},
                "start": -1,
            }
            rows = self.call_raw(method, params, idempotent=True).get("result")
            if not isinstance(rows, list):
                raise ApiError(SERVICE, f"{method}: expected a list result, got {type(rows).__name__}")
            yield from rows
            if len(rows) < LIST_PAGE_SIZE:
                return
            tail = rows[-1].get("ID") if isinstance(rows[-1], dict) else None
            if not isinstance(tail, int | str) or not _is_int(tail) or int(tail) <= last_id:
                raise ApiError(SERVICE, f"{method}: rows are not ordered by a numeric ID")
            last_id = int(tail)

    # -- duplicates ----------------------------------------------------------------------------

    def find_contact_ids_by_comm(
        self, phones: Sequence[str], emails: Sequence[str], phone_key: PhoneKey
    ) -> dict[str, list[int]]:
        """Map each given phone and email (the input strings are the keys) to the ids of contacts
        having it (phones searched and compared in the form ``phone_key`` gives, E.164: Bitrix24
        finds ``+7…`` and ``8…`` alike; emails lowercased).

        Cost: ``crm.duplicate.findbycomm`` answers one id set per 20 values, so values go 20 per
        command and 50 commands per batch (1000 values per request); the hits are then read back
        50 ids per ``crm.contact.list`` command, 50 commands per batch, and matched per value.
        """
        phone_inputs = list(dict.fromkeys(p for p in phones if p is not None))
        email_inputs = list(dict.fromkeys(e for e in emails if e is not None))
        phone_values = [v for v in dict.fromkeys(phone_key(p) for p in phone_inputs) if v]
        email_values = [v for v in dict.fromkeys(normalize_email(e) for e in email_inputs) if v]
        commands: list[tuple[str, Mapping[str, Any]]] = []
        for kind, values in (("PHONE", phone_values), ("EMAIL", email_values)):
            for chunk in _chunks(values, FINDBYCOMM_LIMIT):
                commands.append(
                    ("crm.duplicate.findbycomm", {"entity_type": "CONTACT", "type": kind, "values": list(chunk)})
                )
        hit_ids: set[int] = set()
        for result in self._run_batched(commands):
            contacts = result.get("CONTACT") if isinstance(result, dict) else None
            if isinstance(contacts, list):
                hit_ids.update(int(i) for i in contacts if _is_int(i))

        by_phone: dict[str, set[int]] = {}
        by_email: dict[str, set[int]] = {}
        list_commands: list[tuple[str, Mapping[str, Any]]] = [
            (
                "crm.contact.list",
                {"filter": {"@ID": list(chunk)}, "select": ["ID", "PHONE", "EMAIL"]},
            )
            for chunk in _chunks(sorted(hit_ids), LIST_PAGE_SIZE)
        ]
        for rows in self._run_batched(list_commands):
            for row in rows if isinstance(rows, list) else []:
                if not isinstance(row, dict) or not _is_int(row.get("ID")):
                    continue
                contact_id = int(row["ID"])
                for item in row.get("PHONE") or []:
                    if isinstance(item, dict) and item.get("VALUE"):
                        key = phone_key(str(item["VALUE"]))
                        if key:
                            by_phone.setdefault(key, set()).add(contact_id)
                for item in row.get("EMAIL") or []:
                    if isinstance(item, dict) and item.get("VALUE"):
                        by_email.setdefault(normalize_email(str(item["VALUE"])), set()).add(contact_id)

        found: dict[str, list[int]] = {}
        for phone in phone_inputs:
            normalized = phone_key(phone)
            found[phone] = sorted(by_phone.get(normalized, set())) if normalized else []
        for email in email_inputs:
            normalized = normalize_email(email)
            found[email] = sorted(by_email.get(normalized, set())) if normalized else []
        return found

    def read_batch(self, commands: Mapping[str, tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
        """Run read commands (any number, 50 a batch) and return each one's result by key; a list
        that has more pages is read to its end. A command that failed inside the batch (HTTP 200
        with ``result_error``) raises: a failed lookup must never read as "nothing found".
        Raises RateLimitedError for a throttled command, else TransientError (nothing was written)."""
        results: dict[str, Any] = {}
        items = list(commands.items())
        for chunk in _chunks(items, BATCH_LIMIT):
            keyed = dict(chunk)
            outcome = self.batch(keyed, halt=False)
            _raise_command_errors(keyed, outcome)
            for key, (method, params) in keyed.items():
                value = outcome.results[key]
                if key in outcome.nexts:
                    value = [*_list_rows(method, value), *self._rest_of_list(method, params, outcome.nexts[key])]
                results[key] = value
        return results

    def _rest_of_list(self, method: str, params: Mapping[str, Any], start: int) -> Iterator[Any]:
        while True:
            envelope = self.call_raw(method, {**params, "start": start}, idempotent=True)
            yield from _list_rows(method, envelope.get("result"))
            next_start = envelope.get("next")
            if not isinstance(next_start, int | str) or not _is_int(next_start) or int(next_start) <= start:
                return
            start = int(next_start)

    def _run_batched(self, commands: Sequence[tuple[str, Mapping[str, Any]]]) -> Iterator[Any]:
        """Run read commands 50 per batch; yield each result; any command error is raised."""
        for chunk in _chunks(commands, BATCH_LIMIT):
            keyed = {f"q{index}": command for index, command in enumerate(chunk)}
            outcome = self.batch(keyed, halt=False)
            _raise_command_errors(keyed, outcome)
            for key in keyed:
                if key in outcome.nexts:
                    raise ApiError(SERVICE, f"{keyed[key][0]}: unexpected second page in a batch lookup")
                yield outcome.results.get(key)

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> Bitrix24Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.strip().isdigit()


def _list_rows(method: str, result: Any) -> list[Any]:
    """The rows of one list answer: ``result`` itself, or the one list inside an object answer
    (``crm.category.list`` → ``{"categories": [...]}``; ``total``/``next`` sit beside ``result``)."""
    if isinstance(result, list):
        return result
    if isinstance(result, dict):
        lists = [value for value in result.values() if isinstance(value, list)]
        if len(lists) == 1:
            return lists[0]
    raise ApiError(SERVICE, f"{method}: expected a list result, got {type(result).__name__}")


def _raise_command_errors(commands: Mapping[str, tuple[str, Mapping[str, Any]]], outcome: BatchResult) -> None:
    """Raise for the first read command that failed or did not run inside a batch (HTTP 200)."""
    for key, error in outcome.errors.items():
        method = commands[key][0] if key in commands else key
        error_type = RateLimitedError if error.throttled else TransientError
        raise error_type(
            SERVICE,
            f"{method} failed in a batch: {error.description or error.error or 'no description'}",
            code=error.error or None,
        )
    missing = [key for key in commands if key not in outcome.results]
    if missing:
        raise TransientError(SERVICE, f"{commands[missing[0]][0]} got no result in a batch ({len(missing)} missing)")
