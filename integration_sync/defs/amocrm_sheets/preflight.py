"""The amocrm_sheets preflight: the flow's settings parse, its amoCRM account answers and holds a
pipeline matching `PIPELINE_KEYWORD` with a trigger status and the lead fields the row shows, the sheet
is reachable with the active tab's and Staff's headers as the layout says, and the status webhook is
registered and enabled. Used by `integration-sync doctor`, and in parts at the start of each push."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integration_sync.connectors.amocrm import AmoCrmClient
from integration_sync.connectors.errors import ConfigError, IntegrationError
from integration_sync.defs.amocrm_sheets import layout
from integration_sync.defs.amocrm_sheets.amo_source import load_account_map
from integration_sync.defs.amocrm_sheets.settings import SheetsSettings, settings_problems
from integration_sync.lib.preflight import amocrm_checks, call

ACCOUNT_PREFIX = "SHEETS_"


def account_problems(
    client: AmoCrmClient, settings: SheetsSettings, account_var: str, auth_var: str | None
) -> list[str]:
    account, lines = call(account_var, "amoCRM", lambda: load_account_map(client, settings), auth_var)
    if account is None:
        return lines
    # a missing trigger status in one of several pipelines is worth a line, not a stop
    return [p for p in account.problems if "Заказ №" in p or "no pipeline" in p or "trigger" in p]


def sheet_problems(env: Mapping[str, str], settings: SheetsSettings) -> list[str]:
    """The sheet answers; the active tab and Staff exist with the layout's headers."""
    from integration_sync.defs.amocrm_sheets.resources import SheetAccess
    from integration_sync.defs.amocrm_sheets.sheet_source import read_all

    access = SheetAccess.from_env(env)
    try:
        snapshot = read_all(access.client(), access.sheet_id, settings)
    except IntegrationError as exc:
        var = "GOOGLE_SHEETS_TOKEN" if access.api_url else "GOOGLE_SERVICE_ACCOUNT_FILE"
        return [f"GOOGLE_SHEET_ID={access.sheet_id}: the sheet cannot be read ({exc.message}; check {var})"]
    problems: list[str] = []
    if snapshot.active() is None:
        problems.append(f"GOOGLE_WORKSHEET_NAME={settings.worksheet}: no such tab — run `integration-sync sheet setup`")
    for tab_id, lines in snapshot.broken_tabs.items():
        title = next((t.title for t in snapshot.tabs if t.id == tab_id), str(tab_id))
        problems.append(f"tab «{title}»: " + "; ".join(lines) + " (this tab is not synced until it is fixed)")
    if not any(t.role == "staff" for t in snapshot.tabs):
        problems.append(
            f"no «{layout.STAFF_TAB}» tab: «{layout.RESPONSIBLE}» stays empty — run `integration-sync sheet setup`"
        )
    staff_issues = [i for i in snapshot.issues if i.tab_title == layout.STAFF_TAB]
    problems += [f"tab «{layout.STAFF_TAB}»: {i.problem}" for i in staff_issues]
    return problems


def doctor(env: Mapping[str, str]) -> list[str]:
    problems = settings_problems(env)
    try:
        settings = SheetsSettings.from_env(env)
    except ConfigError:
        return problems
    problems += amocrm_checks(
        env,
        ACCOUNT_PREFIX,
        lambda client, account_var, auth_var: account_problems(client, settings, account_var, auth_var),
    )
    if settings.sheet_id:
        problems += sheet_problems(env, settings)
    from integration_sync.defs.amocrm_sheets.webhook_register import hook_problems

    problems += hook_problems(env)
    return problems


def edits_preflight(ctx: Any, client: AmoCrmClient) -> list[str]:
    """Before the sheet's edits go to amoCRM: a served pipeline and the «Заказ №» field exist."""
    from integration_sync.defs.amocrm_sheets.account_cache import cached_account_map

    account = cached_account_map(ctx.store, client, ctx.resources.google_sheet.settings())
    return [p for p in account.problems if "no pipeline" in p or "Заказ №" in p]


def rows_preflight(ctx: Any, client: Any) -> list[str]:
    """Before rows are written: the flow's settings parse (a wrong value names its variable)."""
    try:
        ctx.resources.google_sheet.settings()
    except ConfigError as exc:
        return [exc.message]
    return []
