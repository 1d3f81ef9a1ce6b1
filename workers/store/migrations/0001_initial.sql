-- returnsync initial schema. Postgres is the truth; Redis only rings the workers' doorbell.

-- A Shopify shop the sync writes to, with what it needs to reach it.
CREATE TABLE shops (
    id                bigserial PRIMARY KEY,
    domain            text NOT NULL UNIQUE,            -- acme-nl.myshopify.com
    api_url           text,                            -- NULL: settings.shopify_url_template
    access_token      text NOT NULL,
    api_version       text NOT NULL DEFAULT '2026-07',
    tag_language      text NOT NULL DEFAULT 'en' CHECK (tag_language IN ('en', 'nl')),
    reason_overrides  jsonb NOT NULL DEFAULT '{}'::jsonb, -- {"<reason_id>": "<handle>"}
    granted_scopes    text[],                          -- last read from currentAppInstallation
    missing_scopes    text[] NOT NULL DEFAULT '{}',    -- non-empty: the shop needs a reinstall
    waiting_horizon_s integer NOT NULL DEFAULT 1209600, -- how long to wait for a fulfilment
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- One Shopify order as the events name it. The unit of serialisation and of queueing.
CREATE TABLE orders (
    id           bigserial PRIMARY KEY,
    shop_id      bigint NOT NULL REFERENCES shops (id),
    order_ref    text NOT NULL,      -- the Order GID when the event gave an id, else the name
    order_gid    text,               -- resolved from Shopify when the event only had a name
    order_name   text,
    fence        bigint NOT NULL DEFAULT 0, -- bumped by each lock holder; stale holders cannot write
    next_run_at  timestamptz,        -- when waiting work on this order is due again
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (shop_id, order_ref)
);

-- One return of the platform and what the sync made of it on Shopify.
CREATE TABLE returns (
    id                 bigserial PRIMARY KEY,
    shop_id            bigint NOT NULL REFERENCES shops (id),
    platform_return_id text NOT NULL,
    order_id           bigint NOT NULL REFERENCES orders (id),
    shopify_return_gid text,
    shopify_status     text,          -- REQUESTED, OPEN, CLOSED, DECLINED, CANCELED
    applied_state      text CHECK (applied_state IN ('requested', 'created', 'completed', 'cancelled')),
    sync               text NOT NULL DEFAULT 'pending'
                       CHECK (sync IN ('synced', 'pending', 'waiting', 'rejected', 'conflict', 'failed')),
    detail             text,
    waiting_since      timestamptz,
    attempts           integer NOT NULL DEFAULT 0,
    note_appended      boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (shop_id, platform_return_id)
);
CREATE INDEX returns_order_idx ON returns (order_id);

-- Every accepted event, as received, with where it stands.
CREATE TABLE events (
    id             bigserial PRIMARY KEY,
    event_id       text NOT NULL UNIQUE,
    shop_id        bigint NOT NULL REFERENCES shops (id),
    return_id      bigint NOT NULL REFERENCES returns (id),
    order_id       bigint NOT NULL REFERENCES orders (id),
    type           text NOT NULL CHECK (type IN ('return.requested', 'return.created',
                                                  'return.completed', 'return.cancelled')),
    occurred_at    timestamptz NOT NULL,
    payload        jsonb NOT NULL,   -- the body as received (unknown fields kept)
    status         text NOT NULL DEFAULT 'accepted'
                   CHECK (status IN ('accepted', 'applied', 'superseded', 'waiting',
                                     'rejected', 'conflict', 'failed')),
    detail         text,
    received_at    timestamptz NOT NULL DEFAULT now(),
    enqueued_at    timestamptz,      -- last time a doorbell was rung for it (sweep uses it)
    finished_at    timestamptz
);
CREATE INDEX events_return_idx ON events (return_id);
CREATE INDEX events_open_idx ON events (received_at) WHERE status IN ('accepted', 'waiting');

-- One row per attempt to apply an order's pending work (saleor's delivery/attempt split).
CREATE TABLE attempts (
    id           bigserial PRIMARY KEY,
    order_id     bigint NOT NULL REFERENCES orders (id),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    outcome      text,              -- applied, waiting, retry, rejected, conflict, failed, lost_lock
    detail       text,
    worker       text
);
CREATE INDEX attempts_order_idx ON attempts (order_id);

-- Every call made to Shopify: the per-order timeline and the cost accounting.
CREATE TABLE shopify_calls (
    id             bigserial PRIMARY KEY,
    shop_id        bigint NOT NULL REFERENCES shops (id),
    order_id       bigint REFERENCES orders (id),
    return_id      bigint REFERENCES returns (id),
    operation      text NOT NULL,    -- the GraphQL operation name, e.g. ReturnCreate
    outcome        text NOT NULL,    -- ok, user_errors, throttled, http_error, timeout, access_denied, ...
    http_status    integer,
    requested_cost integer,
    actual_cost    integer,
    duration_ms    integer NOT NULL,
    detail         text,             -- userErrors / error codes, never tokens
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shopify_calls_order_idx ON shopify_calls (order_id, at);
CREATE INDEX shopify_calls_shop_idx ON shopify_calls (shop_id, at);
