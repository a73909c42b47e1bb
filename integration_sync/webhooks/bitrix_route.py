"""``POST /webhooks/bitrix/order``: the Bitrix CMS shop's order webhooks into the inbox (no Dagster here).

In this order:

1. Size: over ``WEBHOOK_MAX_BODY_BYTES`` → 413 (before reading when ``Content-Length`` says so).
2. Authentication, constant time: ``X-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` keyed with
   ``WEBHOOK_TOKEN``; or, only when ``WEBHOOK_TOKEN_IN_BODY=true`` and no ``X-Signature`` is sent, the
   body's ``"token"`` (the seed's format). Otherwise 401 and nothing stored.
3. JSON within `limits` (a non-UTF-8 string read as cp1251 and marked: see `bitrix_order`), else 422;
   the ping ``{"event": "test"}`` → 200 ``{"status": "ok"}``, not stored.
4. `OrderWebhook` → 422 ``{"error", "details": [{loc, msg}]}``.
5. The inbox (source ``bitrix_order``, key ``bitrix_order:{ID}:{version}``, dated by the order's
   DATE_INSERT day in UTC+5): 200 ``{"status": "accepted", "event_id": n}`` for a new version, 200
   ``{"status": "duplicate"}`` for an exact re-delivery (the shop's agent must not retry it forever),
   503 when the inbox cannot be written. The stored payload is the body (without a ``token``).

Never a 500 (anything unexpected → 400). One log line per request: status, order id, latency; and one
receipt (`receipts`: outcome, latency, delivery lag from the body's ``sent_at``) for the flow's metrics.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from integration_sync.connectors.redaction import register_secrets
from integration_sync.lib.registry import ReceiverContext
from integration_sync.webhooks.answers import Refused, read_body, same
from integration_sync.webhooks.bitrix_order import PING_EVENT, SOURCE, OrderWebhook, ShopDate, decode_body
from integration_sync.webhooks.inbox import InboxWriter
from integration_sync.webhooks.limits import PayloadRefused
from integration_sync.webhooks.receipts import Outcome, receipt_log, refusal_outcome

logger = logging.getLogger(__name__)

PATH = "/webhooks/bitrix/order"
DEFAULT_MAX_BODY = 64 * 1024
_SHOP_DATE: TypeAdapter[datetime | None] = TypeAdapter(ShopDate | None)


def sent_time(value: Any) -> datetime | None:
    """The body's ``sent_at`` as an aware datetime (the order dates' formats), None when absent or unreadable."""
    try:
        return _SHOP_DATE.validate_python(value)
    except (ValidationError, ValueError, TypeError):
        return None


def _refusal(refused: PayloadRefused) -> Refused:
    details = [{"loc": list(refused.loc), "msg": refused.reason}] if refused.loc else []
    return Refused(422, {"error": refused.reason, "details": details})


def authenticate(token: bytes, token_in_body: bool, signature: str | None, body: bytes) -> None:
    """Raise `Refused` (401) unless the request is signed with `token` (or, when `token_in_body`
    and unsigned, carries it as ``"token"``)."""
    if signature is not None:
        provided = signature.strip().lower().removeprefix("sha256=").encode("ascii", "replace")
        expected = hmac.new(token, body, hashlib.sha256).hexdigest().encode("ascii")
        if not same(provided, expected):
            raise Refused(401, {"error": "invalid signature"})
        return
    if not token_in_body:
        raise Refused(401, {"error": "missing signature"})
    try:
        data, _ = decode_body(body)
    except PayloadRefused:
        raise Refused(401, {"error": "missing signature or token"}) from None
    given = data.get("token") if isinstance(data, dict) else None
    if not isinstance(given, str):
        raise Refused(401, {"error": "missing signature or token"})
    if not same(given.encode("utf-8", "surrogateescape"), token):
        raise Refused(401, {"error": "invalid token"})


def bitrix_order_routes(context: ReceiverContext) -> list[Route]:
    """The route, when ``WEBHOOK_TOKEN`` is set (unset: no route, a 404)."""
    secret = (context.env.get("WEBHOOK_TOKEN") or "").strip()
    if not secret:
        return []
    register_secrets(secret)
    token = secret.encode("utf-8")
    token_in_body = (context.env.get("WEBHOOK_TOKEN_IN_BODY") or "").strip().lower() in {"1", "true", "yes", "on"}
    settings = getattr(context.app_state, "settings", None)
    limit = int(getattr(settings, "max_body_bytes", DEFAULT_MAX_BODY))
    writer: InboxWriter = context.app_state.writer
    receipts = receipt_log(context.app_state)

    async def order_hook(request: Request) -> Response:
        started = time.monotonic()
        received_at = datetime.now(UTC)
        order_id: int | None = None
        sent_at: datetime | None = None
        answer: dict[str, Any]
        outcome: Outcome
        try:
            body = await read_body(request, limit)
            authenticate(token, token_in_body, request.headers.get("x-signature"), body)
            try:
                data, recoded = decode_body(body)
            except PayloadRefused as refused:
                raise _refusal(refused) from None
            # the token is a secret: never stored with the event, however the request was authenticated
            had_token = isinstance(data, dict) and data.pop("token", None) is not None
            if isinstance(data, dict):
                sent_at = sent_time(data.get("sent_at"))
            if isinstance(data, dict) and data.get("event") == PING_EVENT:
                code, answer, outcome = 200, {"status": "ok"}, "ping"
            else:
                code, answer, order_id = await _store(writer, data, body, recoded, had_token)
                outcome = "duplicate" if answer["status"] == "duplicate" else "accepted"
        except Refused as refused:
            code, answer, outcome = refused.status, refused.body, refusal_outcome(refused.status)
        except ClientDisconnect:  # the body never came whole: the sender's side
            code, answer, outcome = 400, {"error": "client disconnected"}, "refused_payload"
        except Exception as exc:  # never a 500 on input
            logger.warning("webhook bitrix_order unexpected %s", type(exc).__name__)
            code, answer, outcome = 400, {"error": "bad request"}, "error"
        latency_ms = (time.monotonic() - started) * 1000
        logger.info("webhook bitrix_order status=%s order_id=%s latency_ms=%.1f", code, order_id, latency_ms)
        receipts.record(
            SOURCE,
            code,
            outcome,
            received_at=received_at,
            latency_ms=latency_ms,
            order_id=order_id,
            sent_at=sent_at,
        )
        return JSONResponse(answer, status_code=code)

    return [Route(PATH, order_hook, methods=["POST"])]


async def _store(
    writer: InboxWriter, data: Any, body: bytes, recoded: list[str], had_token: bool
) -> tuple[int, dict[str, Any], int]:
    try:
        webhook = OrderWebhook.model_validate(data)
    except ValidationError as exc:
        details = [{"loc": [str(p) for p in err["loc"]], "msg": err["msg"]} for err in exc.errors(include_url=False)]
        raise Refused(422, {"error": "invalid order", "details": details}) from None
    order = webhook.order
    # the raw body as sent, unless it had to change: a token taken out, or text recoded to UTF-8
    payload = json.dumps(data, ensure_ascii=False) if had_token or recoded else body.decode("utf-8")
    reason = f"non-UTF-8 text read as cp1251: {', '.join(recoded)}" if recoded else None
    try:
        event_id = await asyncio.wrap_future(
            writer.submit(SOURCE, order.event_key(), order.order_day().isoformat(), payload, "accepted", reason)
        )
    except (sqlite3.Error, OSError) as exc:
        logger.error("webhook bitrix_order inbox write failed: %s", type(exc).__name__)
        raise Refused(503, {"error": "inbox unavailable, retry later"}) from None
    if event_id is None:
        return 200, {"status": "duplicate"}, order.ID
    return 200, {"status": "accepted", "event_id": event_id}, order.ID
