"""An SMTP sink for the sandbox: a minimal SMTP server over asyncio streams (EHLO/HELO, AUTH PLAIN,
MAIL FROM, RCPT TO, DATA, RSET, NOOP, QUIT) that keeps every message it accepts.

It runs its own event loop in a daemon thread (`SmtpSink.start`); `MailService` mounts its control
routes on the sandbox: ``GET /_sandbox/smtp`` (host and port), ``GET /_sandbox/smtp/messages``.
Like a real submission server it refuses MAIL before AUTH, and a wrong password with 535.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
from collections.abc import Mapping
from email import policy
from email.parser import BytesParser
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from integration_sync.sandbox.core import Clock, JsonDict, JsonResponse, Service

SMTP_USER = "alerts"
SMTP_PASSWORD = "sandbox-smtp-Pa55-9c1e"  # noqa: S105 - the emulator's published test credential
MAX_MESSAGE_BYTES = 1_000_000


def sink_url(host: str, port: int) -> str:
    return f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@{host}:{port}"


class SmtpSink:
    """The SMTP server; `messages` holds what it accepted (sender, recipients, subject, text, raw)."""

    def __init__(self, username: str = SMTP_USER, password: str = SMTP_PASSWORD) -> None:
        self.username = username
        self.password = password
        self.host = "127.0.0.1"
        self.port = 0
        self.messages: list[JsonDict] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------------- lifecycle
    def start(self, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0) -> SmtpSink:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(asyncio.start_server(self._session, host, port))
                self.host, self.port = host, int(self._server.sockets[0].getsockname()[1])
            except OSError as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="smtp-sink", daemon=True)
        self._thread.start()
        ready.wait(timeout)
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop = self._server = self._thread = None

    @property
    def url(self) -> str:
        return sink_url(self.host, self.port)

    def clear(self) -> None:
        with self._lock:
            self.messages = []

    def snapshot(self) -> list[JsonDict]:
        with self._lock:
            return [dict(m) for m in self.messages]

    # -------------------------------------------------------------------- protocol
    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(line: str) -> None:
            writer.write(line.encode("ascii") + b"\r\n")
            await writer.drain()

        authed = not self.username
        sender: str | None = None
        recipients: list[str] = []
        try:
            await reply("220 sandbox.test ESMTP sink ready")
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if verb == "EHLO":
                    await reply("250-sandbox.test greets you")
                    await reply("250-8BITMIME")
                    await reply(f"250-SIZE {MAX_MESSAGE_BYTES}")
                    await reply("250 AUTH PLAIN")
                elif verb == "HELO":
                    await reply("250 sandbox.test")
                elif verb == "AUTH":
                    authed = await self._auth(arg, reader, reply)
                elif verb == "MAIL":
                    if not authed:
                        await reply("530 5.7.0 Authentication required")
                    elif not arg.upper().startswith("FROM:"):
                        await reply("501 5.5.4 Syntax: MAIL FROM:<address>")
                    else:
                        sender, recipients = _address(arg[5:]), []
                        await reply("250 2.1.0 OK")
                elif verb == "RCPT":
                    if sender is None:
                        await reply("503 5.5.1 Error: need MAIL command")
                    elif not arg.upper().startswith("TO:") or not _address(arg[3:]):
                        await reply("501 5.5.4 Syntax: RCPT TO:<address>")
                    else:
                        recipients.append(_address(arg[3:]))
                        await reply("250 2.1.5 OK")
                elif verb == "DATA":
                    if sender is None or not recipients:
                        await reply("503 5.5.1 Error: need RCPT command")
                        continue
                    await reply("354 End data with <CR><LF>.<CR><LF>")
                    data = await _read_data(reader)
                    if data is None:
                        await reply("552 5.3.4 Message too big")
                    else:
                        self._keep(sender, recipients, data)
                        await reply("250 2.0.0 OK: queued")
                    sender, recipients = None, []
                elif verb == "RSET":
                    sender, recipients = None, []
                    await reply("250 2.0.0 OK")
                elif verb == "NOOP":
                    await reply("250 2.0.0 OK")
                elif verb == "QUIT":
                    await reply("221 2.0.0 Bye")
                    return
                else:
                    await reply("502 5.5.2 Error: command not recognized")
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _auth(self, arg: str, reader: asyncio.StreamReader, reply: Any) -> bool:
        mechanism, _, initial = arg.partition(" ")
        if mechanism.upper() != "PLAIN":
            await reply("504 5.5.4 Unrecognized authentication type")
            return False
        if not initial:
            await reply("334 ")
            initial = (await reader.readline()).decode("ascii", "replace").strip()
        try:
            _, user, password = base64.b64decode(initial, validate=True).decode("utf-8").split("\0")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            await reply("501 5.5.2 Cannot decode response")
            return False
        if user == self.username and password == self.password:
            await reply("235 2.7.0 Authentication successful")
            return True
        await reply("535 5.7.8 Error: authentication failed")
        return False

    def _keep(self, sender: str, recipients: list[str], data: bytes) -> None:
        message = BytesParser(policy=policy.default).parsebytes(data)
        body = message.get_body(preferencelist=("plain",)) if hasattr(message, "get_body") else None
        text = body.get_content() if body is not None else ""
        with self._lock:
            self.messages.append(
                {
                    "mail_from": sender,
                    "rcpt_to": list(recipients),
                    "subject": str(message.get("Subject", "")),
                    "from": str(message.get("From", "")),
                    "to": str(message.get("To", "")),
                    "text": text,
                    "raw": data.decode("utf-8", "replace"),
                }
            )


def _address(value: str) -> str:
    value = value.strip()
    if value.startswith("<"):
        value = value[1 : value.find(">") if ">" in value else None]
    return value.split(" ", 1)[0]


async def _read_data(reader: asyncio.StreamReader) -> bytes | None:
    """The message up to the lone dot, dot-unstuffed; None when it is over the size limit."""
    lines: list[bytes] = []
    size = 0
    while True:
        raw = await reader.readline()
        if not raw:
            raise asyncio.IncompleteReadError(b"", None)
        if raw in (b".\r\n", b".\n"):
            break
        if raw.startswith(b".."):
            raw = raw[1:]
        size += len(raw)
        if size <= MAX_MESSAGE_BYTES:
            lines.append(raw)
    return b"".join(lines) if size <= MAX_MESSAGE_BYTES else None


class MailService(Service):
    """The SMTP sink as a sandbox service: no HTTP API of its own, control routes to read it."""

    name = "smtp"

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.sink = SmtpSink()

    def reset(self, seed: int, volumes: Mapping[str, Any]) -> None:
        self.sink.clear()
        self.reset_counters()
        self.configure_faults(None)

    def entities(self) -> dict[str, int]:
        return {"messages": len(self.sink.messages)}

    def routes(self) -> list[BaseRoute]:
        return []

    def control_routes(self) -> list[BaseRoute]:
        async def where(request: Request) -> Response:
            return JsonResponse({"host": self.sink.host, "port": self.sink.port, "running": self.sink.port != 0})

        async def messages(request: Request) -> Response:
            return JsonResponse([{k: v for k, v in m.items() if k != "raw"} for m in self.sink.snapshot()])

        return [Route("/", where, methods=["GET"]), Route("/messages", messages, methods=["GET"])]
