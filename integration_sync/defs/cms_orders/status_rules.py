"""The two-way rule between an order's shop status and its deal's stage, pure.

Both pushes — orders → deals and deal stages → shop statuses — settle an order with the same
function over the same facts: the shop's status now (and when it was set), the deal's stage now (and
when a manager moved it), and the pair both sides agreed on at the last sync (`base`: the newest
pair either push wrote). Only the side that changed since then moves the other; a change read back
from our own write is no change (its pair is the base). When both changed to values that disagree,
`CMS_CONFLICT_WINNER` decides: ``newer`` (default: the later change wins), ``shop`` or ``crm``, and
the conflict is logged with both values.

A push records the pair it leaves behind (`Settlement.pair`); while the other side's change still
waits for the other push, it records the base, so that change is not mistaken for settled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from integration_sync.defs.cms_orders.settings import CmsSettings
from integration_sync.sync.two_way import Resolution


@dataclass(frozen=True)
class Pair:
    """A shop status and a deal stage that agree, and the newest stage-history row id known when
    they were settled (`seen`): a move with a higher id happened after — by the portal's own
    sequence, not by comparing two clocks that keep whole seconds and may drift."""

    status: str
    stage: str
    seen: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "stage": self.stage, "seen": self.seen}

    @classmethod
    def from_dict(cls, value: Any) -> Pair | None:
        if isinstance(value, dict) and value.get("status") and value.get("stage"):
            seen = value.get("seen")
            return cls(str(value["status"]), str(value["stage"]), seen if isinstance(seen, int) else 0)
        return None


@dataclass(frozen=True)
class Settlement:
    """What to do: the stage to write to the deal (None: leave it), the status to send to the shop
    (None: nothing), the pair this push records, the conflict settled if there was one."""

    stage: str | None
    status: str | None
    pair: Pair
    forward_pair: Pair
    conflict: Resolution | None = None


def settle(
    settings: CmsSettings,
    status: str,
    status_at: datetime | None,
    stage: str | None,
    stage_at: datetime | None,
    base: Pair | None,
    seen: int = 0,
) -> Settlement:
    """Settle one order. `stage` None: no deal yet (it is created at the status's stage); `seen`: the
    newest stage-history id read, recorded in the pairs this returns."""
    wanted = settings.status_stages.get(status)
    if stage is None:
        target = wanted or settings.new_stage
        pair = Pair(status, target, seen)
        return Settlement(target, None, pair, pair)
    back = settings.stage_statuses.get(stage)
    shop_changed = base is None or status != base.status
    crm_changed = base is None or stage != base.stage
    now = Pair(status, stage, seen)
    if not shop_changed and not crm_changed:
        return Settlement(None, None, now, now)
    agreed = back == status or wanted == stage or (back is None and wanted is None)
    if shop_changed and crm_changed and agreed:
        return Settlement(None, None, now, now)
    conflict: Resolution | None = None
    winner = "shop" if shop_changed else "crm"
    if shop_changed and crm_changed:
        rule = settings.conflict_winner
        if rule == "newer":
            crm_newer = stage_at is not None and (status_at is None or stage_at > status_at)
            winner = "crm" if crm_newer else "shop"
        else:
            winner = rule
        conflict = Resolution(
            "status",
            status if winner == "shop" else back,
            winner,
            True,
            "newer" if rule == "newer" else "owner",
            ours=status,
            theirs=f"{stage} ({back or 'no status'})",
        )
    if winner == "shop":
        if wanted is None or back == status:  # no stage for this status, or the stage already means it
            return Settlement(None, None, now, now, conflict)
        pair = Pair(status, wanted, seen)
        return Settlement(wanted, None, pair, pair, conflict)
    if back is None or back == status:  # a move the shop need not hear of
        return Settlement(None, None, now, now, conflict)
    # the shop is told by the status push; until then the forward push keeps the base
    keep = base or Pair(status, stage)
    return Settlement(None, back, Pair(back, stage, seen), keep, conflict)
