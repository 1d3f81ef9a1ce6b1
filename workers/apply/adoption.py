"""Finding the Shopify return behind a platform return: mapped, or adopted after a lost answer.

Create mutations are not idempotent on Shopify, so a platform return without a mapping first looks
for a live Shopify return on the order with exactly its lines that no other platform return owns
(``workers.lines.adoptable``): what an earlier run created before its answer was lost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from workers.apply.context import OrderRun
from workers.lines import adoptable
from workers.shopify.models import ShopifyReturn
from workers.store import returns as store
from workers.store.returns import ReturnRow, StoredEvent

log = logging.getLogger(__name__)


def find_adoptable(run: OrderRun, row: ReturnRow, events: Sequence[StoredEvent]) -> ShopifyReturn | None:
    if not events:
        return None
    # All events of one return list the same items; the latest is the one that counts if not.
    latest = max(events, key=lambda stored: stored.event.sort_key)
    wanted = latest.event.event_return.quantities()
    owners = store.owners_of(run.shop.id, [candidate.gid for candidate in run.live.returns])
    return adoptable(run.live.returns, wanted, owners, row.id)


def current_return(
    run: OrderRun, row: ReturnRow, events: Sequence[StoredEvent]
) -> tuple[ReturnRow, ShopifyReturn | None]:
    """The return's Shopify counterpart as it is now (adopting one an earlier run created), and
    the row as it stands after that."""
    if row.shopify_return_gid:
        found = run.live.return_by_gid(row.shopify_return_gid)
        return row, found or run.api.return_details(row.shopify_return_gid)
    adopted = find_adoptable(run, row, events)
    if adopted is None:
        return row, None
    log.info("return %s: adopting Shopify return %s", row.platform_return_id, adopted.gid)
    return run.map_return(row, adopted), adopted
