-- returnsync as a Shopify app: how each shop was installed, its token pair, and the app's inbound
-- traffic (install states, webhook deliveries, compliance data requests).

-- The shop's installation and its access. Tokens stay encrypted (workers/store/crypto.py);
-- an uninstalled shop has none.
ALTER TABLE shops
    ADD COLUMN status text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'needs_reinstall', 'uninstalled')),
    ADD COLUMN status_detail text,
    ADD COLUMN token_kind text NOT NULL DEFAULT 'static'
        CHECK (token_kind IN ('static', 'expiring', 'client_credentials')),
    ADD COLUMN access_expires_at timestamptz,
    ADD COLUMN refresh_token_enc text,
    ADD COLUMN refresh_expires_at timestamptz,
    -- Bumped by every write of the token pair: a worker that waited for a refresh sees it was done.
    ADD COLUMN token_version bigint NOT NULL DEFAULT 0,
    ADD COLUMN token_refreshed_at timestamptz,
    ADD COLUMN shopify_shop_id bigint,
    ADD COLUMN installed_at timestamptz,
    ADD COLUMN uninstalled_at timestamptz,
    ADD COLUMN redacted_at timestamptz;
ALTER TABLE shops ALTER COLUMN access_token_enc DROP NOT NULL;

-- OAuth `state` nonces of installs in progress: single use, short-lived.
CREATE TABLE install_states (
    state       text PRIMARY KEY,
    shop_domain text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

-- Every webhook Shopify delivered, stored before the 200 (like an ingested event) and processed
-- after it; the webhook id de-duplicates Shopify's retries.
CREATE TABLE webhook_deliveries (
    id            bigserial PRIMARY KEY,
    webhook_id    text NOT NULL UNIQUE,
    event_id      text,
    topic         text NOT NULL,
    shop_domain   text NOT NULL,
    payload       jsonb NOT NULL,
    triggered_at  timestamptz,
    received_at   timestamptz NOT NULL DEFAULT now(),
    processed_at  timestamptz,
    outcome       text CHECK (outcome IN ('done', 'ignored', 'failed')),
    detail        text
);
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (received_at) WHERE processed_at IS NULL;

-- customers/data_request: what was asked and what the sync holds, for an operator to send on.
CREATE TABLE data_requests (
    id               bigserial PRIMARY KEY,
    shop_domain      text NOT NULL,
    request_id       text,
    customer         jsonb NOT NULL,
    orders_requested bigint[] NOT NULL DEFAULT '{}',
    report           jsonb NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);

-- Erasure (customers/redact, shop/redact): an event's personal fields are removed from its stored
-- body; the digest of what was received keeps a producer's re-delivery a duplicate, not a 409.
ALTER TABLE events ADD COLUMN redacted_at timestamptz, ADD COLUMN payload_digest text;

-- The relay's question: open events nobody has rung yet.
CREATE INDEX events_unrung_idx ON events (order_id) WHERE enqueued_at IS NULL AND status IN ('accepted', 'waiting');
