-- Every status column checked against the enums of workers/statuses.py (tests/test_statuses.py
-- keeps each CHECK equal to its enum), and a per-return count of failed attempts: the retry
-- policy decides from Postgres, never from a broker's redelivery counter.

-- Runs recorded before this version used 'error' for a run that raised (now a counted 'retry')
-- and an 'replay' marker row for an operator reset (now a reset of returns.failures).
UPDATE attempts SET outcome = 'retry' WHERE outcome = 'error';
DELETE FROM attempts WHERE outcome = 'replay';

ALTER TABLE attempts ADD CONSTRAINT attempts_outcome_check CHECK (outcome IN (
    'applied', 'waiting', 'retry', 'throttled', 'busy', 'lost_lock', 'failed', 'idle', 'missing'));

ALTER TABLE shopify_calls ADD CONSTRAINT shopify_calls_outcome_check CHECK (outcome IN (
    'ok', 'user_errors', 'throttled', 'http_error', 'timeout', 'connection_error', 'access_denied',
    'graphql_error'));

ALTER TABLE returns ADD CONSTRAINT returns_shopify_status_check CHECK (shopify_status IN (
    'REQUESTED', 'OPEN', 'CLOSED', 'DECLINED', 'CANCELED'));

-- Consecutive failed attempts of this return (Shopify down, an unexpected error); any other
-- outcome resets it. After the policy's last attempt the return is dead-lettered as failed.
ALTER TABLE returns ADD COLUMN failures integer NOT NULL DEFAULT 0 CHECK (failures >= 0);

-- The sweep and the open-work queries look events up by order and status.
CREATE INDEX events_order_open_idx ON events (order_id) WHERE status IN ('accepted', 'waiting');
