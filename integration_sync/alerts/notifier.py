"""Where alerts go: Telegram (Bot API ``sendMessage`` through the project's HTTP policy) and e-mail
(SMTP with the standard library). No Dagster here.

Every text is redacted against the channel secrets and every secret-looking variable of the
environment before it leaves, and a failing channel raises `ChannelError` (redacted, nothing
chained) for the caller to log and retry later.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx

from integration_sync.connectors.errors import ConfigError, IntegrationError
from integration_sync.connectors.http import ApiClient, ErrorInfo, HttpPolicy, parse_retry_after, response_json
from integration_sync.connectors.redaction import GLOBAL_SECRETS, redact, safe_url

logger = logging.getLogger(__name__)

TELEGRAM_API_URL = "https://api.telegram.org"
TELEGRAM_MAX_TEXT = 4096
SECRET_NAME_PARTS = ("TOKEN", "SECRET", "PASSWORD", "PSW", "PASS", "KEY", "WEBHOOK_URL", "SMTP_URL")


class ChannelError(Exception):
    """A channel could not deliver (its message is redacted)."""


class Channel(Protocol):
    name: str

    def send(self, subject: str, text: str) -> None:
        """Deliver one message; ChannelError when it could not."""
        ...


def env_secrets(env: Mapping[str, str]) -> list[str]:
    """Values of secret-looking variables (tokens, passwords, webhook URLs) and the secret parts of
    such URLs (a webhook code in a path, a password in userinfo): no alert may show any of them."""
    found: list[str] = []
    for name, value in env.items():
        if not value or not any(part in name.upper() for part in SECRET_NAME_PARTS):
            continue
        found.append(value)
        if "://" in value:
            parts = urlsplit(value)
            if parts.password:
                found += [parts.password, unquote(parts.password)]
            segments = parts.path.split("/")
            if "rest" in segments:  # a Bitrix24 inbound webhook: /rest/<user id>/<code>/; what precedes is a prefix
                segments = segments[segments.index("rest") + 1 :]
            found += [seg for seg in segments if len(seg) >= 6 and any(c.isdigit() for c in seg)]
    return [s for s in found if len(s) >= 4]


def _telegram_error(response: httpx.Response) -> ErrorInfo:
    body = response_json(response)
    if isinstance(body, dict) and body.get("ok") is False:
        code = body.get("error_code")
        return ErrorInfo(str(code) if code is not None else None, str(body.get("description", "")))
    return ErrorInfo(None, response.reason_phrase)


def _telegram_retry_after(response: httpx.Response) -> float | None:
    """Telegram's flood control says how long to wait in ``parameters.retry_after`` (seconds)."""
    body = response_json(response)
    if isinstance(body, dict):
        parameters = body.get("parameters")
        if isinstance(parameters, dict) and isinstance(parameters.get("retry_after"), int | float):
            return float(parameters["retry_after"])
    return parse_retry_after(response.headers.get("Retry-After"))


class TelegramChannel:
    """``POST {api}/bot<token>/sendMessage`` with ``chat_id`` and ``text`` (plain text, no parse mode,
    so nothing in an alert can break Markdown parsing)."""

    name = "telegram"

    def __init__(
        self, token: str, chat_id: str, api_url: str = TELEGRAM_API_URL, policy: HttpPolicy | None = None
    ) -> None:
        self.chat_id = chat_id
        self._api = ApiClient(
            "telegram",
            f"{api_url.rstrip('/')}/bot{token}/",
            policy=policy or HttpPolicy(timeout=10, connect_timeout=5, max_attempts=3, max_retry_after=15),
            secrets=[token],
            parse_error=_telegram_error,
            retry_after=_telegram_retry_after,
        )

    def send(self, subject: str, text: str) -> None:
        body = {"chat_id": self.chat_id, "text": text[:TELEGRAM_MAX_TEXT], "disable_web_page_preview": True}
        problem = ""
        try:
            # a repeated notification is harmless, a lost one is not: retried like a read
            response = self._api.request("POST", "sendMessage", json=body, idempotent=True, endpoint="sendMessage")
            answer = self._api.parse_json(response)
        except IntegrationError as exc:
            problem = exc.args[0] if exc.args else type(exc).__name__
        else:
            if isinstance(answer, dict) and answer.get("ok") is True:
                return
            problem = "telegram: the answer is not ok"
        raise ChannelError(problem)

    def close(self) -> None:
        self._api.close()


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    ssl: bool
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    @classmethod
    def from_url(cls, url: str) -> SmtpSettings:
        """``smtp://user:pass@host:587`` (STARTTLS when offered) or ``smtps://user:pass@host:465``."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError("email", f"ALERT_SMTP_URL must be smtp://… or smtps://…, not {safe_url(url)}")
        secure = parts.scheme == "smtps"
        try:
            port = parts.port or (465 if secure else 587)
        except ValueError:
            raise ConfigError("email", f"ALERT_SMTP_URL has a bad port: {safe_url(url)}") from None
        return cls(
            host=parts.hostname,
            port=port,
            ssl=secure,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
        )


class EmailChannel:
    name = "email"

    def __init__(self, smtp: SmtpSettings, sender: str, recipients: Sequence[str], timeout: float = 10.0) -> None:
        self.smtp = smtp
        self.sender = sender
        self.recipients = list(recipients)
        self.timeout = timeout

    def send(self, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="integration-sync")
        message.set_content(text)
        problem = ""
        try:
            self._deliver(message)
        except (OSError, smtplib.SMTPException) as exc:
            problem = f"email: {type(exc).__name__}: {exc}"
        if problem:
            raise ChannelError(redact(problem, [self.smtp.password]))

    def _deliver(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if self.smtp.ssl:
            client = smtplib.SMTP_SSL(self.smtp.host, self.smtp.port, timeout=self.timeout, context=context)
        else:
            client = smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.timeout)
        with client:
            client.ehlo()
            if not self.smtp.ssl and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            if self.smtp.username:
                client.login(self.smtp.username, self.smtp.password)
            client.send_message(message, from_addr=self.sender, to_addrs=self.recipients)


@dataclass
class Notifier:
    """The configured channels and the secrets no message may carry."""

    channels: list[Channel]
    secrets: list[str]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Notifier:
        """Telegram when ALERT_TELEGRAM_BOT_TOKEN and ALERT_TELEGRAM_CHAT_ID are set; e-mail when
        ALERT_SMTP_URL and ALERT_EMAIL_TO are. Neither: no channel (alerts are only logged)."""
        channels: list[Channel] = []
        token = env.get("ALERT_TELEGRAM_BOT_TOKEN", "").strip()
        chat = env.get("ALERT_TELEGRAM_CHAT_ID", "").strip()
        if token and chat:
            api = env.get("ALERT_TELEGRAM_API_URL", "").strip() or TELEGRAM_API_URL
            channels.append(TelegramChannel(token, chat, api))
        smtp_url = env.get("ALERT_SMTP_URL", "").strip()
        recipients = [r.strip() for r in env.get("ALERT_EMAIL_TO", "").split(",") if r.strip()]
        if smtp_url and recipients:
            smtp = SmtpSettings.from_url(smtp_url)
            sender = env.get("ALERT_EMAIL_FROM", "").strip() or f"integration-sync@{smtp.host}"
            channels.append(EmailChannel(smtp, sender, recipients))
        return cls(channels, env_secrets(env))

    @property
    def names(self) -> list[str]:
        return [channel.name for channel in self.channels]

    def clean(self, text: str) -> str:
        return GLOBAL_SECRETS.redact(redact(text, self.secrets))

    def send(self, channel: Channel, subject: str, text: str) -> bool:
        """Deliver one message on one channel; False (logged, redacted) when it failed."""
        try:
            channel.send(self.clean(subject), self.clean(text))
        except ChannelError as exc:
            logger.warning("alert not delivered by %s (retried next tick): %s", channel.name, self.clean(str(exc)))
            return False
        return True

    def close(self) -> None:
        for channel in self.channels:
            closer: Any = getattr(channel, "close", None)
            if closer is not None:
                closer()


def summary_subject(kinds: Iterable[str]) -> str:
    kinds = list(kinds)
    alerts = sum(1 for kind in kinds if kind == "alert")
    recoveries = len(kinds) - alerts
    parts = [f"{alerts} alert{'s' if alerts != 1 else ''}"] if alerts else []
    parts += [f"{recoveries} recover{'ies' if recoveries != 1 else 'y'}"] if recoveries else []
    return f"integration_sync: {', '.join(parts) or 'nothing'}"
