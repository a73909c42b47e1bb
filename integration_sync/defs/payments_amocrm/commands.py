"""The payments flow's CLI command: `integration-sync sandbox send-payments` plays the education platform
(signed payment webhooks to the receiver, a JSON summary printed)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import httpx

from integration_sync.lib.cli_types import positive_float, positive_int, share
from integration_sync.lib.registry import CommandGroups
from integration_sync.lib.settings_files import load_dotenv


def cmd_send_payments(args: argparse.Namespace) -> int:
    """Play the education platform: send signed payment webhooks to the receiver, print a JSON summary."""
    from integration_sync.sandbox.platform import Customer, fetch_known_customers, send_payments

    load_dotenv(Path(args.project_dir).resolve() / ".env")
    secret = os.environ.get("PLATFORM_WEBHOOK_SECRET", "")
    if not secret.strip():
        print(
            "error: PLATFORM_WEBHOOK_SECRET is not set: the receiver's signing secret, from the environment or "
            '.env (for the sandbox: eval "$(integration-sync sandbox env)")',
            file=sys.stderr,
        )
        return 2
    url = (
        args.url
        or os.environ.get("WEBHOOK_URL")
        or (
            f"http://{os.environ.get('WEBHOOK_HOST') or '127.0.0.1'}:{os.environ.get('WEBHOOK_PORT') or '8001'}"
            "/webhook/payment"
        )
    )
    sandbox_url = args.sandbox_url or os.environ.get("SANDBOX_BASE_URL")
    known: list[Customer] = []
    if not sandbox_url:
        print("warning: no --sandbox-url or SANDBOX_BASE_URL: sending new customers only", file=sys.stderr)
    else:
        try:
            known = fetch_known_customers(sandbox_url)
        except (httpx.HTTPError, ValueError) as exc:
            print(
                f"warning: amoCRM sandbox contacts unavailable at {sandbox_url} ({type(exc).__name__}): "
                "sending new customers only",
                file=sys.stderr,
            )
    try:
        summary = send_payments(
            url,
            secret,
            args.count,
            rate=args.rate,
            duplicates=args.duplicates,
            bad_signatures=args.bad_signatures,
            concurrency=args.concurrency,
            seed=args.seed,
            known_customers=known,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0


def add_commands(groups: CommandGroups) -> None:
    send = groups.sandbox.add_parser(
        "send-payments", help="play the education platform: send signed payment webhooks, print a JSON summary"
    )
    send.add_argument("--count", type=positive_int, required=True, help="requests to send")
    send.add_argument("--rate", type=positive_float, help="requests per second (default: as fast as possible)")
    send.add_argument("--duplicates", type=share, default=0.0, help="share re-sending a sent payment (409)")
    send.add_argument("--bad-signatures", type=share, default=0.0, help="share sent wrongly signed (401)")
    send.add_argument("--url", help="default $WEBHOOK_URL, else http://$WEBHOOK_HOST:$WEBHOOK_PORT/webhook/payment")
    send.add_argument("--sandbox-url", help="amoCRM sandbox for known customers (default $SANDBOX_BASE_URL)")
    send.add_argument("--seed", type=int, help="same seed, same payments (default: a new one, in the summary)")
    send.add_argument("--concurrency", type=positive_int, default=8, help="parallel connections")
    send.add_argument("--project-dir", default=".", help="where .env is read from")
    send.set_defaults(func=cmd_send_payments)
