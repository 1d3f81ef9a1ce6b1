"""Reconciliation on beat: each a plain function behind a periodic task of ``tasks.reconcile``.

- ``horizon``: returns waiting beyond their shop's horizon become ``failed`` with the reason;
- ``drift``: what the sync applied compared with what Shopify holds, reported or repaired;
- ``retention``: old finished work cut to what the status API needs.

(The waiting backoff itself is the sweep's: ``workers.sweep``.) Each run is idempotent and bounded
(a batch per run; the next run continues), and writes a return's state only under its order's
lock, through the fenced store writes, as an apply run does.
"""
