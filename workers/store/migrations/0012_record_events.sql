-- Group commit for ingest: record_events() records several events, each exactly as
-- record_event() does (0008), in one statement and so in one transaction and one commit.
--
-- Concurrent requests of one web process are written together (web/group_commit.py): while one
-- batch is in flight the next requests queue, and the next batch takes them all. At a trickle a
-- batch is one event and nothing waits; under load the commit (its WAL flush), the round trip
-- and the statement's parse and plan are paid once per batch instead of once per event.
--
-- The events arrive sorted by (shop, order, return, event id) and are recorded in that order
-- (the ordinal says which answer is whose): two batches that touch the same rows then lock them
-- in the same order and cannot deadlock on each other. Any error fails the whole batch, and the
-- caller then records its events one by one with record_event, so one bad event never decides
-- another's answer.

-- The batch is one jsonb array of [event id, shop, return id, order GID, order name, type,
-- occurred at, payload]: one parameter for the client to quote and the server to parse, where
-- eight arrays of text cost a round of quoting per element.

CREATE FUNCTION record_events(p_batch jsonb)
RETURNS TABLE (ordinal integer, status text, order_id bigint, event_row_id bigint, event_status text)
LANGUAGE plpgsql AS $$
DECLARE
    e jsonb;
BEGIN
    ordinal := 0;
    FOR e IN SELECT value FROM jsonb_array_elements(p_batch) LOOP
        ordinal := ordinal + 1;
        SELECT r.status, r.order_id, r.event_row_id, r.event_status
          INTO status, order_id, event_row_id, event_status
          FROM record_event(e->>0, e->>1, e->>2, e->>3, e->>4, e->>5, (e->>6)::timestamptz, e->7) r;
        RETURN NEXT;
    END LOOP;
END;
$$;
