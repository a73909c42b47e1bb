"""The flow's four pushes on the shared skeleton, and the two-way rule that joins the last two.

- `PRODUCTS_PUSH` (`bitrix24/shop_products`) and `CONTACTS_PUSH` (`bitrix24/shop_contacts`): the
  export's catalog and users, so deals reference products and contacts that exist.
- `DEALS_PUSH` (`bitrix24/shop_deals`, the main push): one deal per order (see `deal_destination`);
  an order unfit to push is quarantined with its reason (`mapping.quarantine_reason`) and goes
  through once the shop sends a fixed version.
- `STATUS_PUSH` (`bitrix_cms/order_statuses`): a manager's move of a deal to a stage mapped back to a
  shop status sets that status in the shop (its key-protected endpoint); refused or undelivered
  statuses wait in the engine's retry log.

Both directions settle each order with `status_rules.settle` over the same facts, so they never
undo each other; conflicts are logged by the push that settles them.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from integration_sync.defs.cms_orders.assets import CATALOG_KEY, CRM, ORDERS_KEY, STAGES_KEY
from integration_sync.defs.cms_orders.catalog_destination import (
    PRODUCT,
    USER_CONTACT,
    ProductsDestination,
    UserContactsDestination,
)
from integration_sync.defs.cms_orders.deal_destination import DEAL, ShopDealsDestination
from integration_sync.defs.cms_orders.mapping import (
    ORIGINATOR_ID,
    deal_fields,
    order_contact,
    product_fields,
    product_rows,
    quarantine_reason,
    user_contact,
)
from integration_sync.defs.cms_orders.preflight import push_preflight
from integration_sync.defs.cms_orders.resources import CmsOrdersResource
from integration_sync.defs.cms_orders.settings import FLOW, RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_S, CmsSettings
from integration_sync.defs.cms_orders.shop_destination import ShopStatusDestination
from integration_sync.defs.cms_orders.stages import latest_stages
from integration_sync.defs.cms_orders.status_rules import Pair, Settlement, settle
from integration_sync.defs.cms_orders.tables import (
    accounted,
    all_orders,
    base_pairs,
    catalog,
    first_with_account,
    retry_queue,
    target_ids,
)
from integration_sync.lib.push import OpenedDestination, Push, PushContext
from integration_sync.sync.engine import Desired, SyncEngine
from integration_sync.sync.two_way import Resolution

PRODUCTS_ENTITY = "shop_product"
CONTACTS_ENTITY = "shop_user"
DEALS_ENTITY = "shop_order"
STATUS_ENTITY = "order_status"
PAIR_ENTITIES = (DEALS_ENTITY, STATUS_ENTITY)


def product_key(product_id: int | str) -> str:
    return f"p{product_id}"


def user_key(user_id: int | str) -> str:
    return f"u{user_id}"


def _settings(ctx: PushContext) -> CmsSettings:
    resource: CmsOrdersResource = ctx.resources.cms_orders
    return resource.settings()


def _engine_options(ctx: PushContext) -> dict[str, Any]:
    return {
        "max_attempts": _settings(ctx).max_attempts,
        "retry_backoff_s": RETRY_BACKOFF_S,
        "retry_backoff_max_s": RETRY_BACKOFF_MAX_S,
    }


# ---- products and users ---------------------------------------------------------------------------


def _products_desired(ctx: PushContext) -> list[Desired]:
    return [
        Desired(product_key(pid), product_fields(p)) for pid, p in sorted(catalog(ctx.store, "cms_products").items())
    ]


def _products_destination(ctx: PushContext, client: Any) -> OpenedDestination:
    destination = ProductsDestination(client)
    return OpenedDestination(destination, counts=lambda: dict(destination.counts))


def _contacts_desired(ctx: PushContext) -> list[Desired]:
    region = _settings(ctx).region
    desired: list[Desired] = []
    for uid, user in sorted(catalog(ctx.store, "cms_users").items()):
        payload = user_contact(user, region)
        reason = None if payload["PHONE"] or payload["EMAIL"] or payload["NAME"] else "user has no name, phone or email"
        desired.append(Desired(user_key(uid), payload, invalid_reason=reason))
    return desired


def _contacts_destination(ctx: PushContext, client: Any) -> OpenedDestination:
    destination = UserContactsDestination(client, _settings(ctx).region)
    return OpenedDestination(destination, counts=lambda: dict(destination.counts))


# ---- the two-way rule's facts -------------------------------------------------------------------


def _settlements(ctx: PushContext) -> dict[str, tuple[Any, Settlement, str | None]]:
    """Every stored order: (the order, its settlement, the stage it is at as far as we know)."""
    settings = _settings(ctx)
    orders = all_orders(ctx.store)
    keys = [str(o.order_id) for o in orders]
    deals = target_ids(ctx.store, DEAL, keys)
    bases = base_pairs(ctx.store, PAIR_ENTITIES, keys)
    moves = latest_stages(ctx.store, [int(d) for d in deals.values() if d.isdigit()])
    out: dict[str, tuple[Any, Settlement, str | None]] = {}
    seen = max((move.id for move in moves.values()), default=0)
    for stored in orders:
        key = str(stored.order_id)
        base, _ = bases.get(key, (None, None))
        deal_id = deals.get(key)
        move = moves.get(int(deal_id)) if deal_id and deal_id.isdigit() else None
        stage: str | None = base.stage if base else None
        stage_at: datetime | None = None
        if move is not None and (base is None or move.id > base.seen):  # moved since both sides agreed
            stage, stage_at = move.stage_id, move.at
        if deal_id is None:
            stage = None
        elif stage is None:  # a deal whose stage we never learnt: its history, or as created
            stage = move.stage_id if move else None
        settlement = settle(settings, stored.status, stored.status_at, stage, stage_at, base, seen)
        out[key] = (stored, settlement, stage)
    return out


def _record_conflicts(ctx: PushContext, entity: str, conflicts: dict[str, list[Resolution]]) -> int:
    logged = SyncEngine(ctx.store, flow=FLOW, entity=entity, run_id=ctx.run_id, dry_run=ctx.config.dry_run)
    return logged.record_conflicts(conflicts)


# ---- deals ---------------------------------------------------------------------------------------


def _deals_desired(ctx: PushContext) -> list[Desired]:
    settings = _settings(ctx)
    duplicates = first_with_account(ctx.store)
    users = target_ids(ctx.store, USER_CONTACT)
    products = target_ids(ctx.store, PRODUCT)
    conflicts: dict[str, list[Resolution]] = {}
    desired: list[Desired] = []
    unmapped: set[str] = set()
    current: dict[str, str] = {}  # the stage each deal is at as far as we know (not part of the payload)
    for key, (stored, settlement, stage) in _settlements(ctx).items():
        order = stored.order
        if stage is not None:
            current[key] = stage
        if settlement.conflict is not None and settlement.status is None:
            conflicts[key] = [settlement.conflict]
        if stored.status not in settings.status_stages:
            unmapped.add(stored.status)
        contact = order_contact(order, settings.region)
        user_contact_id = users.get(user_key(order.USER_ID)) if order.USER_ID else None
        if user_contact_id is not None:
            contact = {**(contact or {"NAME": "", "LAST_NAME": "", "PHONE": [], "EMAIL": []}), "id": user_contact_id}
        rows = [
            {**row, "PRODUCT_ID": products.get(product_key(row["PRODUCT_KEY"])) if row["PRODUCT_KEY"] else None}
            for row in product_rows(order)
        ]
        payload = {
            "deal": deal_fields(order, settings.title_prefix),
            "create": {"CATEGORY_ID": settings.category_id, "ORIGINATOR_ID": ORIGINATOR_ID, "ORIGIN_ID": key},
            "stage": settlement.stage or stage,
            "pair": settlement.forward_pair.as_dict(),
            "contact": contact,
            "rows": rows,
        }
        desired.append(Desired(key, payload, invalid_reason=quarantine_reason(order, duplicates.get(order.ID))))
    ctx.scratch["current_stages"] = current
    ctx.scratch["conflicts"] = conflicts
    ctx.scratch["unmapped_statuses"] = ", ".join(sorted(unmapped)) or "none"
    if unmapped:
        ctx.log.warning(f"shop statuses with no deal stage (CMS_STATUS_STAGE_MAP): {sorted(unmapped)}")
    return desired


def _deals_destination(ctx: PushContext, client: Any) -> OpenedDestination:
    destination = ShopDealsDestination(client, _settings(ctx).region, ctx.scratch.get("current_stages", {}))
    return OpenedDestination(destination, counts=lambda: dict(destination.counts))


def _deals_after(ctx: PushContext) -> dict[str, Any]:
    return {
        **accounted(ctx.store, DEALS_ENTITY, DEAL),
        "retry_queue": retry_queue(ctx.store, DEALS_ENTITY, _settings(ctx).max_attempts),
        "conflicts": _record_conflicts(ctx, DEALS_ENTITY, ctx.scratch.get("conflicts", {})),
        "unmapped_statuses": ctx.scratch.get("unmapped_statuses", "none"),
    }


# ---- statuses back to the shop ---------------------------------------------------------------------


def _status_desired(ctx: PushContext) -> list[Desired]:
    conflicts: dict[str, list[Resolution]] = {}
    desired: list[Desired] = []
    for key, (_, settlement, stage) in _settlements(ctx).items():
        if settlement.status is None:
            continue
        if settlement.conflict is not None:
            conflicts[key] = [settlement.conflict]
        pair: Pair = settlement.pair
        desired.append(Desired(key, {"status_id": settlement.status, "stage": stage, "pair": pair.as_dict()}))
    ctx.scratch["conflicts"] = conflicts
    return desired


def _status_destination(ctx: PushContext, client: Any) -> OpenedDestination:
    destination = ShopStatusDestination(client)
    return OpenedDestination(destination, counts=lambda: dict(destination.counts))


def _status_after(ctx: PushContext) -> dict[str, Any]:
    from integration_sync.defs.cms_orders.tables import apply_sent_statuses

    applied = 0 if ctx.config.dry_run else apply_sent_statuses(ctx.store, STATUS_ENTITY, ctx.run_id)
    return {
        "retry_queue": retry_queue(ctx.store, STATUS_ENTITY, _settings(ctx).max_attempts),
        "conflicts": _record_conflicts(ctx, STATUS_ENTITY, ctx.scratch.get("conflicts", {})),
        "statuses_applied_locally": applied,
    }


# what every push of the flow to the shop's portal shares: its account, the flow's settings, its retries
_portal_push = partial(Push, kind="bitrix24", client=CRM, resources=("cms_orders",), engine_options=_engine_options)

PRODUCTS_PUSH = _portal_push(
    key=["bitrix24", "shop_products"],
    entity=PRODUCTS_ENTITY,
    description=(
        "The shop's products as Bitrix24 catalog products (XML_ID cms:<id>; a product a manager made by hand"
        " with the same name is adopted, not duplicated), so the deals' rows reference them. 50 per batch."
    ),
    desired=_products_desired,
    destination=_products_destination,
    target_ids=(PRODUCT,),
    unique_entity=PRODUCT,
    deps=(CATALOG_KEY.path,),
)

CONTACTS_PUSH = _portal_push(
    key=["bitrix24", "shop_contacts"],
    entity=CONTACTS_ENTITY,
    description=(
        "The shop's registered users as Bitrix24 contacts (ORIGIN_ID user:<id>), matched first by that id,"
        " then by phone or email, so a customer is one contact; phones and emails only ever appended."
    ),
    desired=_contacts_desired,
    destination=_contacts_destination,
    target_ids=(USER_CONTACT,),
    unique_entity=USER_CONTACT,
    deps=(CATALOG_KEY.path,),
)

DEALS_PUSH = _portal_push(
    key=["bitrix24", "shop_deals"],
    entity=DEALS_ENTITY,
    description=(
        "One Bitrix24 deal per shop order in the configured pipeline: its stage from the order's status"
        " (CMS_STATUS_STAGE_MAP; a cancelled order closes its deal as lost), its buyer's contact, its"
        " product rows, the order id in ORIGINATOR_ID/ORIGIN_ID. Many orders per batch; an unchanged order"
        " costs nothing; an order unfit to push is quarantined with its reason until the shop fixes it; no"
        " deal is ever deleted. A manager's move is never undone unless the shop's status changed after it."
    ),
    desired=_deals_desired,
    destination=_deals_destination,
    target_ids=(DEAL,),
    unique_entity=DEAL,
    after=_deals_after,
    preflight=push_preflight,
    deps=(ORDERS_KEY.path, PRODUCTS_PUSH.key, CONTACTS_PUSH.key, STAGES_KEY.path),  # managers' moves read first
)

STATUS_PUSH = Push(
    engine_options=_engine_options,
    key=["bitrix_cms", "order_statuses"],
    entity=STATUS_ENTITY,
    description=(
        "Managers' moves of deals in Bitrix24 sent back to the shop as order statuses"
        " (CMS_STAGE_STATUS_MAP) through its key-protected endpoint. Our own stage writes read back are"
        " echoes and send nothing; a status changed on both sides is settled by CMS_CONFLICT_WINNER and"
        " logged. Refused or undelivered statuses wait in the retry log (backoff capped at 4 minutes)."
    ),
    kind="bitrix",
    client="cms_shop",
    resources=("cms_orders",),
    desired=_status_desired,
    destination=_status_destination,
    target_ids=("order",),
    unique_entity="order",
    after=_status_after,
    deps=(STAGES_KEY.path, DEALS_PUSH.key),
)
