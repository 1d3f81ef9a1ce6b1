"""What is not synced yet, per shop, read in one query for the metrics scrape (``workers.metrics``).

Postgres is the truth, so the backlog gauges are computed from it at each scrape rather than kept
in a process's memory (which a restart or a second machine would get wrong). The query touches
only open work: returns whose events are accepted and not applied (``events_open_idx``), returns
not synced (``returns_unsynced_idx``), webhook deliveries unprocessed or failed; its cost follows
the backlog, not the size of the tables, and a statement timeout bounds it all the same.

A return counts as unsynced when it is ``pending``, ``waiting`` or ``failed``, or when it is final
(``synced``, ``rejected``, ``conflict``) but holds an event accepted since (the status API shows
a synced one as pending then). It has been unsynced since its oldest event that is accepted,
waiting or failed. Its wait is *explained* when it is ``waiting`` with a detail (*order not
fulfilled yet*, *needs reinstall*, *waiting for the shop's API budget*...): every other unsynced
return is one the sync owes an answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.store.db import transaction

# Below Prometheus' default scrape timeout (10 s): a slow scrape fails here and says so, instead
# of holding a connection of the web process's pool.
STATEMENT_TIMEOUT_MS = 5000

_QUERY = """
WITH candidates AS (
    SELECT return_id AS id FROM events WHERE status = 'accepted'
    UNION
    SELECT id FROM returns WHERE sync IN ('pending', 'waiting', 'failed')
), unsynced AS (
    SELECT r.shop_id,
        CASE WHEN r.sync IN ('waiting', 'failed') THEN r.sync ELSE 'pending' END AS sync,
        (r.sync <> 'waiting' OR COALESCE(btrim(r.detail), '') = '') AS unexplained,
        COALESCE(
            (SELECT min(e.received_at) FROM events e
             WHERE e.return_id = r.id AND e.status IN ('accepted', 'waiting', 'failed')),
            r.updated_at) AS since
    FROM candidates c JOIN returns r ON r.id = c.id
), per_shop AS (
    SELECT shop_id,
        count(*) FILTER (WHERE sync = 'pending') AS pending,
        count(*) FILTER (WHERE sync = 'waiting') AS waiting,
        count(*) FILTER (WHERE sync = 'failed') AS failed,
        count(*) FILTER (WHERE unexplained) AS unexplained,
        min(since) AS oldest,
        min(since) FILTER (WHERE unexplained) AS oldest_unexplained
    FROM unsynced GROUP BY shop_id
), hooks AS (
    SELECT shop_domain,
        min(received_at) FILTER (WHERE processed_at IS NULL) AS oldest_unprocessed,
        count(*) FILTER (WHERE outcome = 'failed') AS failed
    FROM webhook_deliveries WHERE processed_at IS NULL OR outcome = 'failed'
    GROUP BY shop_domain
)
SELECT s.domain,
    COALESCE(p.pending, 0) AS pending,
    COALESCE(p.waiting, 0) AS waiting,
    COALESCE(p.failed, 0) AS failed,
    COALESCE(p.unexplained, 0) AS unexplained,
    COALESCE(EXTRACT(EPOCH FROM now() - p.oldest), 0)::float8 AS oldest_age_s,
    COALESCE(EXTRACT(EPOCH FROM now() - p.oldest_unexplained), 0)::float8 AS oldest_unexplained_age_s,
    COALESCE(EXTRACT(EPOCH FROM now() - h.oldest_unprocessed), 0)::float8 AS oldest_webhook_age_s,
    COALESCE(h.failed, 0) AS webhooks_failed
FROM shops s
LEFT JOIN per_shop p ON p.shop_id = s.id
LEFT JOIN hooks h ON h.shop_domain = s.domain
ORDER BY s.domain
"""


@dataclass(frozen=True)
class ShopBacklog:
    """One shop's unsynced returns (ages in seconds, 0 when there are none)."""

    shop: str
    pending: int
    waiting: int
    failed: int
    unexplained: int
    oldest_age_s: float
    oldest_unexplained_age_s: float
    # Shopify webhooks stored but not processed yet, and those whose processing failed.
    oldest_webhook_age_s: float
    webhooks_failed: int


def by_shop() -> list[ShopBacklog]:
    """Every shop's backlog, read in one statement. Raises ``DatabaseUnavailable`` and
    psycopg2's ``QueryCanceled`` (past ``STATEMENT_TIMEOUT_MS``)."""
    with transaction() as cur:
        cur.execute("SET LOCAL statement_timeout = %s", (STATEMENT_TIMEOUT_MS,))
        cur.execute(_QUERY)
        return [
            ShopBacklog(
                shop=row["domain"],
                pending=int(row["pending"]),
                waiting=int(row["waiting"]),
                failed=int(row["failed"]),
                unexplained=int(row["unexplained"]),
                oldest_age_s=max(0.0, float(row["oldest_age_s"])),
                oldest_unexplained_age_s=max(0.0, float(row["oldest_unexplained_age_s"])),
                oldest_webhook_age_s=max(0.0, float(row["oldest_webhook_age_s"])),
                webhooks_failed=int(row["webhooks_failed"]),
            )
            for row in cur.fetchall()
        ]
