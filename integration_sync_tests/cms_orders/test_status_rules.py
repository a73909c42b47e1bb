"""The two-way rule between a shop status and a deal stage (`status_rules.settle`), case by case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from integration_sync.defs.cms_orders.settings import CmsSettings
from integration_sync.defs.cms_orders.status_rules import Pair, settle

SETTINGS = CmsSettings.from_env({"CMS_B24_DEAL_CATEGORY_ID": "3"})
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
EARLY, LATE = T0, T0 + timedelta(minutes=5)


def test_a_new_order_is_created_at_its_status_stage_or_the_first_one() -> None:
    paid = settle(SETTINGS, "P", T0, None, None, None)
    assert (paid.stage, paid.status, paid.pair) == ("C3:PREPARATION", None, Pair("P", "C3:PREPARATION"))
    custom = settle(SETTINGS, "C", T0, None, None, None)  # a shop's own letter: no stage mapped
    assert custom.stage == "C3:NEW"
    cancelled = settle(SETTINGS, "D", T0, None, None, None)
    assert cancelled.stage == "C3:LOSE"


def test_nothing_changed_moves_nothing() -> None:
    base = Pair("N", "C3:NEW")
    result = settle(SETTINGS, "N", T0, "C3:NEW", None, base)
    assert (result.stage, result.status, result.conflict) == (None, None, None)


def test_a_shop_change_moves_the_deal() -> None:
    result = settle(SETTINGS, "S", LATE, "C3:NEW", None, Pair("N", "C3:NEW"))
    assert (result.stage, result.status, result.pair) == ("C3:FINAL_INVOICE", None, Pair("S", "C3:FINAL_INVOICE"))


def test_a_shop_change_whose_stage_the_deal_already_means_moves_nothing() -> None:
    # a manager moved to FINAL_INVOICE, we told the shop S; the shop's save comes back: an echo
    result = settle(SETTINGS, "S", LATE, "C3:FINAL_INVOICE", EARLY, Pair("N", "C3:FINAL_INVOICE"))
    assert (result.stage, result.status, result.conflict) == (None, None, None)


def test_a_managers_move_to_a_mapped_stage_goes_to_the_shop_and_the_deals_push_keeps_the_base() -> None:
    base = Pair("N", "C3:NEW")
    result = settle(SETTINGS, "N", EARLY, "C3:WON", LATE, base)
    assert (result.stage, result.status) == (None, "F")
    assert result.pair == Pair("F", "C3:WON")  # what the status push records once the shop took it
    assert result.forward_pair == base  # the deals push must not record the move as settled yet


def test_a_managers_move_to_an_unmapped_stage_stays_in_bitrix24() -> None:
    result = settle(SETTINGS, "N", EARLY, "C3:EXECUTING", LATE, Pair("N", "C3:NEW"))
    assert (result.stage, result.status, result.conflict) == (None, None, None)
    assert result.pair == Pair("N", "C3:EXECUTING")


@pytest.mark.parametrize(
    ("rule", "status_at", "stage_at", "winner"),
    [
        ("newer", LATE, EARLY, "shop"),
        ("newer", EARLY, LATE, "crm"),
        ("newer", None, LATE, "crm"),
        ("shop", EARLY, LATE, "shop"),
        ("crm", LATE, EARLY, "crm"),
    ],
)
def test_both_sides_changed_is_settled_by_the_declared_rule_and_reported(
    rule: str, status_at: datetime | None, stage_at: datetime, winner: str
) -> None:
    settings = CmsSettings.from_env({"CMS_B24_DEAL_CATEGORY_ID": "3", "CMS_CONFLICT_WINNER": rule})
    # the shop marked the order paid while a manager cancelled the deal
    result = settle(settings, "P", status_at, "C3:LOSE", stage_at, Pair("N", "C3:NEW"))
    assert result.conflict is not None and result.conflict.winner == winner
    assert result.conflict.ours == "P" and "C3:LOSE" in str(result.conflict.theirs)
    if winner == "shop":
        assert (result.stage, result.status) == ("C3:PREPARATION", None)
    else:
        assert (result.stage, result.status) == (None, "D")


def test_both_sides_agreeing_is_no_conflict() -> None:
    result = settle(SETTINGS, "F", LATE, "C3:WON", LATE, Pair("N", "C3:NEW"))
    assert (result.stage, result.status, result.conflict) == (None, None, None)
    assert result.pair == Pair("F", "C3:WON")


def test_without_a_base_a_lost_warehouse_settles_by_the_rule_not_by_overwriting() -> None:
    # a manager's later move wins over an older shop status when nothing tells who changed first
    result = settle(SETTINGS, "N", EARLY, "C3:WON", LATE, None)
    assert (result.stage, result.status) == (None, "F")
    assert settle(SETTINGS, "F", EARLY, "C3:WON", LATE, None).conflict is None
