"""Pieces every flow's preflight shares: reading the doctor's environment, turning a service's
refusal into one line naming the variable, and checking ids against what amoCRM lists.

A line names the variable and the value it holds, never a secret: connector errors are redacted
already, and for credentials only the variable's name is given."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TypeVar

from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.connectors.amocrm_models import CustomField
from integration_sync.connectors.errors import AuthError, ConfigError, IntegrationError

T = TypeVar("T")


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Run the resource factories (which read `os.environ`) over `env` instead, restoring it after."""
    if env is os.environ:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update({key: value for key, value in env.items() if value is not None})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def chosen(env: Mapping[str, str], prefix: str, name: str) -> str:
    """The variable an account setting is read from: ``{prefix}{name}`` when set, else ``name``."""
    own = prefix + name
    return own if prefix and (env.get(own) or "").strip() else name


def setting_problems(env: Mapping[str, str], required: Sequence[str], ints: Sequence[str]) -> list[str]:
    """Variables the flow's clients cannot be built without (unset), and ids that are not integers."""
    lines = [f"{name} is not set" for name in required if not (env.get(name) or "").strip()]
    for name in ints:
        value = (env.get(name) or "").strip()
        if value and not value.lstrip("-").isdigit():
            lines.append(f"{name}={value!r} is not an integer")
    return lines


def amo_credentials(env: Mapping[str, str], prefix: str) -> str:
    """The variables holding a flow's amoCRM credentials (its own when it has its own account)."""
    own = prefix if chosen(env, prefix, "AMO_BASE_URL") != "AMO_BASE_URL" else ""
    if (env.get(own + "AMO_LONG_LIVED_TOKEN") or "").strip():
        return own + "AMO_LONG_LIVED_TOKEN"
    return f"{own}AMO_CLIENT_ID/{own}AMO_CLIENT_SECRET and the stored OAuth pair"


def call(var: str, what: str, probe: Callable[[], T], auth_var: str | None = None) -> tuple[T | None, list[str]]:
    """Run one request against a service: its answer, or one line saying why not (refused
    credentials, naming `auth_var`; unreachable or an unexpected answer, naming `var`)."""
    try:
        return probe(), []
    except AuthError as exc:
        return None, [f"{auth_var or var}: {what} refused the credentials ({exc.message})"]
    except ConfigError as exc:
        return None, [f"{auth_var or var}: {exc.message}"]
    except IntegrationError as exc:
        return None, [f"{var}: {what} did not answer as expected ({exc})"]


def amocrm_checks(
    env: Mapping[str, str], prefix: str, check: Callable[[AmoCrmClient, str, str], list[str]]
) -> list[str]:
    """Open the flow's amoCRM account (`{prefix}AMO_*` over the shared `AMO_*`) with one attempt per
    request — a doctor reports an unreachable service instead of waiting through retries — and run
    `check(client, account_var, auth_var)`; a refused or unreachable account is one line."""
    from integration_sync.defs.resources import amocrm_resource

    account_var = chosen(env, prefix, "AMO_BASE_URL")
    with environment(env):
        amo = amocrm_resource(prefix).process_config_and_initialize()
    auth_var = amo_credentials(env, prefix)
    crm, failed = call(account_var, "amoCRM", lambda: amo.model_copy(update={"retry_attempts": 1}).client(), auth_var)
    if crm is None:
        return failed
    with crm:
        return check(crm, account_var, auth_var)


def pipeline_problems(
    pipelines: Mapping[int, Collection[int]],
    pipeline_var: str,
    pipeline_id: int,
    status_var: str | None = None,
    status_id: int | None = None,
) -> list[str]:
    """The pipeline exists in amoCRM and the status (when given) is one of its statuses."""
    if pipeline_id not in pipelines:
        return [f"{pipeline_var}={pipeline_id}: amoCRM has no such pipeline"]
    if status_var is not None and status_id not in pipelines[pipeline_id]:
        return [f"{status_var}={status_id}: not a status of pipeline {pipeline_id} ({pipeline_var})"]
    return []


def field_problems(fields: Mapping[int, CustomField], where: str, named: Sequence[tuple[str, int | None]]) -> list[str]:
    """Every configured custom field id (None: not configured) is a field of `where`."""
    return [
        f"{var}={field_id}: amoCRM has no such custom field on {where}"
        for var, field_id in named
        if field_id is not None and field_id not in fields
    ]


def enum_problems(
    fields: Mapping[int, CustomField], field_var: str, field_id: int | None, named: Sequence[tuple[str, int]]
) -> list[str]:
    """Every configured enum id is a value of that field (unchecked when the field itself is missing)."""
    if field_id is None or field_id not in fields:
        return []
    enums = {enum.id for enum in fields[field_id].enums}
    return [
        f"{var}={enum_id}: not a value of the field {field_id} ({field_var})"
        for var, enum_id in named
        if enum_id not in enums
    ]


def amo_pipelines(client: AmoCrmClient) -> dict[int, set[int]]:
    return {pipeline.id: {status.id for status in pipeline.statuses} for pipeline in client.list_pipelines()}


def amo_fields(client: AmoCrmClient, entity: str) -> dict[int, CustomField]:
    return {field.id: field for field in client.list_custom_fields(entity)}
