"""HTTP ingest of return events (INGEST.md): validation, signatures, the Flask app, gunicorn config."""
