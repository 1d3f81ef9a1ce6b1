"""The drift check: is what the sync applied still what Shopify holds?

Staff edit orders in the Shopify admin: a return cancelled or closed by hand, a tag removed, a note
rewritten. The sync only looks at an order when an event arrives, so such an edit stays unseen. For
returns the sync changed recently (``DRIFT_WINDOW_S``) and that have no open work, this reads the
Shopify order (tags, note, its returns) and compares, per return:

- the Shopify return's status with the state applied (``return_status``; ``return_missing`` when
  Shopify does not know the return, ``order_missing`` when it does not know the order);
- for a live return (created or completed), the refund-method tag on the order (``refund_tag``;
  the tag in either language counts, as a shop may have switched);
- when the exchange note was appended, its marker line in the order note (``exchange_note``; not
  when the note is too full to take it, which the run treats as done too).

Each finding goes to ``drifts`` (``workers.store.drifts``); the shop's ``drift_mode`` says whether
that is all (``report``) or the return is also re-applied (``repair``) where the sync can move
Shopify back: its events go back to accepted and the relay rings the order, and the run converges
from Shopify's live state as after any staff edit. A difference the sync never undoes (Shopify
ahead of what was applied: a cancelled return cannot be reopened, and the sync never moves a
return backwards) is recorded as ``reported`` and, in repair mode, the return is marked
``conflict`` with what Shopify shows. Migration 0005 has the table of kinds and actions.

Read-only on Shopify (a mutation would raise before it is sent), and under the order's lock, so no
apply run changes the order while it is compared and every write is fenced.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

from celery.exceptions import SoftTimeLimitExceeded

from config import get_settings
from workers import mapping
from workers.access import AccessLost
from workers.apply.run import endpoint_of
from workers.budget import gate_for
from workers.locking import OrderLock, order_key, try_lock_order
from workers.shopify.api import ShopifyAPI
from workers.shopify.client import ShopifyClient
from workers.shopify.errors import AccessDenied, ShopifyUnavailable, Throttled, Unauthorized
from workers.shopify.models import LiveOrder, ShopifyReturn
from workers.statuses import ReturnState, SyncState
from workers.store import calls, drifts
from workers.store import returns as store
from workers.store.drifts import Conflict, DriftAction, DriftKind, DriftMode, Finding, Repair
from workers.store.fencing import LostLock
from workers.store.returns import LoadedReturn, OrderRow
from workers.store.shops import Shop, get_shop

log = logging.getLogger(__name__)

# The shop is out of reach for now (budget, outage, access): its other orders wait for a later run.
_STOPS_THE_SHOP = (Throttled, ShopifyUnavailable, AccessLost, AccessDenied, Unauthorized)
_REPAIRABLE_KINDS = frozenset({DriftKind.REFUND_TAG, DriftKind.EXCHANGE_NOTE, DriftKind.RETURN_MISSING})


class ReadOnly(RuntimeError):
    """The drift check tried to change Shopify."""


def _read_only(lock: OrderLock) -> Callable[[bool], None]:
    """Before each request: a mutation is refused; a read keeps the order's lease."""

    def guard(mutation: bool) -> None:
        if mutation:
            raise ReadOnly("the drift check only reads Shopify")
        lock.guard(mutation=False)

    return guard


def check_drift(now: datetime | None = None, limit: int | None = None) -> dict[str, int]:
    """Compare up to ``limit`` recently changed returns with Shopify; returns counts of what was
    checked, found, repaired and left for later."""
    settings = get_settings()
    candidates = store.drift_candidates(
        now or store.db_now(),
        settings.drift_window_s,
        settings.drift_recheck_s,
        limit or settings.drift_batch,
    )
    orders: dict[int, dict[int, list[int]]] = {}  # shop -> order -> returns
    for candidate in candidates:
        orders.setdefault(candidate.shop_id, {}).setdefault(candidate.order_id, []).append(
            candidate.return_id
        )
    counts: Counter[str] = Counter()
    for shop_id, by_order in orders.items():
        shop = get_shop(shop_id)
        mode = drifts.drift_mode(shop_id)
        pending = list(by_order.items())
        for position, (order_id, return_ids) in enumerate(pending):
            try:
                counts.update(_check_order(shop, mode, order_id, return_ids))
            except _STOPS_THE_SHOP as exc:
                log.warning("drift: shop %s out of reach (%s); next run", shop.domain, type(exc).__name__)
                counts["left"] += sum(len(ids) for _, ids in pending[position:])
                break
            except SoftTimeLimitExceeded:
                raise  # the task's deadline: what is left waits for the next run
            except LostLock as exc:
                log.warning("drift: order %s: lost the lock: %s", order_id, exc)
                counts["left"] += len(return_ids)
            except Exception:
                log.exception("drift: order %s could not be checked", order_id)
                counts["left"] += len(return_ids)
                # Back in the queue behind the others, so an order that always breaks the check
                # cannot take every run's batch.
                drifts.mark_checked(return_ids)
    if counts["found"]:
        log.info("drift: %s", dict(counts))
    return {key: counts[key] for key in ("checked", "found", "repaired", "left", "busy")}


def _check_order(shop: Shop, mode: DriftMode, order_id: int, return_ids: Sequence[int]) -> Counter[str]:
    counts: Counter[str] = Counter()
    order = store.load_order(order_id)
    if order is None or order.order_gid is None:
        drifts.mark_checked(return_ids)
        return counts
    lock = try_lock_order(order_key(shop.domain, order.order_gid, order.id), order.id)
    if lock is None:
        counts["busy"] += len(return_ids)
        return counts
    with lock:
        checking: list[int | None] = [None]
        client = ShopifyClient(
            endpoint_of(shop),
            before_send=_read_only(lock),
            meter=gate_for(shop.domain),
            on_call=lambda record: calls.record_call(shop.id, order.id, checking[0], record),
        )
        api = ShopifyAPI(client)
        live = api.order(order.order_gid)
        for return_id in return_ids:
            checking[0] = return_id
            loaded = store.load_return(return_id)
            # Read again under the lock: a run may have taken the return up since it was picked.
            row = loaded.row
            if (
                row.sync not in (SyncState.SYNCED, SyncState.CONFLICT)
                or row.shopify_return_gid is None
                or row.applied_state is None
                or store.has_open_events(return_id)
            ):
                continue
            counts["checked"] += 1
            findings, current = _compare(api, shop, order, live, loaded)
            counts["found"] += len(findings)
            counts["repaired"] += _settle(shop, mode, order, lock.token, loaded, findings, current)
    return counts


def _compare(
    api: ShopifyAPI, shop: Shop, order: OrderRow, live: LiveOrder | None, loaded: LoadedReturn
) -> tuple[list[Finding], ShopifyReturn | None]:
    row = loaded.row
    assert row.shopify_return_gid is not None and row.applied_state is not None
    if live is None:
        return [Finding(DriftKind.ORDER_MISSING, order.order_gid or order.order_ref, "missing")], None
    current = live.return_by_gid(row.shopify_return_gid) or api.return_details(row.shopify_return_gid)
    if current is None:
        return [Finding(DriftKind.RETURN_MISSING, row.shopify_return_gid, "missing")], None
    if current.status.state != row.applied_state:
        return [Finding(DriftKind.RETURN_STATUS, row.applied_state, current.status)], current
    findings: list[Finding] = []
    latest_first = [
        stored.event.event_return
        for stored in sorted(loaded.events, key=lambda stored: stored.event.sort_key, reverse=True)
    ]
    method = next((r.refund_method for r in latest_first if r.refund_method), None)
    if row.applied_state in (ReturnState.CREATED, ReturnState.COMPLETED) and method is not None:
        wanted = [mapping.refund_tag(method, language) for language in mapping.REFUND_TAGS]
        if not any(live.has_tag(tag) for tag in wanted):
            expected = mapping.refund_tag(method, shop.tag_language)
            findings.append(Finding(DriftKind.REFUND_TAG, expected, ", ".join(live.tags) or "(no tags)"))
    note = next((r.exchange_note for r in latest_first if r.exchange_note), None)
    # Only a note with room for it counts: the run marks a full note done without writing.
    if (
        row.note_appended
        and note
        and mapping.append_exchange_note(live.note, row.platform_return_id, note) is not None
    ):
        marker = f"[Return {row.platform_return_id}] exchange: ..."
        findings.append(Finding(DriftKind.EXCHANGE_NOTE, marker, "absent"))
    return findings, current


def _settle(
    shop: Shop,
    mode: DriftMode,
    order: OrderRow,
    token: int,
    loaded: LoadedReturn,
    findings: list[Finding],
    current: ShopifyReturn | None,
) -> int:
    """Record the findings and act on the new ones; returns how many were repaired."""
    row = loaded.row
    already = drifts.open_kinds(row.id)
    new = [finding for finding in findings if finding.kind not in already]
    repair: Repair | None = None
    conflict: Conflict | None = None
    repaired: set[DriftKind] = set()
    if mode is DriftMode.REPAIR and new:
        for finding in new:
            log.info("drift: return %s: %s", row.platform_return_id, _describe(finding))
        repairable = [f for f in new if f.kind in _REPAIRABLE_KINDS or _shopify_behind(f, current)]
        if repairable:
            repaired = {f.kind for f in repairable}
            repair = Repair(
                detail="re-applying after a drift on Shopify: " + "; ".join(_describe(f) for f in repairable),
                redecorate=bool(repaired & {DriftKind.REFUND_TAG, DriftKind.EXCHANGE_NOTE}),
                renote=DriftKind.EXCHANGE_NOTE in repaired,
                forget_mapping=DriftKind.RETURN_MISSING in repaired,
            )
        else:
            conflict = Conflict(
                detail="; ".join(_describe(f) for f in new)
                + ": changed on Shopify outside the sync, which never moves a return back (resolve by hand)",
                shopify_status=current.status if current is not None else None,
            )
    actions = [(f, DriftAction.REPAIRED if f.kind in repaired else DriftAction.REPORTED) for f in findings]
    drifts.settle(order.id, token, shop.id, row.id, actions, repair=repair, conflict=conflict)
    return len(repaired)


def _shopify_behind(finding: Finding, current: ShopifyReturn | None) -> bool:
    """A status Shopify can be moved on from (a return reopened by hand is closed again); one
    ahead of or beside the state applied cannot (cancelled, declined or closed by hand)."""
    if finding.kind is not DriftKind.RETURN_STATUS or current is None:
        return False
    return current.status.state.rank < ReturnState(finding.expected).rank


def _describe(finding: Finding) -> str:
    if finding.kind is DriftKind.RETURN_STATUS:
        return f"the Shopify return is {finding.actual} where {finding.expected} was applied"
    if finding.kind is DriftKind.RETURN_MISSING:
        return f"the Shopify return {finding.expected} is missing"
    if finding.kind is DriftKind.ORDER_MISSING:
        return f"the Shopify order {finding.expected} is missing"
    if finding.kind is DriftKind.REFUND_TAG:
        return f"the order lacks the tag {finding.expected!r}"
    return "the order note lacks the return's exchange note"
