-- Two statements of every run as functions (workers/store/returns.py). finish_return(): the end
-- of each return's run, the statement the workers send most after the lease's own, and the one
-- Postgres plans longest (0.8 ms a call, about a quarter of the runs' statement time behind the fairness
-- benchmark's backlog, measured with pg_stat_statements). psycopg2 sends statements as text, so
-- each one is planned anew; a PL/pgSQL function keeps its statement's plan per connection, which
-- also holds behind PgBouncer in transaction mode (any server connection has the function), where
-- PREPARE would not.
--
-- One statement, as before: every part of it behind the fence (`after` is empty when the fence
-- moved, and the rest writes only for a row of it): the return, a change record when its state
-- changed, its problems (workers/store/problems.py) and its open events, each set to its own
-- status or to p_all_status. The CTEs share one snapshot, so `before` is the row as it was.
-- No row back means the fence moved (the caller then checks, and raises LostLock).

CREATE FUNCTION finish_return(
    p_fence_order bigint, p_fence_token bigint, p_id bigint, p_sync text, p_detail text,
    p_waiting_since timestamptz, p_applied_state text, p_shopify_status text,
    p_reset_failures boolean, p_category text, p_severity text, p_reason text,
    p_ids bigint[], p_statuses text[], p_details text[], p_all_status text, p_all_detail text,
    p_open text[], p_final text[]
) RETURNS TABLE (kind text, domain text, type text, status text, received_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH holder_fence AS (SELECT 1 FROM orders WHERE id = p_fence_order AND fence = p_fence_token FOR SHARE)
    , before AS (SELECT sync, applied_state, category, detail FROM returns WHERE id = p_id)
    , after AS (
        UPDATE returns SET sync = p_sync, detail = p_detail,
            waiting_since = CASE WHEN p_sync = 'waiting' THEN COALESCE(waiting_since, p_waiting_since) END,
            applied_state = COALESCE(p_applied_state, applied_state),
            shopify_status = COALESCE(p_shopify_status, shopify_status),
            failures = CASE WHEN p_reset_failures THEN 0 ELSE failures END,
            category = p_category, attempts = attempts + 1, updated_at = now()
        WHERE id = p_id AND EXISTS (SELECT 1 FROM holder_fence)
        RETURNING id, shop_id, order_id, sync, applied_state, category, detail
    )
    , changed AS (
        INSERT INTO return_changes (return_id, sync, applied_state, category, detail)
        SELECT a.id, a.sync, a.applied_state, a.category, a.detail FROM after a
        WHERE NOT EXISTS (SELECT 1 FROM before b WHERE (b.sync, b.applied_state, b.category, b.detail)
                          IS NOT DISTINCT FROM (a.sync, a.applied_state, a.category, a.detail))
    )
    , solved AS (
        UPDATE problems SET solved_at = now(), solved_by = 'sync',
            comment = CASE WHEN p_category IS NULL THEN comment ELSE 'moved on to ' || p_category END
        WHERE return_id = p_id AND solved_at IS NULL
          AND (p_category IS NULL OR category <> p_category) AND EXISTS (SELECT 1 FROM after)
    )
    , noted AS (
        INSERT INTO problems (shop_id, order_id, return_id, category, severity, reason)
        SELECT a.shop_id, a.order_id, a.id, p_category, p_severity, p_reason FROM after a
        WHERE p_category IS NOT NULL
        ON CONFLICT (return_id, category) WHERE solved_at IS NULL DO UPDATE SET
            last_seen = now(), occurrences = problems.occurrences + 1,
            reason = EXCLUDED.reason, severity = EXCLUDED.severity
    )
    , finished AS (
        UPDATE events e SET status = x.status, detail = x.detail,
            finished_at = CASE WHEN x.status = ANY(p_final) THEN now() END
        FROM (
            SELECT o.id, s.domain, COALESCE(v.status, p_all_status) AS status,
                   CASE WHEN v.id IS NOT NULL THEN v.detail ELSE p_all_detail END AS detail
            FROM events o JOIN shops s ON s.id = o.shop_id
            LEFT JOIN unnest(p_ids, p_statuses, p_details) AS v (id, status, detail) ON v.id = o.id
            WHERE o.return_id = p_id AND o.status = ANY(p_open)
              AND (v.id IS NOT NULL OR p_all_status IS NOT NULL)
        ) x
        WHERE e.id = x.id AND EXISTS (SELECT 1 FROM after)
        RETURNING x.domain, e.type, e.status, e.received_at
    )
    SELECT 'return'::text, NULL::text, NULL::text, NULL::text, NULL::timestamptz FROM after
    UNION ALL
    SELECT 'event'::text, f.domain, f.type, f.status, f.received_at FROM finished f;
END;
$$;

-- open_return_ids() (workers/store/returns.py): the returns of an order with an open event, in the
-- order their first event happened; every run asks it first, and its plan took 0.25 ms a call.
-- Each return's events are read through their index (a lateral query): a join would let the
-- planner scan every event when its statistics are off, as they are after a bulk load.
CREATE FUNCTION open_return_ids(p_order_id bigint, p_open text[]) RETURNS SETOF bigint
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT r.id FROM returns r
    CROSS JOIN LATERAL (
        SELECT bool_or(e.status = ANY(p_open)) AS open, min(e.occurred_at) AS first_at,
               min(e.event_id) AS first_event
        FROM events e WHERE e.return_id = r.id
    ) e
    WHERE r.order_id = p_order_id AND e.open
    ORDER BY e.first_at, e.first_event, r.id;
END;
$$;
