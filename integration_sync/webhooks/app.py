"""The webhook receiver app: ``create_app(settings) -> Starlette``, with every flow's routes (a flow
registers them through its `FlowPlugin.routes`) and the payments flow's endpoint, `payment_routes`.

``POST /webhook/payment``, in this order:

1. Size: ``Content-Length`` over ``max_body_bytes`` → 413 before reading; otherwise the body is
   counted while streaming and 413 as soon as it passes the limit.
2. Authentication (401 ``{"error": ...}`` on failure; nothing is stored):

   - ``X-Signature: <hex>`` (an optional ``sha256=`` prefix is allowed) = hex HMAC-SHA256 with the
     shared secret of the raw body, or, when an ``X-Timestamp: <unix seconds>`` header is present, of
     ``f"{timestamp}.".encode() + body``. A signed timestamp must be within
     ``timestamp_tolerance_s`` of the receiver's clock (0 disables the check), else "stale timestamp".
   - Legacy, only when ``legacy_secret_enabled``: ``X-Webhook-Secret: <secret>`` (no ``X-Signature``).
   - All comparisons use ``hmac.compare_digest``.
3. UTF-8 JSON within the storage bounds of `limits` (int64 integers, depth ≤ 32, strings ≤ 10,000
   characters, no lone surrogates) and validated by `PaymentWebhook` (cost and amount ≤ 10^9, at most
   1,000 items) → 422 ``{"error": ..., "details": [{loc, msg}]}``.
4. Committed to the inbox (through its one writer, in batches) under ``payment:{payment_id}`` (a
   skipped one under ``payment:{payment_id}:skipped:{STATUS}``, so a later CONFIRMED still gets in;
   ``%`` and ``:`` escaped in both parts: see `inbox.payment_key`)
   before answering: 200
   ``{"status": "accepted", "event_id": n}``; 202 when an exclusion rule skips it (stored as
   'skipped' with the reason); 409 ``{"error": "duplicate", "payment_id": ...}`` when the key is
   already in the inbox; 503 when the inbox cannot be written (the platform retries).

No input yields a 500. ``GET /webhook/health`` → ``{"status": "ok", "inbox_events": n}``.
One log line per request: status, payment_id and latency; never the signature, secret or body. One
receipt per request (`receipts`; delivery lag from a verified ``X-Timestamp``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from integration_sync.connectors.redaction import register_secrets
from integration_sync.lib.registry import ReceiverContext, plugins
from integration_sync.webhooks.answers import Refused, read_body, same
from integration_sync.webhooks.inbox import PAYMENT_SOURCE, EventStatus, Inbox, InboxWriter, payment_key
from integration_sync.webhooks.limits import PayloadRefused, load_json
from integration_sync.webhooks.models import PaymentWebhook
from integration_sync.webhooks.receipts import Outcome, ReceiptLog, receipt_log, refusal_outcome
from integration_sync.webhooks.settings import ReceiverSettings

logger = logging.getLogger(__name__)

SOURCE = PAYMENT_SOURCE


def _safe(value: object, limit: int = 80) -> str:
    """A log-safe rendering of an untrusted value (no newlines, bounded)."""
    return repr(str(value)[:limit])


def verify(settings: ReceiverSettings, headers: Any, body: bytes, now: float | None = None) -> None:
    """Raise `Refused` (401) unless the request is authenticated; see the module docstring."""
    secret = settings.secret.get_secret_value().encode("utf-8")
    signature = headers.get("x-signature")
    if signature is not None:
        provided = signature.strip().lower().removeprefix("sha256=")
        timestamp = headers.get("x-timestamp")
        message = body if timestamp is None else timestamp.strip().encode("latin-1", "replace") + b"." + body
        expected = hmac.new(secret, message, hashlib.sha256).hexdigest()
        if not same(provided, expected):
            raise Refused(401, {"error": "invalid signature"})
        if timestamp is not None and settings.timestamp_tolerance_s > 0:
            try:
                signed_at = float(timestamp.strip())
            except ValueError:
                raise Refused(401, {"error": "invalid timestamp"}) from None
            current = time.time() if now is None else now
            if not abs(current - signed_at) <= settings.timestamp_tolerance_s:
                raise Refused(401, {"error": "stale timestamp"})
        return
    legacy = headers.get("x-webhook-secret")
    if legacy is not None and settings.legacy_secret_enabled:
        if not same(legacy.encode("latin-1", "replace"), secret):
            raise Refused(401, {"error": "invalid secret"})
        return
    raise Refused(401, {"error": "missing signature"})


def _signed_at(headers: Any) -> datetime | None:
    """The verified ``X-Timestamp`` (the platform's send time), if any."""
    try:
        return datetime.fromtimestamp(float(headers["x-timestamp"].strip()), UTC)
    except (KeyError, ValueError, OverflowError, OSError):
        return None


def _parse(body: bytes) -> tuple[str, PaymentWebhook]:
    try:
        data = load_json(body)
    except PayloadRefused as refused:
        details = [{"loc": list(refused.loc), "msg": refused.reason}] if refused.loc else []
        raise Refused(422, {"error": refused.reason, "details": details}) from None
    text = body.decode("utf-8")
    try:
        return text, PaymentWebhook.model_validate(data)
    except ValidationError as exc:
        details = [{"loc": [str(p) for p in err["loc"]], "msg": err["msg"]} for err in exc.errors(include_url=False)]
        raise Refused(422, {"error": "invalid payload", "details": details}) from None


def payment_routes(context: ReceiverContext) -> list[BaseRoute]:
    """`POST /webhook/payment`, registered by the payments flow (see the module docstring)."""
    settings: ReceiverSettings = context.app_state.settings
    writer: InboxWriter = context.app_state.writer
    receipts = receipt_log(context.app_state)
    if not settings.secret.get_secret_value():
        return []  # the payments flow is not configured on this receiver: no route, a 404

    async def payment(request: Request) -> Response:
        started = time.monotonic()
        received_at = datetime.now(UTC)
        payment_id: str | None = None
        sent_at: datetime | None = None
        outcome: Outcome
        try:
            body = await read_body(request, settings.max_body_bytes)
            verify(settings, request.headers, body)
            if request.headers.get("x-signature") is not None:  # the timestamp is signed only then
                sent_at = _signed_at(request.headers)
            text, webhook = _parse(body)
            order = webhook.course_order
            payment_id = order.payment_id
            reason = settings.exclusion_reason(order.status, order.domain)
            status: EventStatus = "accepted" if reason is None else "skipped"
            # a skipped status (PENDING, …) must not block the same payment's later CONFIRMED webhook
            key = payment_key(payment_id, None if reason is None else order.status.upper())
            try:
                event_id = await asyncio.wrap_future(
                    writer.submit(SOURCE, key, order.event_date.isoformat(), text, status, reason)
                )
            except (sqlite3.Error, OSError) as exc:
                logger.error("webhook payment inbox write failed: %s", type(exc).__name__)
                raise Refused(503, {"error": "inbox unavailable, retry later"}) from None
            if event_id is None:
                raise Refused(409, {"error": "duplicate", "payment_id": payment_id})
            if reason is not None:
                code, answer, outcome = 202, {"status": "skipped", "reason": reason, "event_id": event_id}, "skipped"
            else:
                code, answer, outcome = 200, {"status": "accepted", "event_id": event_id}, "accepted"
        except Refused as rejection:
            code, answer = rejection.status, rejection.body
            outcome = "duplicate" if code == 409 else refusal_outcome(code)
        except ClientDisconnect:
            code, answer, outcome = 400, {"error": "client disconnected"}, "refused_payload"
        except Exception as exc:  # never a 500 on input
            logger.warning("webhook payment unexpected %s", type(exc).__name__)
            code, answer, outcome = 400, {"error": "bad request"}, "error"
        latency_ms = (time.monotonic() - started) * 1000
        logger.info("webhook payment status=%s payment_id=%s latency_ms=%.1f", code, _safe(payment_id), latency_ms)
        receipts.record(
            SOURCE, code, outcome, received_at=received_at, latency_ms=latency_ms, order_id=payment_id, sent_at=sent_at
        )
        return JSONResponse(answer, status_code=code)

    return [Route("/webhook/payment", payment, methods=["POST"])]


def create_app(settings: ReceiverSettings) -> Starlette:
    """The receiver app: `/webhook/health` and every flow's routes (`FlowPlugin.routes`); its inbox is
    ``app.state.inbox``."""
    register_secrets(*(v for v in (settings.secret.get_secret_value(), os.environ.get("SHEETS_WEBHOOK_SECRET")) if v))
    inbox = Inbox(settings.inbox_path)
    writer = InboxWriter(inbox)
    receipts = ReceiptLog(inbox)  # before the routes: they find it in the state

    async def health(request: Request) -> Response:
        try:
            count = await run_in_threadpool(inbox.count)
        except (sqlite3.Error, OSError):
            return JSONResponse({"status": "error", "error": "inbox unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "inbox_events": count})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        writer.close()
        receipts.close()

    state = SimpleNamespace(settings=settings, inbox=inbox, writer=writer, receipts=receipts)
    context = ReceiverContext(env=os.environ, app_state=state)
    routes: list[BaseRoute] = [Route("/webhook/health", health, methods=["GET"])]
    for flow in plugins():
        if flow.routes is not None:
            routes.extend(flow.routes(context))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.inbox = inbox
    app.state.writer = writer
    app.state.receipts = receipts
    app.state.settings = settings
    return app
