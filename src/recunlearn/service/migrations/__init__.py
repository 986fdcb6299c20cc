"""Alembic migrations of the service's SQL schema (run by :func:`recunlearn.service.store.migrate`)."""
