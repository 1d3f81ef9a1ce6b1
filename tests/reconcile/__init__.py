"""Reconciliation on beat: one scheduler among several beats, the waiting backoff and horizon, the
drift check against the stand-in, retention."""
