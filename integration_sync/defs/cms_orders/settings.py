"""The cms_orders flow's settings, read from the environment (every name is in `.env.example`).

The shop's order statuses map to deal stages of one Bitrix24 pipeline (`CMS_B24_DEAL_CATEGORY_ID`)
through `CMS_STATUS_STAGE_MAP`, and a manager's move to a stage goes back to the shop through
`CMS_STAGE_STATUS_MAP`; both are ``KEY:VALUE`` lists. A stage written without its pipeline's prefix
(``WON``) gets it (``C3:WON``), as Bitrix24 names the stages of every pipeline but the default one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from integration_sync.connectors.errors import ConfigError

FLOW = "cms_orders"
DEFAULT_STATUS_STAGES = "N:NEW,P:PREPARATION,S:FINAL_INVOICE,F:WON,D:LOSE"
DEFAULT_STAGE_STATUSES = "FINAL_INVOICE:S,WON:F,LOSE:D"
CONFLICT_RULES = ("newer", "shop", "crm")
SETTING_VARS = (
    "CMS_B24_DEAL_CATEGORY_ID",
    "CMS_STATUS_STAGE_MAP",
    "CMS_STAGE_STATUS_MAP",
    "CMS_CONFLICT_WINNER",
    "CMS_PHONE_REGION",
    "CMS_DEAL_TITLE_PREFIX",
    "CMS_MAX_ATTEMPTS",
)
ConflictRule = Literal["newer", "shop", "crm"]
# Retries of a record the shop or Bitrix24 refused: the delay doubles from 30 s and stops growing
# at 2 min; with the retry schedule every minute a waiting record is sent within 3 minutes of the
# service's return (the seed's goal: recovered within 5). An outage costs no attempt and no delay.
RETRY_BACKOFF_S = 30.0
RETRY_BACKOFF_MAX_S = 120.0


def _pairs(name: str, text: str, *, stage_keys: bool) -> dict[str, str]:
    """``KEY:VALUE,...``; a stage id may hold a colon itself (``C3:WON``): on the key's side of the
    stage → status map, on the value's side of the status → stage map."""
    pairs: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.rpartition(":") if stage_keys else item.partition(":")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(name, f"expected KEY:VALUE pairs separated by commas, got {item.strip()!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def stage_id(category_id: int, stage: str) -> str:
    """A stage's full id in the pipeline: ``WON`` → ``C3:WON`` (the default pipeline's have no prefix)."""
    if category_id == 0 or (stage.startswith("C") and ":" in stage):
        return stage
    return f"C{category_id}:{stage}"


@dataclass(frozen=True)
class CmsSettings:
    """What the flow needs besides its accounts (the shop endpoint and the Bitrix24 portal)."""

    category_id: int = 0
    status_stages: Mapping[str, str] = field(default_factory=dict)  # shop status -> deal stage
    stage_statuses: Mapping[str, str] = field(default_factory=dict)  # deal stage -> shop status
    conflict_winner: ConflictRule = "newer"
    region: str = "KZ"
    title_prefix: str = "Заказ №"
    max_attempts: int = 8

    @property
    def new_stage(self) -> str:
        return stage_id(self.category_id, "NEW")

    @property
    def lost_stage(self) -> str:
        return self.status_stages.get("D", stage_id(self.category_id, "LOSE"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CmsSettings:
        env = os.environ if env is None else env
        raw_category = (env.get("CMS_B24_DEAL_CATEGORY_ID") or "0").strip()
        if not raw_category.isdigit():
            raise ConfigError("CMS_B24_DEAL_CATEGORY_ID", f"must be a pipeline id (a number), got {raw_category!r}")
        category = int(raw_category)
        stages = _pairs(
            "CMS_STATUS_STAGE_MAP", env.get("CMS_STATUS_STAGE_MAP") or DEFAULT_STATUS_STAGES, stage_keys=False
        )
        statuses = _pairs(
            "CMS_STAGE_STATUS_MAP", env.get("CMS_STAGE_STATUS_MAP") or DEFAULT_STAGE_STATUSES, stage_keys=True
        )
        rule = (env.get("CMS_CONFLICT_WINNER") or "newer").strip().lower()
        if rule not in CONFLICT_RULES:
            raise ConfigError("CMS_CONFLICT_WINNER", f"must be one of {', '.join(CONFLICT_RULES)}, got {rule!r}")
        attempts = (env.get("CMS_MAX_ATTEMPTS") or "8").strip()
        if not attempts.isdigit() or int(attempts) < 1:
            raise ConfigError("CMS_MAX_ATTEMPTS", f"must be a positive number, got {attempts!r}")
        return cls(
            category_id=category,
            status_stages={status: stage_id(category, stage) for status, stage in stages.items()},
            stage_statuses={stage_id(category, stage): status for stage, status in statuses.items()},
            conflict_winner=rule,  # type: ignore[arg-type]
            region=(env.get("CMS_PHONE_REGION") or "KZ").strip().upper(),
            title_prefix=env.get("CMS_DEAL_TITLE_PREFIX", "Заказ №"),
            max_attempts=int(attempts),
        )
