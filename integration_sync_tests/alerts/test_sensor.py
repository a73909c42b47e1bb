"""The alerts sensor end to end: real runs in a Dagster instance, the sensor's ticks, the messages the
sandbox's Bot API and SMTP sink received."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import httpx
import pytest

from integration_sync.defs.alerts.sensors import alerts
from integration_sync.lib.push import PUSH_TAG_KEY, push_tags
from integration_sync.sandbox.smtp_sink import SMTP_PASSWORD
from integration_sync.sandbox.telegram import BOT_TOKEN

FLOW = "demo_flow"
MODE: dict[str, Any] = {}


@dg.asset(group_name=FLOW, tags={PUSH_TAG_KEY: FLOW})
def demo_push() -> dg.MaterializeResult[None]:
    if MODE["fail"]:
        raise RuntimeError(f"refused by {MODE['leak']}")  # a secret leaking into an error: never in an alert
    return dg.MaterializeResult(metadata={"fetched": 20, "rejected": MODE["rejected"], "parked": 0, "dry_run": False})


@dg.asset_check(asset=demo_push, blocking=False)
def ids_present() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=MODE["check"], metadata={"missing_ids": 0 if MODE["check"] else 3})


@dg.asset_check(asset=demo_push, blocking=False)
def payments_landed() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=not MODE["late"], severity=dg.AssetCheckSeverity.WARN, metadata={"late": 2})


@dg.asset_check(asset=demo_push, blocking=False)
def rejected_share_below_threshold() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=not MODE["late"], severity=dg.AssetCheckSeverity.WARN)


DEFS = dg.Definitions(
    assets=[demo_push],
    asset_checks=[ids_present, payments_landed, rejected_share_below_threshold],
    jobs=[dg.define_asset_job("demo_job", selection=[demo_push], tags=push_tags(FLOW))],
    sensors=[alerts],
)


class Harness:
    def __init__(self, instance: dg.DagsterInstance, control: httpx.Client, sandbox: Any) -> None:
        self.instance = instance
        self.control = control
        self.sink = sandbox.sandbox.mail.sink
        self.cursor: str | None = None

    def run(self, *, fail: bool = False, rejected: int = 0, check: bool = True, late: bool = False) -> bool:
        MODE.update(fail=fail, rejected=rejected, check=check, late=late)
        job = DEFS.resolve_job_def("demo_job")
        return job.execute_in_process(instance=self.instance, raise_on_error=False).success

    def tick(self) -> str:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, definitions=DEFS)
        result = alerts(context)
        self.cursor = context.cursor
        assert isinstance(result, dg.SkipReason)
        return result.skip_message or ""

    def telegram(self) -> list[str]:
        return [m["text"] for m in self.control.get("/_sandbox/telegram/messages").json()]

    def emails(self) -> list[str]:
        return [f"{m['subject']}\n{m['text']}" for m in self.sink.snapshot()]


@pytest.fixture()
def harness(
    sandbox: Any, sandbox_env: dict[str, str], control: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    for name, value in sandbox_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ALERT_REJECTED_SHARE", raising=False)
    MODE["leak"] = f"{sandbox_env['B24_WEBHOOK_URL']} with {sandbox_env['KASPI_TOKEN']}"
    with dg.DagsterInstance.ephemeral() as instance:
        yield Harness(instance, control, sandbox)


def _assert_no_secret(texts: list[str], sandbox_env: dict[str, str]) -> None:
    secrets = [BOT_TOKEN, SMTP_PASSWORD, sandbox_env["B24_WEBHOOK_URL"], sandbox_env["KASPI_TOKEN"]]
    secrets.append(sandbox_env["B24_WEBHOOK_URL"].rstrip("/").rsplit("/", 1)[-1])  # the webhook code alone
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_a_failed_run_alerts_once_and_recovers_once(harness: Harness, sandbox_env: dict[str, str]) -> None:
    assert not harness.run(fail=True)
    assert "telegram: 1" in harness.tick()
    (telegram,) = harness.telegram()
    (email,) = harness.emails()
    for text in (telegram, email):
        assert "ALERT" in text and f"of {FLOW} failed: demo_push: RuntimeError: refused by *** with ***" in text
    _assert_no_secret([telegram, email, harness.cursor or ""], sandbox_env)  # the cursor shows in the UI

    assert not harness.run(fail=True)  # still failing: nothing new
    assert harness.tick().startswith("nothing new")
    assert (len(harness.telegram()), len(harness.emails())) == (1, 1)

    assert harness.run()
    harness.tick()
    assert len(harness.telegram()) == 2 and len(harness.emails()) == 2
    assert "RECOVERED" in harness.telegram()[1] and f"{FLOW} runs again" in harness.telegram()[1]
    assert "recovery" in harness.emails()[1]
    harness.tick()
    assert len(harness.telegram()) == 2  # a quiet tick says nothing


def test_a_failing_error_check_alerts_though_the_run_succeeds(harness: Harness) -> None:
    assert harness.run(check=False)  # a non-blocking check fails no run
    harness.tick()
    (telegram,) = harness.telegram()
    assert "check demo_push:ids_present failed (missing_ids=3)" in telegram
    assert harness.run(check=True)
    harness.tick()
    assert "demo_push:ids_present passes again" in harness.telegram()[1]


def test_rejected_share_over_the_threshold_alerts(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    assert harness.run(rejected=1)  # 5 %: at the default threshold
    harness.tick()
    assert harness.telegram() == []
    assert harness.run(rejected=2)  # 10 %
    harness.tick()
    (telegram,) = harness.telegram()
    assert f"{FLOW}: 2 rejected and 0 parked of 20 fetched (10.0%, threshold 5.0%)" in telegram
    monkeypatch.setenv("ALERT_REJECTED_SHARE", "20%")
    harness.tick()
    assert "RECOVERED" in harness.telegram()[1]


def test_a_failing_channel_is_retried_next_tick_without_repeating_the_other(
    harness: Harness, control: httpx.Client
) -> None:
    control.post("/_sandbox/faults", json={"telegram": {"error_burst": {"count": 3, "status": 502}}})
    assert not harness.run(fail=True)
    assert "not delivered by telegram" in harness.tick()
    assert (len(harness.telegram()), len(harness.emails())) == (0, 1)
    harness.tick()
    assert (len(harness.telegram()), len(harness.emails())) == (1, 1)


def test_without_channels_the_sensor_skips_and_says_which_settings(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ALERT_TELEGRAM_BOT_TOKEN", "ALERT_SMTP_URL"):
        monkeypatch.delenv(name)
    assert "ALERT_TELEGRAM_" in harness.tick()


def test_a_late_payment_alerts_though_its_check_only_warns(harness: Harness) -> None:
    assert harness.run(late=True)
    harness.tick()
    (telegram,) = harness.telegram()
    assert "check demo_push:payments_landed failed (late=2)" in telegram
    assert "rejected_share_below_threshold" not in telegram  # other WARN checks stay quiet


def test_the_sensor_ticks_over_the_real_code_location(
    sandbox_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from integration_sync.definitions import defs

    for name, value in sandbox_env.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(instance=instance, definitions=defs)
        result = alerts(context)
    assert isinstance(result, dg.SkipReason) and (result.skip_message or "").startswith("nothing new")
