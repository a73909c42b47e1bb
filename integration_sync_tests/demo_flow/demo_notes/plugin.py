"""The demo flow's contributions outside Dagster: a table, a command, a receiver route, a sandbox setting."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from integration_sync.lib.registry import CommandGroups, FlowPlugin, ReceiverContext
from integration_sync.sync.warehouse import Migration

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

MIGRATIONS = (Migration("demo_0001_notes", "CREATE TABLE demo_notes (day DATE NOT NULL, key VARCHAR, text VARCHAR)"),)


def _hello(args: argparse.Namespace) -> int:
    print(f"demo notes: hello {args.name}")
    return 0


def add_commands(groups: CommandGroups) -> None:
    hello = groups.root.add_parser("demo-notes", help="the demo flow's command")
    hello.add_argument("--name", default="world")
    hello.set_defaults(func=_hello)


def routes(context: ReceiverContext) -> Sequence[BaseRoute]:
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def note(request: Request) -> Response:
        return JSONResponse({"status": "accepted", "inbox": str(context.app_state.inbox.path)})

    return [Route("/webhook/demo-note", note, methods=["POST"])]


PLUGIN = FlowPlugin(
    name="demo_notes",
    migrations=MIGRATIONS,
    source_vars=("DEMO_NOTES_URL",),
    required_vars=("DEMO_NOTES_URL",),
    receiver_vars=("DEMO_NOTES_SECRET",),
    add_commands=add_commands,
    routes=routes,
    sandbox_env=lambda sandbox_url, receiver_url: {"DEMO_NOTES_URL": f"{sandbox_url}/demo"},
)
