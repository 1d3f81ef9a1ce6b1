"""Postgres access: the connection pool, migrations and one module per kind of record."""
