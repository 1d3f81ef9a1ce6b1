-- What the sync last knew of each order on Shopify (workers/store/snapshots.py): written at the end
-- of a run whose every Shopify answer was seen, with that run's fencing token, so the next run of
-- the order (token + 1: nobody ran it in between) starts from it instead of reading Shopify again.
ALTER TABLE orders ADD COLUMN snapshot jsonb;
ALTER TABLE orders ADD COLUMN snapshot_fence bigint;
