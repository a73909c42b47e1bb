"""The abcp_bitrix24 preflight: the ABCP login works, the Bitrix24 webhook answers, and the deal
category, its stage and the three UF fields the settings name exist (Bitrix24 accepts a deal with an
unknown CATEGORY_ID or UF code and files it in the default pipeline / drops the value, so nothing
else would tell). Used by `integration-sync doctor` and, the Bitrix24 part, at the start of a push."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from integration_sync.connectors.abcp import DEFAULT_POLICY as ABCP_POLICY
from integration_sync.connectors.abcp import AbcpClient
from integration_sync.connectors.bitrix24 import DEFAULT_POLICY as BITRIX24_POLICY
from integration_sync.connectors.bitrix24 import Bitrix24Client
from integration_sync.connectors.errors import ConfigError
from integration_sync.defs.abcp_bitrix24.mapping import DealSettings
from integration_sync.lib.preflight import call, chosen, environment, setting_problems

CATEGORY_VAR = "B24_DEAL_CATEGORY_ID_USERS"
STAGE_VAR = "B24_DEAL_STAGE_NEW_USERS"
UF_VARS = ("UF_B24_DEAL_ABCP_USER_ID", "UF_B24_DEAL_INN", "UF_B24_DEAL_SALDO")
ACCOUNT_PREFIX = "ABCP_"


def deal_problems(client: Bitrix24Client, settings: DealSettings, webhook_var: str = "B24_WEBHOOK_URL") -> list[str]:
    """Category, stage and UF fields against the portal: three list requests (one page each,
    unless the portal has more than 50 pipelines, stages or deal fields)."""
    rows, lines = call(
        webhook_var, "Bitrix24", lambda: list(client.iter_list("crm.category.list", params={"entityTypeId": 2}))
    )
    if rows is None:
        return lines
    categories = {int(row["id"]) for row in rows if isinstance(row, dict) and str(row.get("id", "")).isdigit()}
    if settings.category_id not in categories:
        lines.append(f"{CATEGORY_VAR}={settings.category_id}: Bitrix24 has no such deal pipeline (category)")
    else:
        entity = "DEAL_STAGE" if settings.category_id == 0 else f"DEAL_STAGE_{settings.category_id}"
        stages, failed = call(
            webhook_var, "Bitrix24", lambda: list(client.iter_list("crm.status.list", filter={"ENTITY_ID": entity}))
        )
        lines += failed
        if stages is not None and settings.stage_id not in {row.get("STATUS_ID") for row in stages}:
            lines.append(
                f"{STAGE_VAR}={settings.stage_id}: not a stage of the pipeline {settings.category_id} ({CATEGORY_VAR})"
            )
    fields, failed = call(webhook_var, "Bitrix24", lambda: list(client.iter_list("crm.deal.userfield.list")))
    lines += failed
    if fields is not None:
        names = {row.get("FIELD_NAME") for row in fields if isinstance(row, dict)}
        configured = (settings.uf_user_id, settings.uf_inn, settings.uf_saldo)
        lines += [
            f"{var}={code}: deals have no such field"
            for var, code in zip(UF_VARS, configured, strict=True)
            if code not in names
        ]
    return lines


def push_preflight(ctx: Any, client: Bitrix24Client) -> list[str]:
    """The push's check: the pipeline, stage and fields it is about to write exist."""
    settings: DealSettings = ctx.resources.users_pipeline.settings()
    return deal_problems(client, settings)


def abcp_problems(client: AbcpClient) -> list[str]:
    """One cheap cp/users request (users registered in the last day, one page of one)."""
    since = datetime.now(UTC) - timedelta(days=1)
    _, lines = call(
        "ABCP_BASE_URL",
        "ABCP",
        lambda: next(iter(client.fetch_users(registered_from=since)), None),
        "ABCP_USERLOGIN/ABCP_USERPSW",
    )
    return lines


def doctor(env: Mapping[str, str]) -> list[str]:
    """Every check, against the services `env` points at."""
    from integration_sync.defs.abcp_bitrix24.resources import users_pipeline_resource
    from integration_sync.defs.resources import abcp_resource, bitrix24_resource

    webhook_var = chosen(env, ACCOUNT_PREFIX, "B24_WEBHOOK_URL")
    required = ("ABCP_BASE_URL", "ABCP_USERLOGIN", "ABCP_USERPSW", webhook_var, CATEGORY_VAR, STAGE_VAR, *UF_VARS)
    lines = setting_problems(env, required, (CATEGORY_VAR,))
    if lines:
        return lines
    with environment(env):
        abcp = abcp_resource().process_config_and_initialize()
        portal = bitrix24_resource(ACCOUNT_PREFIX).process_config_and_initialize()
        pipeline = users_pipeline_resource().process_config_and_initialize()
    # one attempt each: a doctor reports an unreachable service instead of waiting through retries
    policy = replace(ABCP_POLICY, timeout=abcp.timeout_s, max_attempts=1)
    with AbcpClient(abcp.base_url, abcp.userlogin, abcp.password, page_size=1, max_pages=1, policy=policy) as client:
        lines += abcp_problems(client)
    try:
        b24 = Bitrix24Client(portal.webhook_url, policy=replace(BITRIX24_POLICY, max_attempts=1))
    except ConfigError as exc:  # a malformed webhook URL: the message names the host only
        return [*lines, f"{webhook_var}: {exc.message}"]
    with b24:
        lines += deal_problems(b24, pipeline.settings(), webhook_var)
    return lines
