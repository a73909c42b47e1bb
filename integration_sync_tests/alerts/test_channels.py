"""The alert channels against the sandbox's Bot API emulator and SMTP sink, over real HTTP and SMTP."""

from __future__ import annotations

import smtplib
from typing import Any

import httpx
import pytest

from integration_sync.alerts.notifier import (
    ChannelError,
    EmailChannel,
    Notifier,
    SmtpSettings,
    TelegramChannel,
    env_secrets,
)
from integration_sync.connectors.http import HttpPolicy
from integration_sync.connectors.redaction import redact
from integration_sync.sandbox.smtp_sink import SMTP_PASSWORD
from integration_sync.sandbox.telegram import BOT_TOKEN, CHAT_ID, GROUP_CHAT_ID

FAST = HttpPolicy(timeout=5, connect_timeout=2, max_attempts=3, backoff_base=0.01, max_retry_after=5)


def _telegram(sandbox_env: dict[str, str], token: str = BOT_TOKEN, chat: str = str(CHAT_ID)) -> TelegramChannel:
    return TelegramChannel(token, chat, sandbox_env["ALERT_TELEGRAM_API_URL"], policy=FAST)


def test_the_sandbox_env_points_both_channels_at_the_emulators(sandbox_env: dict[str, str], sandbox: Any) -> None:
    notifier = Notifier.from_env(sandbox_env)
    assert notifier.names == ["telegram", "email"]
    assert sandbox_env["ALERT_SMTP_URL"].endswith(f":{sandbox.sandbox.mail.sink.port}")


def test_telegram_message_lands_in_the_chat(sandbox_env: dict[str, str], control: httpx.Client) -> None:
    _telegram(sandbox_env).send("subject", "run r1 of kaspi_amocrm failed")
    messages = control.get("/_sandbox/telegram/messages").json()
    assert [(m["chat"]["id"], m["text"]) for m in messages] == [(CHAT_ID, "run r1 of kaspi_amocrm failed")]


def test_telegram_answers_like_telegram(sandbox: Any) -> None:
    api = f"{sandbox.base_url}/telegram/bot{BOT_TOKEN}"
    ok = httpx.post(f"{api}/sendMessage", data={"chat_id": str(GROUP_CHAT_ID), "text": "hi"}).json()
    assert ok["ok"] is True and ok["result"]["chat"]["type"] == "supergroup" and ok["result"]["message_id"] == 1
    assert httpx.post(f"{api}/sendMessage", json={"chat_id": 1, "text": "x"}).json() == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: chat not found",
    }
    assert httpx.post(f"{api}/sendMessage", json={"text": "x"}).json()["description"] == "Bad Request: chat_id is empty"
    empty = httpx.post(f"{api}/sendMessage", json={"chat_id": CHAT_ID, "text": ""}).json()
    assert empty["description"] == "Bad Request: message text is empty"
    long = httpx.post(f"{api}/sendMessage", json={"chat_id": CHAT_ID, "text": "x" * 4097})
    assert (long.status_code, long.json()["description"]) == (400, "Bad Request: message is too long")
    wrong = httpx.post(f"{sandbox.base_url}/telegram/bot1:{'A' * 35}/sendMessage", json={"chat_id": CHAT_ID})
    assert (wrong.status_code, wrong.json()["description"]) == (401, "Unauthorized")
    assert httpx.get(f"{sandbox.base_url}/telegram/botnotatoken/getMe").status_code == 404
    assert httpx.get(f"{api}/sendSticker").json()["error_code"] == 404


def test_telegram_flood_control_is_waited_out(sandbox_env: dict[str, str], control: httpx.Client) -> None:
    """Past a short burst a chat gets 429 with the wait only in `parameters.retry_after` (no header):
    the channel waits that long and resends, where its own quick backoff would give up."""
    channel = _telegram(sandbox_env)
    for n in range(7):
        channel.send("s", f"message {n}")
    stats = control.get("/_sandbox/stats").json()["telegram"]
    assert stats["throttled"] >= 1
    assert [m["text"] for m in control.get("/_sandbox/telegram/messages").json()] == [f"message {n}" for n in range(7)]


@pytest.mark.parametrize(("token", "chat"), [("1:" + "B" * 35, str(CHAT_ID)), (BOT_TOKEN, "42")])
def test_telegram_refusals_raise_without_the_token(sandbox_env: dict[str, str], token: str, chat: str) -> None:
    with pytest.raises(ChannelError) as caught:
        _telegram(sandbox_env, token, chat).send("s", "text")
    assert token not in str(caught.value)
    assert ("Unauthorized" if chat == str(CHAT_ID) else "chat not found") in str(caught.value)


def test_email_reaches_the_sink_with_auth(sandbox_env: dict[str, str], sandbox: Any) -> None:
    smtp = SmtpSettings.from_url(sandbox_env["ALERT_SMTP_URL"])
    EmailChannel(smtp, "sync@example.test", ["ops@example.test", "boss@example.test"]).send(
        "integration_sync: 1 alert", "run r1 of абв failed"
    )
    (message,) = sandbox.sandbox.mail.sink.snapshot()
    assert message["rcpt_to"] == ["ops@example.test", "boss@example.test"]
    assert message["subject"] == "integration_sync: 1 alert"
    assert message["text"].strip() == "run r1 of абв failed"


def test_a_wrong_smtp_password_is_an_error_without_the_password(sandbox_env: dict[str, str], sandbox: Any) -> None:
    url = sandbox_env["ALERT_SMTP_URL"].replace(SMTP_PASSWORD, "Wr0ng-pass-123")
    with pytest.raises(ChannelError) as caught:
        EmailChannel(SmtpSettings.from_url(url), "a@b.test", ["c@d.test"]).send("s", "t")
    assert "535" in str(caught.value) and "Wr0ng-pass-123" not in str(caught.value)
    assert sandbox.sandbox.mail.sink.snapshot() == []


def test_smtp_url_is_checked_without_showing_the_password() -> None:
    with pytest.raises(Exception) as caught:
        SmtpSettings.from_url("http://user:Secret-123@host:25")
    assert "Secret-123" not in str(caught.value)
    assert SmtpSettings.from_url("smtps://u:p%40ss@mail.example.test").port == 465
    assert SmtpSettings.from_url("smtps://u:p%40ss@mail.example.test").password == "p@ss"


def test_the_smtp_sink_speaks_smtp_strictly(sandbox: Any) -> None:
    """Like a submission server: no mail before AUTH, RCPT only after MAIL, dots unstuffed."""
    sink = sandbox.sandbox.mail.sink
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        client.ehlo()
        assert client.has_extn("auth") and not client.has_extn("starttls")
        assert client.mail("a@b.test")[0] == 530
        client.login("alerts", SMTP_PASSWORD)
        assert client.rcpt("c@d.test")[0] == 503
        assert client.mail("a@b.test")[0] == 250
        assert client.rcpt("c@d.test")[0] == 250
        assert client.data(b"Subject: s\r\n\r\n.leading dot\r\nend")[0] == 250
    (message,) = sink.snapshot()
    assert message["text"].splitlines() == [".leading dot", "end"]


def test_a_webhook_urls_code_is_a_secret_but_not_the_words_before_rest() -> None:
    env = {
        "CMS_B24_WEBHOOK_URL": "http://127.0.0.1:8787/bitrix24-shop/rest/1/sandboxshopb24hook/",
        "B24_WEBHOOK_URL": "https://dealer.bitrix24.ru/rest/17/k9x2m4q7w1z8/",
        "OTHER_WEBHOOK_URL": "https://hooks.example.kz/in/a1b2c3d4e5/",
    }
    secrets = env_secrets(env)
    assert {"sandboxshopb24hook", "k9x2m4q7w1z8", "a1b2c3d4e5"} <= set(secrets)
    assert "bitrix24-shop" not in secrets  # a path prefix: an alert may name the bitrix24/shop_deals asset
    text = "run of cms_orders failed: bitrix24__shop_deals (k9x2m4q7w1z8)"
    assert redact(text, secrets) == "run of cms_orders failed: bitrix24__shop_deals (***)"
