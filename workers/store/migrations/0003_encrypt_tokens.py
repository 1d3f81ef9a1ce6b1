"""Shop access tokens encrypted at rest: ``shops.access_token`` (plain text) becomes
``shops.access_token_enc`` (Fernet, ``workers.store.crypto``), existing rows encrypted in place.

A Python migration because the keys live in the environment, not in SQL. It runs inside the
migrator's transaction: either every token is encrypted and the plain column gone, or nothing.
"""

from __future__ import annotations

from typing import Any

from workers.store import crypto


def migrate(cur: Any) -> None:
    cur.execute("ALTER TABLE shops ADD COLUMN access_token_enc text")
    cur.execute("SELECT id, access_token FROM shops")
    for row in cur.fetchall():
        cur.execute(
            "UPDATE shops SET access_token_enc = %s WHERE id = %s",
            (crypto.encrypt(row["access_token"]), row["id"]),
        )
    cur.execute("ALTER TABLE shops ALTER COLUMN access_token_enc SET NOT NULL")
    cur.execute("ALTER TABLE shops DROP COLUMN access_token")
