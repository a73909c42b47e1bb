"""Reading `.env`: values already in the environment win (a deployment's own settings are never overridden),
then the seed's switch `ENVIRONMENT=dev|prod` picks each variable's `DEV_*` / `PROD_*` value."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

ENVIRONMENTS = ("dev", "prod")


def apply_environment(env: MutableMapping[str, str]) -> list[str]:
    """With `ENVIRONMENT=dev` (or `prod`), every variable `X` takes the value of `DEV_X` (`PROD_X`) where
    that is set and not empty; returns the names so set. Unset or empty `ENVIRONMENT`: nothing changes.
    Applying it again changes nothing more."""
    chosen = (env.get("ENVIRONMENT") or "").strip().lower()
    if not chosen:
        return []
    if chosen not in ENVIRONMENTS:
        raise ValueError(f"ENVIRONMENT must be one of {', '.join(ENVIRONMENTS)} (or empty), got {chosen[:20]!r}")
    prefix = chosen.upper() + "_"
    picked: list[str] = []
    for name, value in list(env.items()):
        if name.startswith(prefix) and len(name) > len(prefix) and value.strip():
            env[name[len(prefix) :]] = value
            picked.append(name[len(prefix) :])
    return sorted(picked)


def load_dotenv(path: Path) -> None:
    if path.exists():
        from dotenv import load_dotenv as _load

        _load(path, override=False)
    try:
        apply_environment(os.environ)
    except ValueError as exc:  # a bad .env value: one line naming it, not a traceback
        raise SystemExit(f"integration-sync: error: {exc}") from exc
