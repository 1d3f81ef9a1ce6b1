-- The per-order lock becomes a lease row (workers/locking.py) instead of a session advisory lock:
-- taken, renewed and released in single statements, so it holds behind PgBouncer in transaction
-- pooling and an in-flight run no longer pins a Postgres connection of its own.
CREATE TABLE order_leases (
    key        text PRIMARY KEY,     -- workers.locking.order_key: the Order GID, else the order row
    order_id   bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    holder     text NOT NULL,        -- host/pid/nonce of the worker run that holds it
    taken_at   timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL  -- Postgres' clock only: no worker clock is ever compared
);
CREATE INDEX order_leases_order_idx ON order_leases (order_id);
