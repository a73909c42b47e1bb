"""Settings of the payment webhook receiver, from the environment.

Environment variables:

- ``PLATFORM_WEBHOOK_SECRET`` (required): the HMAC key shared with the platform.
- ``WEBHOOK_LEGACY_SECRET_ENABLED`` (``false``): accept the legacy ``X-Webhook-Secret`` header.
- ``WEBHOOK_TIMESTAMP_TOLERANCE_S`` (``300``; ``0`` disables the staleness check).
- ``WEBHOOK_MAX_BODY_BYTES`` (``65536``).
- ``WEBHOOK_EXCLUDED_STATUSES``: comma list; unset or empty (as in a copied ``.env.example``) means
  every status except ``CONFIRMED`` is skipped; ``none`` skips no status.
- ``WEBHOOK_EXCLUDED_DOMAINS``: comma list (default empty).
- ``WEBHOOK_INBOX_PATH`` (default ``$INTEGRATION_SYNC_DATA_DIR/inbox.sqlite``, data dir default ``data``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

ACCEPTED_STATUS = "CONFIRMED"


def _csv(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    """An integer setting; a bad value raises a ValueError that names the variable."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw[:40]!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


class ReceiverSettings(BaseModel):
    """What the receiver checks and where it stores events.

    ``excluded_statuses=None`` (the default) skips every status other than ``CONFIRMED``;
    statuses are compared upper-case and domains lower-case.
    """

    model_config = ConfigDict(frozen=True)

    secret: SecretStr
    legacy_secret_enabled: bool = False
    timestamp_tolerance_s: int = Field(300, ge=0)
    max_body_bytes: int = Field(64 * 1024, gt=0)
    excluded_statuses: frozenset[str] | None = None
    excluded_domains: frozenset[str] = frozenset()
    inbox_path: Path = Path("data") / "inbox.sqlite"

    @field_validator("secret")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and not value.get_secret_value().strip():
            raise ValueError("the webhook secret must not be blank")
        return value

    @field_validator("excluded_statuses")
    @classmethod
    def _upper(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        return None if value is None else frozenset(s.strip().upper() for s in value if s.strip())

    @field_validator("excluded_domains")
    @classmethod
    def _lower(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(d.strip().lower() for d in value if d.strip())

    def exclusion_reason(self, status: str, domain: str | None) -> str | None:
        """Why a payment with this status and domain is skipped, or None when it is accepted."""
        status_key = status.upper()
        if self.excluded_statuses is None:
            if status_key != ACCEPTED_STATUS:
                return f"status {status_key} is not {ACCEPTED_STATUS}"
        elif status_key in self.excluded_statuses:
            return f"status {status_key} is excluded"
        if domain and domain.lower() in self.excluded_domains:
            return f"domain {domain.lower()} is excluded"
        return None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReceiverSettings:
        """Settings from ``env`` (default ``os.environ``); raises if the secret is missing or a
        numeric variable is not a number (the message names the variable)."""
        env = os.environ if env is None else env
        from integration_sync.lib.registry import plugins

        receiver_vars = tuple(dict.fromkeys(name for flow in plugins() for name in flow.receiver_vars))
        if not any((env.get(name) or "").strip() for name in receiver_vars):
            # nothing to receive: name the first (the payments HMAC key), as before other flows had hooks
            raise ValueError(
                "PLATFORM_WEBHOOK_SECRET is not set (the HMAC key shared with the platform)"
                f" — nor any other receiver secret ({', '.join(receiver_vars)})"
            )
        statuses = (env.get("WEBHOOK_EXCLUDED_STATUSES") or "").strip()
        return cls(
            secret=SecretStr(env.get("PLATFORM_WEBHOOK_SECRET", "")),
            legacy_secret_enabled=_bool(env.get("WEBHOOK_LEGACY_SECRET_ENABLED", "false")),
            timestamp_tolerance_s=env_int(env, "WEBHOOK_TIMESTAMP_TOLERANCE_S", 300),
            max_body_bytes=env_int(env, "WEBHOOK_MAX_BODY_BYTES", 64 * 1024, minimum=1),
            excluded_statuses=None if not statuses else frozenset() if statuses.lower() == "none" else _csv(statuses),
            excluded_domains=_csv(env.get("WEBHOOK_EXCLUDED_DOMAINS", "")),
            inbox_path=inbox_path_from_env(env),
        )


def inbox_path_from_env(env: Mapping[str, str] | None = None) -> Path:
    """Where the inbox is: WEBHOOK_INBOX_PATH, else $INTEGRATION_SYNC_DATA_DIR/inbox.sqlite (the
    receiver writes it, the payments sensor and assets read it)."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("INTEGRATION_SYNC_DATA_DIR") or "data")
    return Path(env.get("WEBHOOK_INBOX_PATH") or data_dir / "inbox.sqlite")
