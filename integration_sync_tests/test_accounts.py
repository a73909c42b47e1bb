"""One CRM account per flow: `{PREFIX}AMO_*` / `{PREFIX}B24_*` over the shared defaults, token stores
and rate budgets keyed by account, and the pre-issue-10 single token store adopted on upgrade
(against two sandbox amoCRM accounts over real HTTP)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from integration_sync.connectors.amocrm_auth import AmoAuth, TokenPair, TokenStore
from integration_sync.connectors.errors import ConfigError
from integration_sync.defs.resources import (
    LEGACY_AMOCRM_TOKENS,
    AmoCrmResource,
    Bitrix24Resource,
    amocrm_resource,
    bitrix24_resource,
)
from integration_sync_tests.connectors.sandbox_support import FAST_POLICY, Sandbox, running_sandbox

CONTACT_ID = 20000001  # the first seeded contact of a sandbox account

AMO_VARS = (
    "AMO_BASE_URL",
    "AMO_CLIENT_ID",
    "AMO_CLIENT_SECRET",
    "AMO_REDIRECT_URI",
    "AMO_ACCESS_TOKEN",
    "AMO_REFRESH_TOKEN",
    "AMO_LONG_LIVED_TOKEN",
    "AMO_RATE_PER_S",
    "AMO_HTTP_RETRIES",
    "AMO_HTTP_BACKOFF_S",
)
B24_VARS = ("B24_WEBHOOK_URL", "B24_RATE_PER_S", "B24_BURST")
PREFIXES = ("KASPI_", "PAYMENTS_", "ABCP_", "SHEETS_", "CMS_")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    for name in (*AMO_VARS, *B24_VARS):
        monkeypatch.delenv(name, raising=False)
        for prefix in PREFIXES:
            monkeypatch.delenv(prefix + name, raising=False)
    monkeypatch.setenv("INTEGRATION_SYNC_DATA_DIR", str(data_dir))


@pytest.fixture(scope="module")
def two_accounts() -> Iterator[tuple[Sandbox, Sandbox]]:
    """Two amoCRM accounts: two emulators, each with its own tokens (on two ports, so two hosts)."""
    volumes: dict[str, Any] = {"amocrm_contacts": 3, "kaspi_orders": 0, "abcp_users": 0, "days": 0}
    with running_sandbox(**volumes) as first, running_sandbox(**volumes) as second:
        yield first, second


@pytest.fixture
def accounts(two_accounts: tuple[Sandbox, Sandbox]) -> tuple[Sandbox, Sandbox]:
    for sb in two_accounts:
        sb.reset()
    return two_accounts


def amo_env(monkeypatch: pytest.MonkeyPatch, sb: Sandbox, prefix: str = "") -> None:
    for name in AMO_VARS:
        if sb.env.get(name):
            monkeypatch.setenv(prefix + name, sb.env[name])
    monkeypatch.setenv(prefix + "AMO_HTTP_BACKOFF_S", "0.01")


def live(resource: AmoCrmResource) -> AmoCrmResource:
    initialized: AmoCrmResource = resource.process_config_and_initialize()
    return initialized


def tokens(sb: Sandbox) -> dict[str, Any]:
    result: dict[str, Any] = sb.control("GET", "amocrm/tokens")
    return result


# -- which variable a flow reads ---------------------------------------------------------------


def test_the_prefixed_variables_win_over_the_shared_default(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "AMO_BASE_URL": "https://{}.amocrm.ru",
        "AMO_CLIENT_ID": "{}-client",
        "AMO_CLIENT_SECRET": "{}-secret",
        "AMO_REDIRECT_URI": "https://{}.example/cb",
        "AMO_ACCESS_TOKEN": "{}-access",
        "AMO_REFRESH_TOKEN": "{}-refresh",
        "AMO_LONG_LIVED_TOKEN": "{}-long",
    }
    numbers = {"AMO_RATE_PER_S": ("6.8", "3.5"), "AMO_HTTP_RETRIES": ("5", "2"), "AMO_HTTP_BACKOFF_S": ("1", "0.25")}
    for name, pattern in values.items():
        monkeypatch.setenv(name, pattern.format("shared"))
        monkeypatch.setenv("KASPI_" + name, pattern.format("kaspi"))
    for name, (default_value, kaspi_value) in numbers.items():
        monkeypatch.setenv(name, default_value)
        monkeypatch.setenv("KASPI_" + name, kaspi_value)

    declared = amocrm_resource("KASPI_")
    # secrets stay EnvVars of the variable actually used, so they never show in the UI
    for field in ("base_url", "client_secret", "access_token", "refresh_token", "long_lived_token"):
        value = getattr(declared, field)
        assert isinstance(value, dg.EnvVar) and value.env_var_name.startswith("KASPI_AMO_"), (field, value)
    kaspi = live(declared)
    assert kaspi.base_url == "https://kaspi.amocrm.ru"
    assert (kaspi.client_id, kaspi.client_secret, kaspi.redirect_uri) == (
        "kaspi-client",
        "kaspi-secret",
        "https://kaspi.example/cb",
    )
    assert (kaspi.access_token, kaspi.refresh_token, kaspi.long_lived_token) == (
        "kaspi-access",
        "kaspi-refresh",
        "kaspi-long",
    )
    assert (kaspi.rate_per_s, kaspi.retry_attempts, kaspi.retry_backoff_s) == (3.5, 2, 0.25)

    # a flow without overrides, and the no-argument call, read the shared variables
    for shared in (live(amocrm_resource("PAYMENTS_")), live(amocrm_resource())):
        assert (shared.base_url, shared.client_id, shared.client_secret) == (
            "https://shared.amocrm.ru",
            "shared-client",
            "shared-secret",
        )
        assert (shared.access_token, shared.long_lived_token, shared.rate_per_s) == (
            "shared-access",
            "shared-long",
            6.8,
        )

    monkeypatch.setenv("B24_WEBHOOK_URL", "https://shared.bitrix24.ru/rest/1/aaa/")
    monkeypatch.setenv("B24_RATE_PER_S", "2")
    monkeypatch.setenv("B24_BURST", "50")
    monkeypatch.setenv("ABCP_B24_WEBHOOK_URL", "https://abcp.bitrix24.ru/rest/1/bbb/")
    monkeypatch.setenv("ABCP_B24_RATE_PER_S", "5")
    monkeypatch.setenv("ABCP_B24_BURST", "250")
    declared_b24 = bitrix24_resource("ABCP_")
    assert (
        isinstance(declared_b24.webhook_url, dg.EnvVar)
        and declared_b24.webhook_url.env_var_name == "ABCP_B24_WEBHOOK_URL"
    )
    abcp: Bitrix24Resource = declared_b24.process_config_and_initialize()
    assert (abcp.webhook_url, abcp.rate_per_s, abcp.burst) == ("https://abcp.bitrix24.ru/rest/1/bbb/", 5.0, 250)
    for shared_b24 in (bitrix24_resource("CMS_"), bitrix24_resource()):
        portal: Bitrix24Resource = shared_b24.process_config_and_initialize()
        assert (portal.webhook_url, portal.rate_per_s, portal.burst) == (
            "https://shared.bitrix24.ru/rest/1/aaa/",
            2.0,
            50,
        )


def test_an_empty_prefixed_value_falls_back_to_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMO_BASE_URL", "https://shared.amocrm.ru")
    monkeypatch.setenv("AMO_CLIENT_SECRET", "shared-secret")
    monkeypatch.setenv("AMO_RATE_PER_S", "4")
    monkeypatch.setenv("KASPI_AMO_BASE_URL", "")
    monkeypatch.setenv("KASPI_AMO_CLIENT_SECRET", "  ")
    monkeypatch.setenv("KASPI_AMO_RATE_PER_S", "")
    declared = amocrm_resource("KASPI_")
    assert isinstance(declared.base_url, dg.EnvVar) and isinstance(declared.client_secret, dg.EnvVar)
    assert (declared.base_url.env_var_name, declared.client_secret.env_var_name) == (
        "AMO_BASE_URL",
        "AMO_CLIENT_SECRET",
    )
    kaspi = live(declared)
    assert (kaspi.base_url, kaspi.client_secret, kaspi.rate_per_s) == ("https://shared.amocrm.ru", "shared-secret", 4.0)

    monkeypatch.setenv("B24_WEBHOOK_URL", "https://shared.bitrix24.ru/rest/1/aaa/")
    monkeypatch.setenv("ABCP_B24_WEBHOOK_URL", "")
    portal: Bitrix24Resource = bitrix24_resource("ABCP_").process_config_and_initialize()
    assert portal.webhook_url == "https://shared.bitrix24.ru/rest/1/aaa/"


# -- files keyed by account ---------------------------------------------------------------------


def test_two_accounts_get_two_token_stores_and_rate_files_two_flows_on_one_share_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AMO_BASE_URL", "https://school.amocrm.ru")
    monkeypatch.setenv("AMO_LONG_LIVED_TOKEN", "LL")
    monkeypatch.setenv("KASPI_AMO_BASE_URL", "https://shop.amocrm.ru")
    monkeypatch.setenv("KASPI_AMO_LONG_LIVED_TOKEN", "LL-shop")
    monkeypatch.setenv("SHEETS_AMO_BASE_URL", "https://shop.amocrm.ru/api/v4/")  # the Kaspi account again
    monkeypatch.setenv("SHEETS_AMO_LONG_LIVED_TOKEN", "LL-shop")
    kaspi, payments, sheets = (live(amocrm_resource(p)) for p in ("KASPI_", "PAYMENTS_", "SHEETS_"))

    assert kaspi.token_store_path() != payments.token_store_path()
    assert kaspi.rate_state_path() != payments.rate_state_path()
    assert sheets.token_store_path() == kaspi.token_store_path()
    assert sheets.rate_state_path() == kaspi.rate_state_path()
    paths = {kaspi.token_store_path(), kaspi.rate_state_path(), payments.token_store_path()}
    assert all(p.parent == Path(kaspi.state_dir) and p.name != LEGACY_AMOCRM_TOKENS for p in paths)
    for resource in (kaspi, payments):  # the client really uses them
        with resource.client() as client:
            assert client.auth.store is not None and client.auth.store.path == resource.token_store_path()
            assert client.block.path == resource.rate_state_path().with_suffix(".blocked.json")

    monkeypatch.setenv("B24_WEBHOOK_URL", "https://flowers.bitrix24.ru/rest/1/aaa/")
    monkeypatch.setenv("ABCP_B24_WEBHOOK_URL", "https://parts.bitrix24.ru/rest/1/bbb/")
    monkeypatch.setenv("CMS_B24_WEBHOOK_URL", "https://flowers.bitrix24.ru/rest/7/ccc/")  # same portal, other hook
    names = {}
    for prefix in ("ABCP_", "CMS_", ""):
        portal: Bitrix24Resource = bitrix24_resource(prefix).process_config_and_initialize()
        with portal.client() as client:
            names[prefix] = client.limiter.name
    assert names["ABCP_"] != names[""] and names["CMS_"] == names[""]


def test_the_legacy_token_store_is_adopted_once_and_keeps_the_oauth_pair(
    accounts: tuple[Sandbox, Sandbox], monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    sb, _ = accounts
    legacy = TokenStore(data_dir / "state" / LEGACY_AMOCRM_TOKENS)
    env = sb.env
    # an installed deployment: its single store holds a refreshed pair (the .env pair is spent)
    old = AmoAuth(
        env["AMO_BASE_URL"],
        client_id=env["AMO_CLIENT_ID"],
        client_secret=env["AMO_CLIENT_SECRET"],
        redirect_uri=env["AMO_REDIRECT_URI"],
        initial_access_token=env["AMO_ACCESS_TOKEN"],
        initial_refresh_token=env["AMO_REFRESH_TOKEN"],
        store=legacy,
        policy=FAST_POLICY,
    )
    installed = old.refresh()
    old.close()
    other_account = TokenPair("other-access", "other-refresh", None, time.time())
    legacy.save("elsewhere.amocrm.ru|cid", other_account)
    assert tokens(sb)["refresh_used"] == [env["AMO_REFRESH_TOKEN"]]

    amo_env(monkeypatch, sb)
    resource = live(amocrm_resource())
    with resource.client() as client:
        contact = client.get_contact(CONTACT_ID)
        assert contact is not None and contact.id == CONTACT_ID
        assert client.auth.refresh_count == 0 and client.stats.auth_renewals == 0
    adopted = TokenStore(resource.token_store_path())
    assert adopted.get(old.account) == installed
    assert legacy.get(old.account) is None  # moved, so a spent pair is never adopted again
    assert legacy.get("elsewhere.amocrm.ru|cid") == other_account  # another account's pair stays
    assert tokens(sb)["refresh_reuse_attempts"] == 0

    # later starts use the account's own store, even if the old file got a row back somehow
    legacy.save(old.account, TokenPair("stale-access", "stale-refresh", None, time.time()))
    assert not adopted.adopt(legacy.path, old.account)
    with live(amocrm_resource()).client() as client:
        assert client.get_contact(CONTACT_ID) is not None
        assert client.auth.access_token() == installed.access_token


def test_a_refreshed_pair_of_one_account_never_reaches_another(
    accounts: tuple[Sandbox, Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    shop, school = accounts
    amo_env(monkeypatch, shop, "KASPI_")
    amo_env(monkeypatch, shop, "SHEETS_")  # a second flow on the shop's account
    amo_env(monkeypatch, school)  # the shared default: the payments flow's account
    kaspi, sheets, payments = (live(amocrm_resource(p)) for p in ("KASPI_", "SHEETS_", "PAYMENTS_"))
    assert kaspi.base_url == shop.env["AMO_BASE_URL"] and payments.base_url == school.env["AMO_BASE_URL"]

    with kaspi.client() as client:
        assert client.get_contact(CONTACT_ID) is not None
        shop.control("POST", "amocrm/tokens/expire", {})
        assert client.get_contact(CONTACT_ID) is not None
        assert client.auth.refresh_count == 1
        refreshed, shop_account = client.auth.current(), client.auth.account
    assert refreshed is not None and refreshed.refresh_token in tokens(shop)["refresh_active"]

    # the other flow on the shop's account picks the new pair up: no second refresh of a spent token
    with sheets.client() as client:
        assert client.get_contact(CONTACT_ID) is not None
        assert client.auth.refresh_count == 0 and client.auth.access_token() == refreshed.access_token
    assert tokens(shop)["refresh_used"] == [shop.env["AMO_REFRESH_TOKEN"]]

    # the school's account never sees the shop's pair: its own store, its own .env pair, no refresh
    with payments.client() as client:
        assert client.get_contact(CONTACT_ID) is not None
        assert client.auth.refresh_count == 0 and client.stats.auth_renewals == 0
        assert client.auth.access_token() == school.env["AMO_ACCESS_TOKEN"] != refreshed.access_token
        school_account = client.auth.account
    school_tokens = tokens(school)
    assert school_tokens["refresh_used"] == [] and school_tokens["refresh_reuse_attempts"] == 0
    school_store, shop_store = TokenStore(payments.token_store_path()), TokenStore(kaspi.token_store_path())
    assert shop_store.path != school_store.path
    assert not (Path(kaspi.state_dir) / LEGACY_AMOCRM_TOKENS).exists()  # no old store: none is made
    assert shop_store.accounts() == [shop_account] and school_store.accounts() == [school_account]
    school_pair = school_store.get(school_account)
    assert school_pair is not None and school_pair.access_token == school.env["AMO_ACCESS_TOKEN"]


def test_a_flow_with_its_own_account_never_takes_the_shared_accounts_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A half-set override (own URL, no own tokens) must not send the school's tokens to the shop's host."""
    monkeypatch.setenv("AMO_BASE_URL", "https://school.amocrm.ru")
    for name in ("AMO_CLIENT_ID", "AMO_CLIENT_SECRET", "AMO_ACCESS_TOKEN", "AMO_REFRESH_TOKEN", "AMO_LONG_LIVED_TOKEN"):
        monkeypatch.setenv(name, f"school-{name}")
    monkeypatch.setenv("KASPI_AMO_BASE_URL", "https://shop.amocrm.ru")
    kaspi = live(amocrm_resource("KASPI_"))
    values = (kaspi.client_id, kaspi.client_secret, kaspi.access_token, kaspi.refresh_token, kaspi.long_lived_token)
    assert values == ("", "", "", "", "")
    with pytest.raises(ConfigError, match="OAuth needs client_id, client_secret"):
        kaspi.client()
    payments = live(amocrm_resource("PAYMENTS_"))  # no own URL: the shared account, with its credentials
    assert payments.long_lived_token == "school-AMO_LONG_LIVED_TOKEN"
