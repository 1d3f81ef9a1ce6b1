"""Why is this return (or order) not synced? One sentence, and the command that repairs it.

``diagnose`` runs the source FAQ's three checks itself against Shopify as it is now: the shop's
installation and scopes, the order fulfilled before the return, the same item already returned;
plus what only we can see: the order's lock, its doorbell, the shop's API budget, its token. The
stored state says what the last run found; the live checks say whether that still holds.

``explain`` is the offline half (no Shopify call): the sentence and repair for a return's stored
category and detail, shown by the status API, the inbox and the ops page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.exceptions import RedisError

from workers.access import AccessLost, ShopTokens, check_installed
from workers.budget import gate_for
from workers.locking import order_key
from workers.shopify.api import ShopifyAPI
from workers.shopify.client import Endpoint, ShopifyClient
from workers.shopify.errors import ShopifyError
from workers.statuses import Category, SyncState
from workers.store import reports
from workers.store import returns as store
from workers.store.returns import LoadedReturn
from workers.store.shops import Shop, ShopStatus, TokenKind, get_shop

log = logging.getLogger(__name__)

CLI = "python -m workers.cli"

# The live check that shows the same cause as a stored category.
_CONFIRMS = {
    Category.ORDER_NOT_FULFILLED: "fulfilled",
    Category.ITEM_ALREADY_RETURNED: "already returned",
    Category.MISSING_SCOPES: "scopes",
    Category.APP_UNINSTALLED: "installation",
    Category.ACCESS_REFUSED: "installation",
    Category.BUDGET: "budget",
}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: could not be checked
    detail: str


@dataclass(frozen=True)
class Diagnosis:
    shop: str
    return_id: str
    order: str
    sync: SyncState
    category: Category | None
    sentence: str
    repair: str | None
    checks: tuple[Check, ...] = ()

    @property
    def synced(self) -> bool:
        return self.sync == SyncState.SYNCED


def repair_for(shop: str, return_id: str, category: Category | None, sync: SyncState) -> str | None:
    """The command (or the merchant's action) that repairs a return in this state."""
    retry = f"{CLI} retry {shop} {return_id}"
    reset = f"{CLI} reset {shop} {return_id}"
    if category is None:
        return None if sync == SyncState.SYNCED else f"nothing to do: a run is on its way (or {retry})"
    if category is Category.ORDER_NOT_FULFILLED:
        return f"fulfil the order in Shopify: it syncs by itself within seconds (or {retry} afterwards)"
    if category in (Category.MISSING_SCOPES, Category.ACCESS_REFUSED, Category.APP_UNINSTALLED):
        return f"the merchant reinstalls the app: {CLI} install-link {shop}"
    if category is Category.BUDGET:
        return "nothing to do: it syncs as the shop's API budget refills"
    if category is Category.SHOPIFY_UNAVAILABLE and sync != SyncState.FAILED:
        return f"nothing to do: it is retried by itself (or {retry} to try now)"
    if category is Category.ITEM_ALREADY_RETURNED:
        return (
            f"nothing to retry: the item is already returned on Shopify; {CLI} inbox solve <id> --comment ..."
        )
    if category in (Category.CONFLICT, Category.DRIFT):
        return f"if the platform's state is the right one: {reset}"
    if category is Category.INVALID_EVENT:
        return "the producer sends the event again, valid; then " + retry
    if category is Category.ORDER_NOT_FOUND:
        return f"check the order's id or name in the platform; then {retry}"
    return retry


def explain(return_id: str, sync: SyncState, category: Category | None, detail: str | None) -> str:
    """The one sentence for a return's stored state."""
    if sync == SyncState.SYNCED and category is None:
        return f"{return_id} is synced."
    reason = detail or "not looked at by a worker yet"
    words = {
        SyncState.PENDING: "is being applied",
        SyncState.WAITING: "waits",
        SyncState.REJECTED: "was rejected",
        SyncState.CONFLICT: "is in conflict",
        SyncState.FAILED: "failed",
        SyncState.SYNCED: "is synced, with a finding",
    }
    return f"{return_id} {words[sync]}: {reason}."


def _lease(shop: Shop, order: store.OrderRow) -> str | None:
    """Who holds the order's lease now, and until when (None when it is free)."""
    keys = [order_key(shop.domain, order.order_gid, order.id), order_key(shop.domain, None, order.id)]
    row = reports.lease_of(keys)
    if row is None:
        return None
    return f"held by {row['holder']} for {row['left'].total_seconds():.0f} s more unless renewed"


def _doorbell(order_id: int) -> str:
    row = reports.doorbell_of(order_id)
    if not row["open"]:
        return "no open event"
    if row["unrung"]:
        return f"{row['unrung']} open event(s) waiting for the relay to ring them"
    return f"{row['open']} open event(s), last rung {row['rung_at']:%Y-%m-%d %H:%M:%S}"


def _budget(shop: Shop) -> Check:
    """The shop's API budget as the workers share it (the Redis mirror), and Shopify's refusals."""
    throttled = reports.throttled_last_minute(shop.id)
    refused = f"{throttled} throttled answer(s) in the last minute"
    try:
        state = gate_for(shop.domain).budget.state()
    except RedisError:
        return Check("budget", None if throttled == 0 else False, f"mirror unavailable; {refused}")
    # Low: less than a mutation's worth, or a tenth of the bucket, whichever is more.
    low = state.available < max(10.0, state.maximum / 10)
    detail = (
        f"{state.available:.0f} of {state.maximum:.0f} points available, refilling"
        f" {state.restore_rate:g}/s; {refused}"
    )
    return Check("budget", not low and throttled == 0, detail)


def _token(shop: Shop) -> Check:
    if shop.status is not ShopStatus.ACTIVE:
        return Check("token", False, f"{shop.token_kind} token, shop {shop.status} ({shop.status_detail})")
    if shop.token_kind is TokenKind.STATIC:
        return Check("token", True, "a static (legacy custom-app) token")
    expires = shop.access_expires_at
    left = (expires - datetime.now(UTC)).total_seconds() if expires else None
    return Check(
        "token", True, f"{shop.token_kind} token, {left:.0f}s left" if left is not None else "expiring"
    )


def diagnose(shop_domain: str, return_id: str) -> Diagnosis | None:
    """The live diagnosis of one platform return (None: no such return)."""
    found = reports.find_return(shop_domain, return_id)
    if found is None:
        return None
    return _diagnose(store.load_return(found.return_row_id))


def diagnose_order(order_id: int) -> list[Diagnosis]:
    """Every return of an order row, diagnosed."""
    return [_diagnose(store.load_return(return_row_id)) for return_row_id in reports.returns_of(order_id)]


def _diagnose(loaded: LoadedReturn) -> Diagnosis:
    row = loaded.row
    shop = get_shop(row.shop_id)
    order = store.load_order(row.order_id)
    assert order is not None
    order_label = order.order_name or order.order_gid or order.order_ref
    category = row.category
    checks: list[Check] = []
    sentence = explain(row.platform_return_id, row.sync, category, row.detail)

    # FAQ check 1: the installation and its scopes, as Shopify says now.
    try:
        check_installed(shop)
        api = ShopifyAPI(ShopifyClient(Endpoint(shop.domain, shop.graphql_url, ShopTokens(shop))))
        granted = set(api.access_scopes())
        missing = [
            s for s in ("read_orders", "write_orders", "read_returns", "write_returns") if s not in granted
        ]
        checks.append(
            Check("scopes", not missing, f"missing {', '.join(missing)}" if missing else "all granted")
        )
    except AccessLost as lost:
        api = None
        checks.append(Check("installation", False, lost.detail))
    except ShopifyError as exc:
        api = None
        checks.append(Check("scopes", None, f"Shopify could not be asked ({type(exc).__name__})"))

    latest = max(loaded.events, key=lambda stored: stored.event.sort_key) if loaded.events else None
    wanted = latest.event.event_return.quantities() if latest else {}
    if api is not None and order.order_gid and wanted:
        try:
            live = api.order(order.order_gid)
            if live is None:
                checks.append(Check("order", False, f"Shopify does not know {order.order_gid}"))
            else:
                # FAQ check 2: fulfilled before the return.
                short = [gid for gid, qty in wanted.items() if live.fulfilled_quantity(gid) < qty]
                checks.append(
                    Check(
                        "fulfilled",
                        not short,
                        f"not fulfilled yet: {', '.join(short)}" if short else "fulfilled",
                    )
                )
                # FAQ check 3: the same item already returned (by another return than ours).
                returnable: dict[str, int] = {}
                for line in api.returnable_lines(order.order_gid):
                    returnable[line.line_item_gid] = returnable.get(line.line_item_gid, 0) + line.quantity
                mine = live.return_by_gid(row.shopify_return_gid) if row.shopify_return_gid else None
                held = mine.quantities_by_line_item() if mine and mine.status.holds_items else {}
                taken = [
                    gid
                    for gid, qty in wanted.items()
                    if not short and returnable.get(gid, 0) + held.get(gid, 0) < qty
                ]
                checks.append(
                    Check(
                        "already returned",
                        not taken,
                        f"already in another return on Shopify: {', '.join(taken)}" if taken else "no",
                    )
                )
                if mine is not None:
                    checks.append(Check("shopify return", True, f"{mine.name} is {mine.status}"))
        except ShopifyError as exc:
            checks.append(Check("order", None, f"Shopify could not be asked ({type(exc).__name__})"))

    lease = _lease(shop, order)
    checks.append(Check("lock", None if lease else True, lease or "free"))
    checks.append(Check("doorbell", True, _doorbell(order.id)))
    checks.append(_budget(shop))
    checks.append(_token(shop))

    # What the live checks show that the stored state does not know yet (a check that confirms
    # the stored reason adds nothing to the sentence).
    confirming = _CONFIRMS.get(category) if category is not None else None
    failing = [c for c in checks if c.ok is False and c.name != confirming]
    if row.sync == SyncState.SYNCED and not failing:
        sentence = f"{row.platform_return_id} is synced" + (
            f": Shopify shows {row.shopify_status} ({row.applied_state})." if row.shopify_status else "."
        )
    elif category is Category.ORDER_NOT_FULFILLED and any(
        c.ok is True for c in checks if c.name == "fulfilled"
    ):
        sentence += " The order is fulfilled now: the next run (within seconds of the webhook) syncs it."
    elif failing and row.sync != SyncState.SYNCED:
        sentence += f" Now: {failing[0].name}: {failing[0].detail}."
    return Diagnosis(
        shop=shop.domain,
        return_id=row.platform_return_id,
        order=order_label,
        sync=row.sync,
        category=category,
        sentence=sentence,
        repair=repair_for(shop.domain, row.platform_return_id, category, row.sync),
        checks=tuple(checks),
    )
