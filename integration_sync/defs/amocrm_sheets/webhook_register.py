"""The flow's amoCRM status webhook (the seed's manual "Lead status changed" hook set-up):
`integration-sync amocrm webhook register|status|unregister`, `hook_problems` for `doctor`, and
`on_start` for `integration-sync up`, which registers it only on the sandbox's seller account.

The hook's URL is `{SHEETS_WEBHOOK_BASE_URL}/webhook/amocrm/{SHEETS_WEBHOOK_SECRET}`: amoCRM signs
nothing, so the secret path segment is the endpoint's only protection and is never printed."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from integration_sync.connectors.amocrm import AmoCrmClient, Webhook
from integration_sync.connectors.errors import ApiError, BlockedError, ConfigError, IntegrationError
from integration_sync.connectors.redaction import redact, register_secrets
from integration_sync.lib.registry import CommandGroups

FLOW: Final = "amocrm_sheets"
ACCOUNT_PREFIX: Final = "SHEETS_"
BASE_VAR: Final = "SHEETS_WEBHOOK_BASE_URL"
SECRET_VAR: Final = "SHEETS_WEBHOOK_SECRET"  # noqa: S105 - a variable's name
ROUTE: Final = "/webhook/amocrm/"
SETTINGS: Final = ("status_lead",)  # lead status changes only: the flow re-reads the lead anyway
SECRET_FORM: Final = re.compile(r"[A-Za-z0-9_-]{16,}")
REGISTER: Final = "`integration-sync amocrm webhook register`"


def hook_url(env: Mapping[str, str]) -> str:
    """The receiver's address amoCRM posts status changes to; ConfigError naming the variable."""
    base = (env.get(BASE_VAR) or "").strip().rstrip("/")
    secret = (env.get(SECRET_VAR) or "").strip()
    if not base:
        raise ConfigError(FLOW, f"{BASE_VAR} is not set (the receiver's public address, e.g. https://sync.example.com)")
    if not base.startswith(("https://", "http://")):
        raise ConfigError(FLOW, f"{BASE_VAR} must be an http(s):// address")
    if not secret:
        raise ConfigError(FLOW, f"{SECRET_VAR} is not set")
    if not SECRET_FORM.fullmatch(secret):
        raise ConfigError(FLOW, f"{SECRET_VAR} must be at least 16 characters of A-Z, a-z, 0-9, _ and -")
    register_secrets(secret)  # httpx's request log shows `filter[destination]=<url>`
    return f"{base}{ROUTE}{secret}"


def masked(url: str) -> str:
    """The hook's URL as printed: the secret path segment replaced."""
    return url.rsplit("/", 1)[0] + "/****"


@dataclass(frozen=True)
class HookState:
    """What amoCRM holds for the flow's address: nothing, or one hook with its settings and flag."""

    hook: Webhook | None

    @property
    def extra(self) -> list[str]:
        return [s for s in self.hook.settings if s not in SETTINGS] if self.hook else []

    @property
    def state(self) -> str:
        """registered | missing | disabled | mismatched (other events than status_lead, or not it)."""
        if self.hook is None:
            return "missing"
        if self.hook.disabled:
            return "disabled"
        if sorted(set(self.hook.settings)) != sorted(SETTINGS):
            return "mismatched"
        return "registered"

    def problems(self, url: str) -> list[str]:
        shown = f"the amoCRM webhook {masked(url)}"
        state = self.state
        if state == "missing":
            return [f"{shown} is not registered: run {REGISTER}"]
        if state == "disabled":
            return [f"{shown} was disabled by amoCRM (it answered errors too often): run {REGISTER} again"]
        if state == "mismatched":
            if self.extra:
                also = ", ".join(self.extra)
                return [f"{shown} also subscribes to {also} (only status_lead is needed): run {REGISTER}"]
            return [f"{shown} does not subscribe to status_lead: run {REGISTER}"]
        return []


def hook_state(client: AmoCrmClient, url: str) -> HookState:
    hooks = client.list_webhooks(url)
    return HookState(hooks[0] if hooks else None)


def register(client: AmoCrmClient, url: str, *, dry_run: bool = False) -> str:
    """Subscribe `url` to status_lead only; nothing is written when it already is. A hook that is
    disabled or has other events is unsubscribed first: a POST for an address amoCRM already holds
    is not documented to clear the `disabled` flag or to drop events, a new hook starts clean."""
    before = hook_state(client, url)
    shown = masked(url)
    if before.state == "registered":
        return f"already registered: {shown} (status_lead)"
    why = {"missing": "", "disabled": " (it was disabled)", "mismatched": " (it had other events)"}[before.state]
    if dry_run:
        return f"would register {shown} for status_lead{why} (--dry-run: nothing sent)"
    if before.hook is not None:
        client.unsubscribe_webhook(url)
    after = client.subscribe_webhook(url, SETTINGS)
    if after.disabled or sorted(set(after.settings)) != sorted(SETTINGS):
        raise ApiError("amocrm", f"the webhook {shown} came back {'disabled' if after.disabled else after.settings}")
    return f"registered: {shown} (status_lead){why}"


def unregister(client: AmoCrmClient, url: str) -> str:
    if hook_state(client, url).hook is None:
        return f"not registered: {masked(url)}"
    client.unsubscribe_webhook(url)
    return f"unregistered: {masked(url)}"


def hook_problems(env: Mapping[str, str]) -> list[str]:
    """For `doctor`: one line when the hook is missing, disabled or subscribes to more; [] when fine,
    one line when the settings are wrong or the account cannot be reached."""
    from integration_sync.lib.preflight import amocrm_checks, call

    try:
        url = hook_url(env)
    except ConfigError as exc:
        return [exc.message]

    def check(client: AmoCrmClient, account_var: str, auth_var: str) -> list[str]:
        def probe() -> HookState:
            try:
                return hook_state(client, url)
            except ApiError as exc:  # a JSON 403 (the HTML one is a block: BlockedError)
                if exc.status != 403 or isinstance(exc, BlockedError):
                    raise
            raise ConfigError("amocrm", "amoCRM refused to list its webhooks (403): they need an administrator's token")

        state, failed = call(account_var, "amoCRM (webhooks)", probe, auth_var)
        return failed if state is None else state.problems(url)

    return [_safe(line, env) for line in amocrm_checks(env, ACCOUNT_PREFIX, check)]


def _with_client(env: Mapping[str, str], action: Callable[[AmoCrmClient, str], str]) -> str:
    from integration_sync.lib.preflight import environment
    from integration_sync.ops.inspect import amocrm_account

    url = hook_url(env)
    with environment(env):
        resource = amocrm_account(FLOW)
    with resource.client() as client:
        return action(client, url)


def on_start(env: Mapping[str, str]) -> list[str]:
    """`integration-sync up`: register the hook when the flow's account is the sandbox's seller (on a
    real account registering stays an operator's command); a failure is one line."""
    from integration_sync.sandbox.amocrm_seller import seller_env

    sandbox = (env.get("SANDBOX_BASE_URL") or "").strip()
    account = (env.get(f"{ACCOUNT_PREFIX}AMO_BASE_URL") or "").strip().rstrip("/")
    if not sandbox or account != seller_env(sandbox)[f"{ACCOUNT_PREFIX}AMO_BASE_URL"]:
        return []
    try:
        return [f"{FLOW}: amoCRM webhook {_with_client(env, register)}"]
    except IntegrationError as exc:
        return [f"{FLOW}: the amoCRM webhook was not registered: {_safe(str(exc), env)}"]
    except Exception as exc:  # `up` goes on without the hook: the polling fallback still syncs
        return [f"{FLOW}: the amoCRM webhook was not registered ({type(exc).__name__})"]


# -- the CLI ------------------------------------------------------------------------------------


def _safe(text: str, env: Mapping[str, str]) -> str:
    secret = (env.get(SECRET_VAR) or "").strip()
    return redact(text, [secret]) if secret else text


def _status(client: AmoCrmClient, url: str) -> str:
    state = hook_state(client, url)
    detail = state.problems(url)
    return f"{state.state}: {masked(url)}" + (f" — {detail[0]}" if detail else " (status_lead)")


def cmd_webhook(args: argparse.Namespace) -> int:
    """Exit 0 done (status: registered), 1 status found a problem, 2 settings or amoCRM refused."""
    from integration_sync.lib.settings_files import load_dotenv
    from integration_sync.ops.inspect import NotConfigured

    load_dotenv(Path(args.project_dir).resolve() / ".env")
    actions: dict[str, Callable[[AmoCrmClient, str], str]] = {
        "register": lambda client, url: register(client, url, dry_run=bool(args.dry_run)),
        "status": _status,
        "unregister": unregister,
    }
    try:
        said = _with_client(os.environ, actions[args.webhook_command])
    except (NotConfigured, IntegrationError) as exc:
        print(f"integration-sync: error: {_safe(str(exc), os.environ)}", file=sys.stderr)
        return 2
    print(said)
    return 1 if args.webhook_command == "status" and not said.startswith("registered") else 0


def add_command(groups: CommandGroups) -> None:
    """`integration-sync amocrm webhook register|status|unregister`."""
    amocrm = groups.under("amocrm", "amoCRM account tools")
    hook = amocrm.add_parser("webhook", help="the amocrm_sheets flow's status webhook in its amoCRM account")
    sub = hook.add_subparsers(dest="webhook_command", required=True)
    for name, help_text in (
        ("register", "subscribe the receiver to lead status changes only (safe to run again)"),
        ("status", "read-only: registered, missing, disabled or mismatched (exit 1 unless registered)"),
        ("unregister", "unsubscribe the receiver's address"),
    ):
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument("--project-dir", default=".", help="where .env is read from")
        if name == "register":
            parser.add_argument("--dry-run", action="store_true", help="say what would change, send nothing")
        parser.set_defaults(func=cmd_webhook)
