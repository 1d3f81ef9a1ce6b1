"""Celery tasks: thin wrappers that take ids and call the plain functions in ``workers``."""
