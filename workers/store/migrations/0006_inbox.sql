-- The error inbox: every return that is not synced, with a stable category, a severity and the
-- one-sentence reason, first and last seen, open or solved (with an operator's comment); and the
-- history of each return's state, for the timeline.

-- The category of a return's current problem (NULL when synced): the codes of workers/statuses.py
-- Category, mirrored here (tests/test_statuses.py keeps them equal).
ALTER TABLE returns ADD COLUMN category text CHECK (category IN (
    'order_not_fulfilled', 'order_not_found', 'item_already_returned', 'missing_scopes',
    'access_refused', 'app_uninstalled', 'shopify_unavailable', 'budget', 'conflict',
    'rejected', 'invalid_event', 'internal_error', 'drift', 'query_too_costly'));

CREATE TABLE problems (
    id          bigserial PRIMARY KEY,
    shop_id     bigint NOT NULL REFERENCES shops (id),
    order_id    bigint NOT NULL REFERENCES orders (id),
    return_id   bigint NOT NULL REFERENCES returns (id),
    category    text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'error')),
    reason      text NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    occurrences integer NOT NULL DEFAULT 1,
    -- Solved by the sync itself (the return synced, or moved on to another problem), or by an
    -- operator who looked at it ("solved_by" names which, "comment" says why).
    solved_at   timestamptz,
    solved_by   text,
    comment     text
);
-- At most one open problem per return and category: a repeat is the same problem seen again.
CREATE UNIQUE INDEX problems_open_idx ON problems (return_id, category) WHERE solved_at IS NULL;
CREATE INDEX problems_shop_idx ON problems (shop_id, solved_at, last_seen);

-- Each change of a return's sync state, as the run wrote it: the timeline's state changes.
CREATE TABLE return_changes (
    id            bigserial PRIMARY KEY,
    return_id     bigint NOT NULL REFERENCES returns (id),
    at            timestamptz NOT NULL DEFAULT now(),
    sync          text NOT NULL,
    applied_state text,
    category      text,
    detail        text
);
CREATE INDEX return_changes_return_idx ON return_changes (return_id, at);
