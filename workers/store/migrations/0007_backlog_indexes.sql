-- The metrics scrape (workers/store/backlog.py) reads, every 15-30 s, the returns not synced and
-- the webhook deliveries that failed. These partial indexes hold only those rows, so the scrape
-- costs what the backlog is, however large the tables grow.
CREATE INDEX returns_unsynced_idx ON returns (shop_id) WHERE sync IN ('pending', 'waiting', 'failed');
CREATE INDEX webhook_deliveries_failed_idx ON webhook_deliveries (shop_domain) WHERE outcome = 'failed';
