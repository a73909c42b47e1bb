"""The flow registry: every package under `integration_sync.defs` that has a `plugin` module is a flow,
and its `PLUGIN` says what it adds outside Dagster (warehouse migrations, CLI commands, webhook
receiver routes, `doctor` checks, sandbox settings). The CLI, the receiver, the warehouse and the
sandbox ask this registry instead of naming flows, so adding a flow touches only its own folder.

This module imports no Dagster: the receiver and the CLI stay light.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from integration_sync.sync.warehouse import Migration, Warehouse

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

DEFS_PACKAGE = "integration_sync.defs"


@dataclass(frozen=True)
class CommandGroups:
    """Where a flow may add CLI commands: the top level (`integration-sync <cmd>`) and the sandbox group
    (`integration-sync sandbox <cmd>`). A command's handler takes the parsed args and returns an exit code."""

    root: argparse._SubParsersAction[argparse.ArgumentParser]
    sandbox: argparse._SubParsersAction[argparse.ArgumentParser]
    named: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = field(default_factory=dict)

    def under(self, name: str, help_text: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        """The sub-commands of the top-level group `name` (`amocrm`, `sheet`), made on first use: two
        flows may add commands to one group."""
        if name not in self.named:
            parser = self.root.add_parser(name, help=help_text)
            self.named[name] = parser.add_subparsers(dest=f"{name}_command", required=True)
        return self.named[name]


@dataclass(frozen=True)
class ReceiverContext:
    """What a flow's receiver routes get: the environment and the shared inbox writer's `submit`."""

    env: Mapping[str, str]
    app_state: Any


@dataclass(frozen=True)
class FlowPlugin:
    """A flow's contributions outside Dagster. Every hook is optional.

    - `migrations`: its warehouse tables (ids prefixed with the flow's short name; applied in id order).
    - `source_vars`: variables whose presence means real accounts are configured for this flow (without any
      of any flow, `integration-sync up` starts the sandbox).
    - `required_vars`: what the flow cannot run without (named by `doctor`); `account_vars` too, each
      read as `{account_prefix}{NAME}` or the shared `{NAME}` (the flow's CRM account).
    - `receiver_vars`: the receiver starts when one of these is set.
    - `add_commands(groups)`: its CLI commands.
    - `routes(context)`: its webhook receiver routes.
    - `doctor(env)`: problems in its configuration, one line each, naming the variable.
    - `sandbox_env(sandbox_url, receiver_url)`: its settings pointing at the sandbox.
    - `trace_source(warehouse, key)`: the record's source snapshot for `integration-sync trace` (None: unknown).
    - `on_start(env)`: run by `integration-sync up` once the sandbox and the receiver answer (e.g. registering
      the flow's webhook on the sandbox's account); returns lines to print. A failure is one line, never
      a stopped `up`.
    """

    name: str
    migrations: tuple[Migration, ...] = ()
    source_vars: tuple[str, ...] = ()
    required_vars: tuple[str, ...] = ()
    account_prefix: str = ""
    account_vars: tuple[str, ...] = ()
    receiver_vars: tuple[str, ...] = ()
    add_commands: Callable[[CommandGroups], None] | None = None
    routes: Callable[[ReceiverContext], Sequence[BaseRoute]] | None = None
    doctor: Callable[[Mapping[str, str]], list[str]] | None = None
    sandbox_env: Callable[[str, str], dict[str, str]] | None = None
    trace_source: Callable[[Warehouse, str], dict[str, Any] | None] | None = None
    on_start: Callable[[Mapping[str, str]], list[str]] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def not_ready(self, env: Mapping[str, str]) -> str | None:
        """Why this flow cannot run with `env` (not configured, or which variables are missing), or None."""
        if not any((env.get(name) or "").strip() for name in self.source_vars):
            return f"{self.name} is not configured (none of {', '.join(self.source_vars)} is set)"
        missing = self.missing_vars(env)
        if missing:
            return f"{self.name} is not fully configured: {', '.join(missing)} not set"
        return None

    def missing_vars(self, env: Mapping[str, str]) -> list[str]:
        def unset(name: str) -> bool:
            return not (env.get(name) or "").strip()

        missing = [name for name in self.required_vars if unset(name)]
        for name in self.account_vars:
            own = self.account_prefix + name
            if unset(name) and (not self.account_prefix or unset(own)):
                missing.append(f"{own} (or {name})" if self.account_prefix else name)
        return missing


def _discover(package: str) -> tuple[FlowPlugin, ...]:
    root = importlib.import_module(package)
    found: list[FlowPlugin] = []
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        name = f"{package}.{info.name}.plugin"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # a folder of shared code, not a flow
            raise
        plugin = getattr(module, "PLUGIN", None)
        if not isinstance(plugin, FlowPlugin):
            raise TypeError(f"{name}.PLUGIN must be a FlowPlugin")
        found.append(plugin)
    names = [p.name for p in found]
    if len(set(names)) != len(names):
        raise ValueError(f"two flows share a name: {names}")
    return tuple(found)


@cache
def plugins() -> tuple[FlowPlugin, ...]:
    """Every flow's plugin, in name order."""
    return _discover(DEFS_PACKAGE)


def plugin(name: str) -> FlowPlugin:
    for candidate in plugins():
        if candidate.name == name:
            return candidate
    raise KeyError(f"no flow named {name!r}; flows: {', '.join(p.name for p in plugins())}")


def migrations(base: Sequence[Migration]) -> tuple[Migration, ...]:
    """The engine's migrations and every flow's, checked for clashing ids."""
    every = [*base, *(m for p in plugins() for m in p.migrations)]
    ids = [m.id for m in every]
    clashes = sorted({i for i in ids if ids.count(i) > 1})
    if clashes:
        raise ValueError(f"two warehouse migrations share an id: {clashes}")
    return tuple(every)
