"""The sync's logic: store, per-order apply, Shopify client. Plain functions, no Celery here."""
