"""`POST /webhook/amocrm/{secret}`: amoCRM's lead status hooks into the inbox (no Dagster here).

amoCRM signs nothing: the secret is the last path segment (`SHEETS_WEBHOOK_SECRET`), compared in
constant time; a wrong one → 401 and nothing stored. The body is `application/x-www-form-urlencoded`
with PHP bracket keys (`leads[status][0][id]`, `[status_id]`, `[pipeline_id]`, `[old_status_id]`,
`[date_create]`, `[last_modified]`, `account[id]`), every value a string, several leads per POST.

Each lead becomes one inbox event keyed `amocrm_status:{lead}:{status}:{last_modified}`, dated by the
lead's creation day in the flow's zone (its partition). The answer is 200 once the events are
committed — also for a re-delivery (the key is already there) and for hooks the flow ignores (other
events, an unknown account): amoCRM disables a hook that answers non-2xx too often. A body that is not
an amoCRM hook at all (a lead id that is not a number) → 422 with the reasons; too large → 413; the
inbox unwritable → 503 (amoCRM re-sends later).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from integration_sync.lib.registry import ReceiverContext
from integration_sync.webhooks.answers import Refused, read_body, same
from integration_sync.webhooks.inbox import InboxWriter

logger = logging.getLogger(__name__)

SOURCE = "amocrm_status"
PATH = "/webhook/amocrm/{secret}"
MAX_BODY = 1_000_000
_KEY = re.compile(r"^leads\[status\]\[(\d{1,4})\]\[([a-z_]+)\]$")
_NEEDED = ("id", "status_id", "pipeline_id")


HookRefused = Refused


def parse_status_hook(body: bytes) -> tuple[list[dict[str, int]], dict[str, str]]:
    """The leads of a status hook (id, status_id, pipeline_id, old_status_id, old_pipeline_id,
    date_create, last_modified as ints) and the account fields. Raises `HookRefused` (422) when a
    lead's value is not a number."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise HookRefused(422, {"error": "body is not UTF-8 form data"}) from None
    leads: dict[int, dict[str, str]] = {}
    account: dict[str, str] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match:
            leads.setdefault(int(match.group(1)), {})[match.group(2)] = value
        elif key.startswith("account[") and key.endswith("]"):
            account[key[8:-1]] = value
    parsed: list[dict[str, int]] = []
    details: list[dict[str, object]] = []
    for index in sorted(leads):
        fields = leads[index]
        lead: dict[str, int] = {}
        for name in (*_NEEDED, "old_status_id", "old_pipeline_id", "date_create", "last_modified"):
            raw = fields.get(name, "").strip()
            if not raw and name not in _NEEDED:
                continue
            if not raw.isdigit() or len(raw) > 18:
                details.append({"loc": ["leads", "status", index, name], "msg": f"not a number: {raw[:40]!r}"})
                break
            lead[name] = int(raw)
        else:
            parsed.append(lead)
    if details:
        raise HookRefused(422, {"error": "invalid status hook", "details": details})
    return parsed, account


def event_key(lead: Mapping[str, int]) -> str:
    return f"{SOURCE}:{lead['id']}:{lead['status_id']}:{lead.get('last_modified', 0)}"


def creation_day(lead: Mapping[str, int], zone: ZoneInfo) -> str:
    stamp = lead.get("date_create") or lead.get("last_modified") or int(time.time())
    return datetime.fromtimestamp(stamp, UTC).astimezone(zone).date().isoformat()


def amocrm_routes(context: ReceiverContext) -> Sequence[BaseRoute]:
    """The route, when `SHEETS_WEBHOOK_SECRET` is set (no secret: no route, a 404 for everyone)."""
    secret = (context.env.get("SHEETS_WEBHOOK_SECRET") or "").strip()
    if not secret:
        return []
    zone = ZoneInfo((context.env.get("SHEETS_TIMEZONE") or "").strip() or "Asia/Tashkent")
    account_id = (context.env.get("SHEETS_AMO_ACCOUNT_ID") or "").strip()
    writer: InboxWriter = context.app_state.writer

    async def hook(request: Request) -> Response:
        started = time.monotonic()
        stored = 0
        answer: dict[str, object]
        try:
            if not same(str(request.path_params.get("secret", "")), secret):
                raise HookRefused(401, {"error": "unknown hook address"})
            leads, account = parse_status_hook(await read_body(request, MAX_BODY))
            if account_id and account.get("id") and account["id"] != account_id:
                code, answer = 200, {"status": "ignored", "reason": "another amoCRM account"}
            else:
                for lead in leads:
                    payload = json.dumps({**lead, "account_id": account.get("id", "")})
                    future = writer.submit(SOURCE, event_key(lead), creation_day(lead, zone), payload, "accepted", None)
                    try:
                        stored += await asyncio.wrap_future(future) is not None
                    except (sqlite3.Error, OSError) as exc:
                        logger.error("webhook amocrm inbox write failed: %s", type(exc).__name__)
                        raise HookRefused(503, {"error": "inbox unavailable, retry later"}) from None
                code, answer = 200, {"status": "accepted", "leads": len(leads), "new": stored}
        except HookRefused as refused:
            code, answer = refused.status, refused.body
        except ClientDisconnect:
            code, answer = 400, {"error": "client disconnected"}
        except Exception as exc:  # never a 500 on input
            logger.warning("webhook amocrm unexpected %s", type(exc).__name__)
            code, answer = 400, {"error": "bad request"}
        logger.info(
            "webhook amocrm status=%s new=%s latency_ms=%.1f", code, stored, (time.monotonic() - started) * 1000
        )
        return JSONResponse(answer, status_code=code)

    return [Route(PATH, hook, methods=["POST"])]
