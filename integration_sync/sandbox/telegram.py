"""The Telegram Bot API emulator (``/telegram/bot<token>/<method>``): ``getMe`` and ``sendMessage``,
the only methods the alerts use, answering as Telegram does.

- Every answer is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description":
  "..."}``; flood control adds ``"parameters": {"retry_after": s}`` to a 429 (no Retry-After header).
- A token that is not ``<digits>:<secret>`` or an unknown method: 404 ``Not Found``; a well-formed
  but wrong token: 401 ``Unauthorized``.
- Parameters come from the query string, a form or a JSON body; ``chat_id`` missing: 400 ``Bad Request:
  chat_id is empty``; unknown chat: 400 ``Bad Request: chat not found``; no text: 400 ``Bad Request:
  message text is empty``; over 4096 characters: 400 ``Bad Request: message is too long``.
- About one message per second per chat (a short burst passes), then 429.

Control: ``GET /_sandbox/telegram/messages`` (every message sent, oldest first).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from integration_sync.sandbox.core import Clock, JsonDict, JsonResponse, LeakyBucket, Service
from integration_sync.sandbox.smtp_sink import sink_url

BOT_ID = 7000000001
BOT_TOKEN = f"{BOT_ID}:AAHsandboxTokenOnlyForTheEmulator0001"
CHAT_ID = 700100200  # a private chat with the operator
GROUP_CHAT_ID = -1001234567890  # a supergroup of operators
MAX_TEXT = 4096
TOKEN_RE = re.compile(r"^\d+:[A-Za-z0-9_-]{30,}$")
CHAT_RATE_PER_S = 1.0
CHAT_BURST = 5


def alerts_env(base_url: str) -> dict[str, str]:
    """The alert settings pointing at the sandbox at ``base_url``: its Bot API and its SMTP sink.

    The sink's port is asked of the running sandbox (``GET /_sandbox/smtp/``: tests start it on a
    free port); a sandbox not running yet gets the port after its HTTP port, where `serve` puts it.
    """
    base = base_url.rstrip("/")
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", (parts.port or 80) + 1
    try:
        answer = httpx.get(f"{base}/_sandbox/smtp/", timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        answer = None
    if isinstance(answer, dict) and answer.get("running"):
        host, port = str(answer["host"]), int(answer["port"])
    return {
        "ALERT_TELEGRAM_API_URL": f"{base}/telegram",
        "ALERT_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "ALERT_TELEGRAM_CHAT_ID": str(CHAT_ID),
        "ALERT_SMTP_URL": sink_url(host, port),
        "ALERT_EMAIL_FROM": "integration-sync@sandbox.test",
        "ALERT_EMAIL_TO": "operator@sandbox.test",
    }


def _error(status: int, description: str, retry_after: int | None = None) -> Response:
    body: JsonDict = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return JsonResponse(body, status_code=status)


class TelegramService(Service):
    """One bot and the chats it may write to."""

    name = "telegram"

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.messages: list[JsonDict] = []
        self.chats: dict[int, JsonDict] = {}
        self.buckets: dict[int, LeakyBucket] = {}

    def reset(self, seed: int, volumes: Mapping[str, Any]) -> None:
        with self.lock:
            self.messages = []
            self.chats = {
                CHAT_ID: {"id": CHAT_ID, "first_name": "Operator", "username": "sandbox_operator", "type": "private"},
                GROUP_CHAT_ID: {"id": GROUP_CHAT_ID, "title": "Sync alerts", "type": "supergroup"},
            }
            self.buckets = {}
            self.reset_counters()
        self.configure_faults(None)

    def entities(self) -> dict[str, int]:
        return {"messages": len(self.messages)}

    def fault_response(self, status: int, body: Any, method: str) -> Response:
        if body is not None:
            return super().fault_response(status, body, method)
        if status == 429:
            return _error(429, "Too Many Requests: retry after 1", retry_after=1)
        if status >= 500:
            return _error(status, "Internal Server Error" if status == 500 else "Bad Gateway")
        return _error(status, "Bad Request: injected error")

    def routes(self) -> list[BaseRoute]:
        return [Route("/bot{token}/{method}", self.handle, methods=["GET", "POST"])]

    def control_routes(self) -> list[BaseRoute]:
        async def messages(request: Request) -> Response:
            with self.lock:
                return JsonResponse(list(self.messages))

        return [Route("/messages", messages, methods=["GET"])]

    async def _params(self, request: Request) -> dict[str, Any] | None:
        params: dict[str, Any] = dict(parse_qsl(request.url.query, keep_blank_values=True))
        if request.method != "POST":
            return params
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        raw = await request.body()
        if content_type == "application/json":
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return None
            if not isinstance(body, dict):
                return None
            params.update(body)
        elif content_type == "application/x-www-form-urlencoded":
            params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        elif content_type == "multipart/form-data":  # Telegram takes it; the emulator does not parse it
            return None
        return params

    async def handle(self, request: Request) -> Response:
        token = str(request.path_params["token"])
        method = str(request.path_params["method"]).lower()  # Bot API methods are case-insensitive
        self.count_request(method)
        if not TOKEN_RE.match(token) or method not in ("getme", "sendmessage"):
            return _error(404, "Not Found")
        if token != BOT_TOKEN:
            return _error(401, "Unauthorized")
        fault = await self.apply_faults(method)
        if fault is not None:
            return fault
        if method == "getme":
            return JsonResponse({"ok": True, "result": self._bot()})
        params = await self._params(request)
        if params is None:
            return _error(400, "Bad Request: can't parse request body")
        return self._send_message(params)

    @staticmethod
    def _bot() -> JsonDict:
        return {"id": BOT_ID, "is_bot": True, "first_name": "Sync alerts", "username": "sandbox_sync_alerts_bot"}

    def _send_message(self, params: Mapping[str, Any]) -> Response:
        raw_chat = params.get("chat_id")
        if raw_chat in (None, ""):
            return _error(400, "Bad Request: chat_id is empty")
        try:
            chat_id = int(str(raw_chat))
        except ValueError:
            return _error(400, "Bad Request: chat not found")  # an unknown @username
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            return _error(400, "Bad Request: message is too long")
        with self.lock:
            chat = self.chats.get(chat_id)
            if chat is None:
                return _error(400, "Bad Request: chat not found")
            bucket = self.buckets.setdefault(chat_id, LeakyBucket(CHAT_RATE_PER_S, CHAT_BURST, self.clock))
            if not bucket.try_acquire():
                self.count_throttled()
                wait = max(1, math.ceil(bucket.seconds_until_available()))
                return _error(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
            message: JsonDict = {
                "message_id": len(self.messages) + 1,
                "from": self._bot(),
                "chat": dict(chat),
                "date": int(self.clock.now()),
                "text": text,
            }
            self.messages.append(message)
        return JsonResponse({"ok": True, "result": message})
