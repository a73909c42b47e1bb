"""Fixtures of the amoCRM index tests: one amoCRM emulator per module, reset per test, and a client
on its long-lived token (no OAuth round trips). `test_bitrix24.py` defines its own Bitrix24 ones."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.connectors.amocrm_auth import AmoAuth
from integration_sync_tests.connectors.sandbox_support import FAST_POLICY, Sandbox, running_sandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(amocrm_contacts=0, kaspi_orders=0) as sb:
        yield sb


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    sandbox.reset()
    return sandbox


@pytest.fixture
def client(sb: Sandbox) -> Iterator[AmoCrmClient]:
    token = str(next(t for t in sb.control("GET", "amocrm/tokens")["access_valid"] if "long" in t))
    auth = AmoAuth(sb.env["AMO_BASE_URL"], long_lived_token=token)
    with AmoCrmClient(sb.env["AMO_BASE_URL"], auth=auth, policy=FAST_POLICY) as amo:
        yield amo
