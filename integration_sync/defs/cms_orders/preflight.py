"""The cms_orders preflight: the settings parse, the shop's endpoint answers with its key, the Bitrix24
webhook answers, and the pipeline and every stage the status maps name exist (Bitrix24 files a deal
with an unknown CATEGORY_ID in the default pipeline and refuses an unknown STAGE_ID only at write
time, so nothing else would tell). Used by `integration-sync doctor` and, the Bitrix24 part, at the
start of the deals push."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from integration_sync.connectors.bitrix24 import DEFAULT_POLICY as BITRIX24_POLICY
from integration_sync.connectors.bitrix24 import Bitrix24Client
from integration_sync.connectors.bitrix_shop import BitrixShopClient
from integration_sync.connectors.errors import ConfigError
from integration_sync.defs.cms_orders.settings import CmsSettings
from integration_sync.lib.preflight import call, chosen, environment, setting_problems
from integration_sync.sync.normalize import KAZAKHSTAN

CATEGORY_VAR = "CMS_B24_DEAL_CATEGORY_ID"
ACCOUNT_PREFIX = "CMS_"
MIN_TOKEN_LENGTH = 16


def pipeline_problems(
    client: Bitrix24Client, settings: CmsSettings, webhook_var: str = "CMS_B24_WEBHOOK_URL"
) -> list[str]:
    """The pipeline and the stages of both maps against the portal (two list requests)."""
    rows, lines = call(
        webhook_var, "Bitrix24", lambda: list(client.iter_list("crm.category.list", params={"entityTypeId": 2}))
    )
    if rows is None:
        return lines
    categories = {int(row["id"]) for row in rows if isinstance(row, dict) and str(row.get("id", "")).isdigit()}
    if settings.category_id not in categories:
        return [*lines, f"{CATEGORY_VAR}={settings.category_id}: Bitrix24 has no such deal pipeline (category)"]
    entity = "DEAL_STAGE" if settings.category_id == 0 else f"DEAL_STAGE_{settings.category_id}"
    stages, failed = call(
        webhook_var, "Bitrix24", lambda: list(client.iter_list("crm.status.list", filter={"ENTITY_ID": entity}))
    )
    lines += failed
    if stages is None:
        return lines
    known = {row.get("STATUS_ID") for row in stages if isinstance(row, dict)}
    for var, named in (
        ("CMS_STATUS_STAGE_MAP", settings.status_stages.values()),
        ("CMS_STAGE_STATUS_MAP", settings.stage_statuses.keys()),
    ):
        lines += [
            f"{var}: {stage} is not a stage of the pipeline {settings.category_id}"
            for stage in named
            if stage not in known
        ]
    return lines


def push_preflight(ctx: Any, client: Bitrix24Client) -> list[str]:
    """The deals push's check: the pipeline and stages it is about to write exist."""
    settings: CmsSettings = ctx.resources.cms_orders.settings()
    return pipeline_problems(client, settings, chosen(os.environ, ACCOUNT_PREFIX, "B24_WEBHOOK_URL"))


def shop_problems(client: BitrixShopClient) -> list[str]:
    """One export request of today's orders, one a page: the URL and the key work."""
    today = datetime.now(UTC).astimezone(KAZAKHSTAN).date()
    _, lines = call(
        "BITRIX_WEBHOOK_URL",
        "the shop",
        lambda: next(iter(client.export("orders", today, today, 1)), None),
        "BITRIX_WEBHOOK_KEY",
    )
    return lines


def doctor(env: Mapping[str, str]) -> list[str]:
    """Every check, against the services `env` points at."""
    from integration_sync.defs.cms_orders.resources import shop_endpoint_resource
    from integration_sync.defs.resources import bitrix24_resource

    webhook_var = chosen(env, ACCOUNT_PREFIX, "B24_WEBHOOK_URL")
    lines = setting_problems(
        env, (webhook_var, "BITRIX_WEBHOOK_URL", "BITRIX_WEBHOOK_KEY", "WEBHOOK_TOKEN"), (CATEGORY_VAR,)
    )
    token = (env.get("WEBHOOK_TOKEN") or "").strip()
    if token and len(token) < MIN_TOKEN_LENGTH:
        lines.append(
            f"WEBHOOK_TOKEN is shorter than {MIN_TOKEN_LENGTH} characters: generate one (openssl rand -hex 32)"
        )
    if (env.get("BITRIX_WEBHOOK_URL") or "").strip() and (env.get("BITRIX_WEBHOOK_URL") or "").strip() == (
        env.get(webhook_var) or ""
    ).strip():
        lines.append(f"BITRIX_WEBHOOK_URL is the shop's endpoint, not the Bitrix24 portal ({webhook_var})")
    try:
        settings = CmsSettings.from_env(env)
    except ConfigError as exc:
        return [*lines, f"{exc.service}: {exc.message}"]
    if lines:
        return lines
    with environment(env):
        portal = bitrix24_resource(ACCOUNT_PREFIX).process_config_and_initialize()
        shop = shop_endpoint_resource().process_config_and_initialize()
    try:
        shop_client = BitrixShopClient(shop.url, shop.key)
    except ConfigError as exc:
        lines.append(f"BITRIX_WEBHOOK_URL: {exc.message}")
    else:
        with shop_client:
            lines += shop_problems(shop_client)
    try:
        b24 = Bitrix24Client(portal.webhook_url, policy=replace(BITRIX24_POLICY, max_attempts=1))
    except ConfigError as exc:  # a malformed webhook URL: the message names the host only
        return [*lines, f"{webhook_var}: {exc.message}"]
    with b24:
        lines += pipeline_problems(b24, settings, webhook_var)
    return lines
