"""The flow's settings: the status ↔ stage maps, their pipeline prefix, and errors naming the variable."""

from __future__ import annotations

import pytest

from integration_sync.connectors.errors import ConfigError
from integration_sync.defs.cms_orders.settings import CmsSettings


def test_defaults_map_the_seed_statuses_into_the_pipeline() -> None:
    settings = CmsSettings.from_env({"CMS_B24_DEAL_CATEGORY_ID": "3"})
    assert dict(settings.status_stages) == {
        "N": "C3:NEW",
        "P": "C3:PREPARATION",
        "S": "C3:FINAL_INVOICE",
        "F": "C3:WON",
        "D": "C3:LOSE",
    }
    assert dict(settings.stage_statuses) == {"C3:FINAL_INVOICE": "S", "C3:WON": "F", "C3:LOSE": "D"}
    assert settings.lost_stage == "C3:LOSE" and settings.new_stage == "C3:NEW"


def test_the_default_pipeline_has_no_prefix_and_full_ids_are_kept() -> None:
    settings = CmsSettings.from_env({"CMS_STATUS_STAGE_MAP": "N:NEW, C:C7:ASSEMBLY", "CMS_STAGE_STATUS_MAP": "WON:F"})
    assert dict(settings.status_stages) == {"N": "NEW", "C": "C7:ASSEMBLY"}
    assert dict(settings.stage_statuses) == {"WON": "F"}


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({"CMS_B24_DEAL_CATEGORY_ID": "shop"}, "CMS_B24_DEAL_CATEGORY_ID"),
        ({"CMS_STATUS_STAGE_MAP": "N=NEW"}, "CMS_STATUS_STAGE_MAP"),
        ({"CMS_STAGE_STATUS_MAP": "WON:"}, "CMS_STAGE_STATUS_MAP"),
        ({"CMS_CONFLICT_WINNER": "manager"}, "CMS_CONFLICT_WINNER"),
        ({"CMS_MAX_ATTEMPTS": "0"}, "CMS_MAX_ATTEMPTS"),
    ],
)
def test_a_wrong_setting_is_named(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError) as caught:
        CmsSettings.from_env(env)
    assert var in str(caught.value)
