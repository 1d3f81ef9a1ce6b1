"""Installs in progress: the OAuth ``state`` nonce of each, single use and short-lived."""

from __future__ import annotations

import secrets

from workers.store.db import transaction


def new_state(shop_domain: str, ttl_s: int) -> str:
    state = secrets.token_urlsafe(24)
    with transaction() as cur:
        # Old nonces are of no use to anyone: drop them on the way.
        cur.execute("DELETE FROM install_states WHERE expires_at < now() - interval '1 day'")
        cur.execute(
            "INSERT INTO install_states (state, shop_domain, expires_at)"
            " VALUES (%s, %s, now() + %s * interval '1 second')",
            (state, shop_domain, ttl_s),
        )
    return state


def consume_state(state: str, shop_domain: str) -> bool:
    """True once for a live nonce issued for this shop; a replayed callback finds it used."""
    with transaction() as cur:
        cur.execute(
            "UPDATE install_states SET used_at = now() WHERE state = %s AND shop_domain = %s"
            " AND used_at IS NULL AND expires_at > now() RETURNING state",
            (state, shop_domain),
        )
        return cur.fetchone() is not None
