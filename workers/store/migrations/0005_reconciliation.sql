-- Reconciliation on beat: a log of the beat tasks' runs, the drift check's findings with each
-- shop's drift mode, and what the backoff, horizon, drift and retention queries look rows up by.

-- One row per run of a beat task (returns.sweep, shopify.maintain, reconcile.*): when it ran, on
-- which worker, and what it did (`result`, the task's summary). Operators see when each last ran;
-- the two-beat test counts these rows. Pruned by retention like the other logs.
CREATE TABLE beat_runs (
    id          bigserial PRIMARY KEY,
    task        text NOT NULL,
    worker      text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome     text CHECK (outcome IN ('done', 'failed')),
    result      jsonb
);
CREATE INDEX beat_runs_task_idx ON beat_runs (task, started_at);

-- What the drift check does with a difference it finds on this shop: `report` records it in
-- `drifts` and changes nothing else; `repair` records it and, where the sync can move Shopify
-- back in line, re-applies the return (see `drifts.action`).
ALTER TABLE shops ADD COLUMN drift_mode text NOT NULL DEFAULT 'report'
    CHECK (drift_mode IN ('report', 'repair'));

-- The drift check's cursor: when this return was last compared with Shopify. A return changed
-- since (updated_at later) is compared again at the next run, others once per DRIFT_RECHECK_S.
ALTER TABLE returns ADD COLUMN drift_checked_at timestamptz;
CREATE INDEX returns_updated_idx ON returns (updated_at);
-- The horizon expiry's question: the longest-waiting returns.
CREATE INDEX returns_waiting_idx ON returns (waiting_since) WHERE sync = 'waiting';

-- A difference between what the sync applied and what Shopify holds, found by the drift check
-- (reconcile.drift_check) on a return with no open work. One open finding (resolved_at NULL) per
-- return and kind: found again, it is not recorded or acted on twice. It is resolved (resolved_at
-- set) when a later check of the return no longer finds it. Open findings are what the error
-- inbox lists under the category `drift`.
--
-- kind        expected                                actual
-- ----------  --------------------------------------  -------------------------------------
-- return_status   the state applied (created...)      Shopify's return status (CANCELED...)
-- return_missing  the Shopify Return GID we mapped    'missing' (Shopify does not know it)
-- order_missing   the Shopify Order GID               'missing'
-- refund_tag      the refund-method tag               the order's tags, comma-separated
-- exchange_note   the note's marker line for the return  'absent'
--
-- action: what was done when it was found.
-- 'repaired' (repair mode, and the sync can bring Shopify back): the return's applied, superseded
--   and conflict events are set back to accepted and the return to pending, and the relay rings
--   it; the next run plans from Shopify's live state as after any staff edit and converges:
--   refund_tag, exchange_note: decorated again (tagsAdd; the note appended again);
--   return_status with Shopify behind the state applied (a closed return reopened by hand): the
--     missing steps again (returnClose);
--   return_missing: the mapping is forgotten; the run adopts a matching return or creates one.
-- 'reported' (report mode, or a difference the sync never undoes): recorded only. In repair
--   mode a difference the sync cannot undo also marks the return `conflict` with a detail that
--   says what Shopify shows: return_status with Shopify ahead of or beside what was applied (a
--   return cancelled, declined or closed by hand: the sync never moves a return backwards, and
--   a cancelled return cannot be reopened) and order_missing. Its events keep their statuses.
CREATE TABLE drifts (
    id          bigserial PRIMARY KEY,
    shop_id     bigint NOT NULL REFERENCES shops (id),
    order_id    bigint NOT NULL REFERENCES orders (id),
    return_id   bigint NOT NULL REFERENCES returns (id),
    kind        text NOT NULL CHECK (kind IN ('return_status', 'return_missing', 'order_missing',
                                              'refund_tag', 'exchange_note')),
    expected    text NOT NULL,
    actual      text NOT NULL,
    found_at    timestamptz NOT NULL DEFAULT now(),
    action      text NOT NULL CHECK (action IN ('reported', 'repaired')),
    resolved_at timestamptz
);
CREATE UNIQUE INDEX drifts_open_idx ON drifts (return_id, kind) WHERE resolved_at IS NULL;
CREATE INDEX drifts_shop_open_idx ON drifts (shop_id, found_at) WHERE resolved_at IS NULL;

-- Retention looks rows up by age.
CREATE INDEX shopify_calls_at_idx ON shopify_calls (at);
CREATE INDEX attempts_started_idx ON attempts (started_at) WHERE finished_at IS NOT NULL;
CREATE INDEX events_prunable_idx ON events (finished_at)
    WHERE redacted_at IS NULL AND status IN ('applied', 'superseded', 'rejected', 'conflict');
