"""The operator tools' CLI commands: `inspect`, `amocrm authorize`, `trace` and `redrive`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from integration_sync.lib.registry import plugins
from integration_sync.lib.settings_files import load_dotenv


def _fail(message: str) -> int:
    print(f"integration-sync: error: {message}", file=sys.stderr)
    return 2


def _flows() -> list[str]:
    return [p.name for p in plugins()]


def cmd_inspect(args: argparse.Namespace) -> int:
    from integration_sync.connectors.errors import IntegrationError
    from integration_sync.ops import inspect

    load_dotenv(Path(args.project_dir).resolve() / ".env")
    try:
        print(inspect.run(args.system, args.flow, args.json))
    except inspect.NotConfigured as exc:
        return _fail(f"{args.system} account not configured: {exc}")
    except IntegrationError as exc:  # connector errors carry no secret
        return _fail(f"{args.system}: {exc}")
    return 0


def cmd_authorize(args: argparse.Namespace) -> int:
    from integration_sync.connectors.errors import IntegrationError
    from integration_sync.ops import authorize
    from integration_sync.ops.inspect import NotConfigured, account_prefix, amocrm_account

    load_dotenv(Path(args.project_dir).resolve() / ".env")
    try:
        resource = amocrm_account(args.flow)
    except NotConfigured as exc:
        return _fail(f"amoCRM account not configured: {exc}")
    prefix = account_prefix(args.flow)
    missing = [
        name
        for name, value in (
            ("AMO_CLIENT_ID", resource.client_id),
            ("AMO_CLIENT_SECRET", resource.client_secret),
            ("AMO_REDIRECT_URI", resource.redirect_uri),
        )
        if not value
    ]
    if missing:
        # an account of its own takes its credentials only from its own variables (amocrm_resource)
        own = bool(prefix) and bool(os.environ.get(f"{prefix}AMO_BASE_URL", "").strip())
        names = ", ".join(prefix + n if own else n for n in missing)
        return _fail(f"the integration's OAuth settings are not set: {names}")
    if args.redirect_url and not args.state:
        return _fail("--redirect-url needs --state (printed with the authorization URL) to check; or pass --code")
    state: str | None = args.state
    given = args.redirect_url or args.code
    if given is None:
        state = state or authorize.new_state()
        print("1. Open this URL in a browser logged in to the amoCRM account, and allow access:")
        print(f"   {authorize.authorization_url(resource.client_id, state)}")
        print(f"2. Paste the URL the browser was redirected to ({resource.redirect_uri}?code=...), or the code:")
        sys.stdout.flush()
        given = sys.stdin.readline()
    try:
        answer = authorize.parse_answer(given, None if args.code else state)
        done = authorize.exchange(resource, answer)
    except authorize.AuthorizeError as exc:
        return _fail(str(exc))
    except IntegrationError as exc:
        return _fail(f"amoCRM refused the code: {exc}")
    print(f"authorized: tokens stored for {done['account']} in {done['token_store']}")
    print(f"access token expires {done['access_token_expires']}; every flow on this account uses the pair")
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from integration_sync.ops import trace

    load_dotenv(Path(args.project_dir).resolve() / ".env")
    if args.flow not in _flows():
        return _fail(f"no flow named {args.flow!r}; flows: {', '.join(_flows())}")
    try:
        print(trace.run(args.flow, args.key, args.json))
    except FileNotFoundError as exc:
        return _fail(str(exc))
    return 0


def cmd_redrive(args: argparse.Namespace) -> int:
    from integration_sync.ops import redrive

    load_dotenv(Path(args.project_dir).resolve() / ".env")
    if args.flow not in _flows():
        return _fail(f"no flow named {args.flow!r}; flows: {', '.join(_flows())}")
    if bool(args.keys) == bool(args.all_failed):
        return _fail("give the keys to re-drive or --all-failed (not both)")
    url = (args.url or redrive.webserver_url(os.environ)).rstrip("/")
    try:
        run_id = redrive.submit(url, args.flow, args.keys, args.all_failed)
        what = "every failed record" if args.all_failed else f"{len(args.keys)} key(s)"
        print(f"submitted run {run_id} re-driving {what} of {args.flow}: {url}/runs/{run_id}")
        if args.wait is not None:
            status = redrive.wait(url, run_id, args.wait)
            print(json.dumps({"run_id": run_id, "status": status}))
            return 0 if status == "SUCCESS" else 1
    except redrive.RedriveError as exc:
        return _fail(str(exc))
    return 0


def add_operator_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> dict[str, argparse._SubParsersAction[argparse.ArgumentParser]]:
    """The operator commands; returns the command groups flows may add to (`amocrm`)."""
    inspect = sub.add_parser(
        "inspect", help="what an amoCRM or Bitrix24 account (ids to put in .env) or the seller's sheet holds"
    )
    inspect.add_argument("system", choices=("amocrm", "bitrix24", "sheets"))
    inspect.add_argument("--flow", help="that flow's account ({PREFIX}AMO_* / {PREFIX}B24_*); default: the shared one")
    inspect.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    inspect.add_argument("--project-dir", default=".", help="where .env is read from")
    inspect.set_defaults(func=cmd_inspect)

    amocrm = sub.add_parser("amocrm", help="amoCRM account tools")
    amocrm_sub = amocrm.add_subparsers(dest="amocrm_command", required=True)
    auth = amocrm_sub.add_parser("authorize", help="OAuth first authorization: store the account's token pair")
    auth.add_argument("--flow", help="that flow's account; default: the shared AMO_*")
    auth.add_argument("--redirect-url", help="the URL the browser landed on (else read from stdin)")
    auth.add_argument("--code", help="the bare authorization code (no state check)")
    auth.add_argument("--state", help="the state of an authorization URL printed earlier (checked)")
    auth.add_argument("--project-dir", default=".", help="where .env is read from")
    auth.set_defaults(func=cmd_authorize)

    trace = sub.add_parser("trace", help="one record's story: source snapshot, sync state, target ids, sync log")
    trace.add_argument("flow")
    trace.add_argument("key", help="the record's source key (ABCP user id, Kaspi order code, payment id)")
    trace.add_argument("--json", action="store_true")
    trace.add_argument("--project-dir", default=".", help="where .env is read from")
    trace.set_defaults(func=cmd_trace)

    again = sub.add_parser("redrive", help="re-drive failed records through the Dagster run queue")
    again.add_argument("flow")
    again.add_argument("keys", nargs="*", help="source keys of failed records")
    again.add_argument("--all-failed", action="store_true", help="every failed (rejected or parked) record")
    again.add_argument("--url", help="the Dagster webserver; default http://INTEGRATION_SYNC_HOST:DAGSTER_PORT")
    again.add_argument("--wait", type=float, metavar="SECONDS", help="wait for the run and exit 1 unless it succeeds")
    again.add_argument("--project-dir", default=".", help="where .env is read from")
    again.set_defaults(func=cmd_redrive)
    return {"amocrm": amocrm_sub}
