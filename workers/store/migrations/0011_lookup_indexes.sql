-- Indexes for look-ups that must cost what they find, not what the tables hold.

-- Adoption asks which of an order's live Shopify returns another platform return already owns
-- (workers/store/returns.py: owners_of): by those few GIDs, not by reading every mapped return of
-- the shop, whose history grows without bound.
CREATE INDEX returns_shopify_gid_idx ON returns (shopify_return_gid) WHERE shopify_return_gid IS NOT NULL;

-- The relay reads the unrung events every few milliseconds (workers/store/outbox.py: unrung),
-- oldest first. Every event leaves this index when its doorbell is rung, and until vacuum comes
-- the old entries stay: a bitmap scan visits each of them on every poll (1.3 ms a poll behind a
-- 10,000-event backlog). Keyed by id, the poll is a plain ordered index scan, which marks the
-- entries it finds dead so later polls skip them.
DROP INDEX events_unrung_idx;
CREATE INDEX events_unrung_idx ON events (id) WHERE enqueued_at IS NULL AND status IN ('accepted', 'waiting');
